"""Claim-time admission (spec 04 §7.5) and the unblock / budget / quota
scanners, with an in-process worker on a real backend (redis-server and
memory://)."""

from __future__ import annotations

import anyio
import pytest
from worker_support import core, run_until, state

from flowfabric_worker import Client, Limit, TaskContext, task
from flowfabric_worker.engine.roles import default_scanners
from flowfabric_worker.engine.runner import ScanRunner
from flowfabric_worker.protocol.budgets import ReportUsageAndCheck
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

LANE = "bq-admit"
RAN: list[str] = []


@pytest.fixture
def client(keyed_client: Client) -> Client:
    return keyed_client


@task(name="bq.work", lane=LANE)
async def work(ctx: TaskContext, label: str, hold: float = 0.0) -> str:
    RAN.append(label)
    if hold:
        await anyio.sleep(hold)
    return label


def worker(c: Client) -> Worker:
    return Worker(c, [work], lease_ttl=2.0, concurrency=4, scanner_interval_scale=0.05)


async def _report(c: Client, budget_id: str, tag: str, n: int) -> None:
    await c.backend.report_usage(ReportUsageAndCheck(
        tag=tag, budget_id=budget_id, deltas={"tokens": n}, now_ms=1))


async def test_budget_at_hard_limit_blocks_until_reset(client: Client) -> None:
    RAN.clear()
    budget = await client.create_budget({"tokens": Limit(hard=10), "cost": Limit(hard=99)})
    await _report(client, budget.id, budget.tag, 10)  # exactly on the limit
    run = await work.submit(client, "blocked", budgets=[budget])
    free = await work.submit(client, "free")

    async def settled() -> bool:
        c = await core(client.backend, run.id)
        return (c.get("eligibility_state") == "blocked_by_budget"
                and await state(client.backend, free.id) == "completed")

    await run_until(worker(client), settled)
    c = await core(client.backend, run.id)
    assert c["public_state"] == "rate_limited"
    assert c["blocking_reason"] == "waiting_for_budget"
    assert c["blocking_detail"] == f"budget ff:budget:{budget.id}:usage: tokens 10/10"
    assert RAN == ["free"]
    # The unblock scanner re-checks and keeps it blocked (still at the limit)...
    runner = ScanRunner(client.backend, [s for s in default_scanners() if s.name == "unblock"])
    await runner.tick(runner.scanners[0])
    assert (await core(client.backend, run.id))["eligibility_state"] == "blocked_by_budget"
    # ...and releases it once the budget is reset; then it runs.
    await budget.reset()

    async def done() -> bool:
        return await state(client.backend, run.id) == "completed"

    await run_until(worker(client), done)
    assert RAN == ["free", "blocked"]


async def test_quota_rate_blocks_then_admits(client: Client) -> None:
    RAN.clear()
    quota = await client.create_quota(rate=1, per=1)
    first = await work.submit(client, "one", quota=quota)
    second = await work.submit(client, "two", quota=quota)
    seen: set[str] = set()

    async def both_done() -> bool:
        for run in (first, second):
            c = await core(client.backend, run.id)
            seen.add(c.get("blocking_reason", ""))
        return all([await state(client.backend, r.id) == "completed" for r in (first, second)])

    await run_until(worker(client), both_done, limit=20)
    # One was admitted, the other waited for the window to move on.
    assert "waiting_for_quota" in seen
    assert sorted(RAN) == ["one", "two"]
    info = await quota.info()
    assert info.active == 0 and info.in_window <= 2


async def test_quota_concurrency_slot_released_when_the_run_ends(client: Client) -> None:
    RAN.clear()
    quota = await client.create_quota(concurrency=1, per=60)
    runs = [await work.submit(client, f"c{i}", 0.3, quota=quota) for i in range(3)]
    reasons: set[str] = set()

    async def all_done() -> bool:
        for run in runs:
            reasons.add((await core(client.backend, run.id)).get("blocking_reason", ""))
        return all([await state(client.backend, r.id) == "completed" for r in runs])

    # The guard keys live 60 s and no reconciler runs this soon: only our
    # release at the end of each run lets the next one in.
    await run_until(worker(client), all_done, limit=30)
    assert "waiting_for_quota" in reasons
    info = await quota.info()
    assert info.active == 0 and info.in_window == 3


async def test_budget_and_quota_scanners(client: Client) -> None:
    budget = await client.create_budget({"tokens": Limit(hard=5)}, reset_every=0.05)
    fixed = await client.create_budget({"tokens": Limit(hard=5)})
    await _report(client, budget.id, budget.tag, 4)
    await _report(client, fixed.id, fixed.tag, 5)
    quota = await client.create_quota(concurrency=2)
    qk = client.backend.quota_keys(quota.id)
    await client.backend.redis.set(qk.concurrency, "2")  # drift: nobody holds a slot
    await client.backend.redis.sadd(qk.admitted_set, "{fp:1}:gone")
    await anyio.sleep(0.1)  # the reset is due
    runner = ScanRunner(client.backend, [s for s in default_scanners()
                                         if s.name in ("budget_reset", "budget_reconciler",
                                                       "quota_reconciler")])
    for scanner in runner.scanners:
        await runner.tick(scanner)
    assert await budget.usage() == {"tokens": 0}
    assert (await budget.info()).reset_count == 1
    usage_key = client.backend.budget_keys(fixed.id).usage
    assert not await client.backend.redis.hexists(usage_key, "breached_at")  # 5 is not > 5
    await _report(client, fixed.id, fixed.tag, 0)
    await client.backend.redis.hset(usage_key, "tokens", "6")  # past the limit out of band
    await runner.tick(runner.scanners[1])
    assert await client.backend.redis.hexists(usage_key, "breached_at")
    assert await fixed.usage() == {"tokens": 6}  # the marker is not a dimension
    assert (await quota.info()).active == 0
    assert not await client.backend.redis.smembers(qk.admitted_set)


async def test_admission_released_when_the_grant_is_refused(client: Client) -> None:
    from flowfabric_worker.worker.backend_port import BackendEngine

    quota = await client.create_quota(concurrency=5, rate=10)
    run = await work.submit(client, "refused", quota=quota)
    # Still eligible on its core, but gone from the eligible set: admission
    # passes, then the grant is refused (not_in_eligible_set).
    await client.backend.redis.zrem(ExecKeys(run.id).lane_eligible(LANE), run.id)
    engine = BackendEngine(client.backend)
    (reply,) = await engine.claim_many(LANE, [run.id], "w", "w-1", frozenset(), 2000, 5000)
    assert isinstance(reply, Exception)
    info = await quota.info()
    assert info.active == 0 and info.in_window == 1  # the window entry stays (spec 04 §7.4)
    qk = client.backend.quota_keys(quota.id)
    assert not await client.backend.redis.smembers(qk.admitted_set)
    assert not await client.backend.redis.exists(qk.admitted(run.id))


async def test_an_admission_during_the_quota_reconciler_keeps_its_slot(client: Client) -> None:
    """The reconciler recounts the slots and rewrites the counter. Done as
    separate reads and a write, an admission landing between them was
    overwritten (counter 0 while an execution held the slot: one more could
    run than the cap; seen on a busy box). The admission here lands while the
    reconciler runs, between its first read and its write if it has them."""
    import time

    from flowfabric_worker.protocol.quotas import CheckAdmissionAndRecord

    quota = await client.create_quota(concurrency=2)
    backend = client.backend
    tag = backend.quota_keys(quota.id).tag
    run = await work.submit(client, "held", quota=quota)
    admit = CheckAdmissionAndRecord(
        tag=tag, quota_id=quota.id, eid=run.id, now_ms=int(time.time() * 1000),
        window_seconds=60, rate_limit=0, concurrency_cap=2)
    real_smembers = backend.redis.smembers

    async def smembers_then_admit(*args: object) -> object:
        members = await real_smembers(*args)
        assert (await backend.check_admission(admit)).status == "ADMITTED"
        return members

    backend.redis.smembers = smembers_then_admit
    try:
        await backend.recount_quota(quota.id, 60, int(time.time() * 1000))
    finally:
        del backend.redis.smembers
    if not await backend.redis.exists(backend.quota_keys(quota.id).admitted(run.id)):
        assert (await backend.check_admission(admit)).status == "ADMITTED"  # no reads to race
    assert (await quota.info()).active == 1
