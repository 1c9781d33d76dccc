"""ctx.report_usage against attached budgets, through a worker on a real
backend (redis-server and memory://): soft breaches reported, hard breaches
fail the execution without retry, reports counted once (resends, replays,
budgets sharing a partition)."""

from __future__ import annotations

import logging
import uuid

import pytest
from signal_support import deliver
from worker_support import attempts, core, run_until, state

from flowfabric_worker import BudgetExceeded, Client, Limit, Retry, TaskContext, task
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.budgets import ReportUsageAndCheck
from flowfabric_worker.protocol.partitions import budget_tag
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

LANE = "bq-usage"
SEEN: dict[str, object] = {}


@pytest.fixture
def client(keyed_client: Client) -> Client:
    return keyed_client


def worker(c: Client, *tasks: object) -> Worker:
    return Worker(c, list(tasks), lease_ttl=2.0, scanner_interval_scale=0.05)  # type: ignore[arg-type]


@task(name="bq.soft", lane=LANE)
async def soft_task(ctx: TaskContext, n: int) -> bool:
    report = await ctx.report_usage({"tokens": n}, cost_microusd=3)
    SEEN["soft"] = report
    return report.soft_breached


@task(name="bq.hard", lane=LANE, retry=Retry(max_attempts=3, backoff="fixed", initial=0.01))
async def hard_task(ctx: TaskContext, n: int) -> str:
    await ctx.report_usage(tokens=n)
    return "unreachable when over the hard limit"


@task(name="bq.replay", lane=LANE)
async def replay_task(ctx: TaskContext) -> int:
    first = await ctx.report_usage(tokens=10)
    SEEN.setdefault("replay", []).append(first.duplicate)  # type: ignore[attr-defined]
    await ctx.wait_for_signal("go")
    await ctx.report_usage(tokens=1)
    return 0


async def _done(c: Client, eid: str) -> bool:
    return await state(c.backend, eid) in ("completed", "failed")


async def test_soft_breach_is_reported_and_logged(client: Client,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    budget = await client.create_budget({"tokens": Limit(hard=100, soft=80),
                                         "cost_microusd": Limit()})
    run = await soft_task.submit(client, 90, budgets=[budget])
    with caplog.at_level(logging.WARNING, logger="flowfabric_worker.task"):
        await run_until(worker(client, soft_task), lambda: _done(client, run.id))
    assert await run.result() is True
    report = SEEN["soft"]
    assert report.soft_breached and report.usage == {"cost_microusd": 3, "tokens": 90}  # type: ignore[attr-defined]
    (breach,) = report.soft_breaches  # type: ignore[attr-defined]
    assert (breach.budget_id, breach.dimension, breach.value, breach.limit) == (
        budget.id, "tokens", 90, 80)
    info = await budget.info()
    assert info.usage == {"cost_microusd": 3, "tokens": 90} and info.soft_breach_count == 1
    # ctx.log: the execution's fields on the record (docs/observability.md).
    assert any("soft limit of tokens" in r.getMessage()
               and getattr(r, "execution_id", None) == run.id for r in caplog.records)


async def test_hard_breach_fails_without_retry(client: Client) -> None:
    budget = await client.create_budget({"tokens": Limit(hard=100)})
    other = await client.create_budget({"tokens": Limit(hard=1000)})
    run = await hard_task.submit(client, 150, budgets=[other, budget])
    await run_until(worker(client, hard_task), lambda: _done(client, run.id))
    with pytest.raises(Exception) as caught:
        await run.result()
    assert caught.value.category == "budget_hard_breach"  # type: ignore[attr-defined]
    assert caught.value.reason.startswith("budget_hard_breach: ")  # type: ignore[attr-defined]
    assert "tokens 0 + 150" in caught.value.reason  # type: ignore[attr-defined]
    assert len(await attempts(client.backend, run.id)) == 1  # no retry despite Retry(3)
    # Refused as a whole at the breached budget; the other budget counted it.
    assert (await budget.usage()) == {"tokens": 0}
    assert (await budget.info()).breach_count == 1
    assert (await other.usage()) == {"tokens": 150}


async def test_replayed_report_counts_once(client: Client) -> None:
    SEEN.pop("replay", None)
    budget = await client.create_budget({"tokens": Limit(hard=100)})
    run = await replay_task.submit(client, budgets=[budget])

    async def suspended() -> bool:
        return await state(client.backend, run.id) == "suspended"

    await run_until(worker(client, replay_task), suspended)
    assert await budget.usage() == {"tokens": 10}
    await deliver(client.backend, run.id, "go")
    await run_until(worker(client, replay_task), lambda: _done(client, run.id))
    assert (await core(client.backend, run.id))["public_state"] == "completed"
    # The resumed run re-sent its first report (same attempt, same sequence
    # number): the budget answered ALREADY_APPLIED and counted it once.
    assert SEEN["replay"] == [False, True]
    assert await budget.usage() == {"tokens": 11}


async def test_dedup_key_is_per_budget(client: Client) -> None:
    """Two budgets on one partition share the dedup key space: one report
    must still count against each (the key includes the budget id)."""
    parts = client.backend.partitions
    first = str(uuid.uuid4())
    second = next(u for u in (str(uuid.uuid4()) for _ in range(10_000))
                  if budget_tag(u, parts) == budget_tag(first, parts))
    b1 = await client.create_budget({"tokens": Limit(hard=100)}, budget_id=first)
    b2 = await client.create_budget({"tokens": Limit(hard=100)}, budget_id=second)
    run = await soft_task.submit(client, 5, budgets=[b1, b2])
    await run_until(worker(client, soft_task), lambda: _done(client, run.id))
    assert await b1.usage() == {"cost_microusd": 3, "tokens": 5}
    assert await b2.usage() == {"cost_microusd": 3, "tokens": 5}
    # A resend of the same report (same dedup id) is not counted again.
    again = ReportUsageAndCheck(tag=b1.tag, budget_id=b1.id, deltas={"tokens": 5},
                                now_ms=1, dedup_id=f"{b1.id}:{run.id}:0:0")
    assert (await client.backend.report_usage(again)).status == "ALREADY_APPLIED"
    assert (await b1.usage())["tokens"] == 5


async def test_report_input_is_validated_and_no_budget_is_a_noop(client: Client) -> None:
    @task(name="bq.bad", lane=LANE)
    async def bad(ctx: TaskContext) -> str:
        report = await ctx.report_usage(tokens=1)  # no budget attached
        assert report.results == ()
        for wrong in ({"tokens": -1}, {"": 1}, {f"d{i}": 1 for i in range(65)}, {}):
            try:
                await ctx.report_usage(wrong)
            except InvalidInput:
                continue
            return f"accepted {wrong}"
        try:
            await ctx.report_usage({"tokens": 1}, tokens=2)
        except InvalidInput:
            return "ok"
        return "accepted a duplicate dimension"

    run = await bad.submit(client)
    await run_until(worker(client, bad), lambda: _done(client, run.id))
    assert await run.result() == "ok"


def test_budget_exceeded_is_permanent() -> None:
    from flowfabric_worker.errors import Permanent
    from flowfabric_worker.worker.failures import classify

    exc = BudgetExceeded("x", budget_id="b", dimension="tokens", used=1, limit=1)
    assert isinstance(exc, Permanent)
    decision = classify(exc, Retry(max_attempts=5))
    assert (decision.category, decision.retry) == ("budget_hard_breach", False)
