"""Sync task functions get the whole context: ctx.progress called plainly,
and ctx.sync's blocking step / wait_for_signal / sleep / child / gather /
report_usage, through a worker on a real backend (redis-server and
memory://). A wait suspends exactly as in an async task."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from signal_support import deliver
from worker_support import core, lane_worker, run_until, state

from flowfabric_worker import Client, Limit, TaskContext, task
from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

LANE = "sync-ctx"
CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


def extract(doc: str) -> str:
    _count("extract")
    return doc.upper()


@task(name="sc.review", lane=LANE)
def review(ctx: TaskContext, doc: str) -> str:
    _count("body")
    ctx.progress(10, "extracting")
    text = ctx.sync.step("extract", extract, doc)
    ctx.progress(50, "waiting for approval")
    sig = ctx.sync.wait_for_signal("approve")
    return f"{text}: {sig.payload['ok']} ({sig.name})"


@task(name="sc.nap", lane=LANE)
def nap(ctx: TaskContext) -> str:
    _count("nap")
    ctx.sync.sleep(0.2)
    return "rested"


@task(name="sc.square", lane=LANE)
def square(n: int) -> int:
    return n * n


@task(name="sc.parent", lane=LANE)
def parent(ctx: TaskContext, n: int) -> list[int]:
    first = ctx.sync.child(square, n)
    rest = ctx.sync.gather(*(ctx.child(square, i) for i in range(3)))
    return [first, *rest]


@task(name="sc.spend", lane=LANE)
def spend(ctx: TaskContext, n: int) -> bool:
    return ctx.sync.report_usage(tokens=n).soft_breached


@task(name="sc.misuse", lane=LANE)
async def misuse(ctx: TaskContext) -> str:
    try:
        ctx.sync.step("x", extract, "y")
    except ConfigurationError as exc:
        return str(exc)
    return "no error"


@pytest.fixture
def client(keyed_client: Client) -> Client:
    return keyed_client


def worker(c: Client, *tasks: object) -> Worker:
    return lane_worker(c, tasks, LANE)


def ended(c: Client, eid: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await state(c.backend, eid) in ("completed", "failed", "cancelled")
    return check


async def test_a_sync_task_steps_waits_for_a_signal_and_resumes(client: Client) -> None:
    CALLS.clear()
    run = await review.submit(client, "contract")
    w = worker(client, review)
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        with anyio.fail_after(10):
            while await state(client.backend, run.id) != "suspended":  # noqa: ASYNC110 - polling Redis state
                await anyio.sleep(0.02)
        info = await core(client.backend, run.id)
        assert (info["progress_pct"], info["progress_message"]) == ("50", "waiting for approval")
        await deliver(client.backend, run.id, "approve", {"ok": True})
        assert await run.result(timeout=10) == "CONTRACT: True (approve)"
        w.stop()
    # Ran twice from the top (before and after the wait), the step once.
    assert CALLS == {"body": 2, "extract": 1}


async def test_a_sync_durable_sleep_and_children(client: Client) -> None:
    CALLS.clear()
    napping = await nap.submit(client)
    family = await parent.submit(client, 5)
    async def both() -> bool:
        return await ended(client, family.id)() and await ended(client, napping.id)()

    await run_until(worker(client, nap, parent, square), both, limit=20)
    assert await family.result(timeout=10) == [25, 0, 1, 4]
    assert await napping.result(timeout=10) == "rested"
    assert CALLS["nap"] == 2  # suspended by the sleep, then ran again past it


async def test_a_sync_task_reports_usage(client: Client) -> None:
    budget = await client.create_budget({"tokens": Limit(hard=100, soft=10)})
    run = await spend.submit(client, 50, budgets=[budget])
    await run_until(worker(client, spend), ended(client, run.id))
    assert await run.result() is True
    assert (await budget.info()).usage == {"tokens": 50}


async def test_ctx_sync_in_an_async_task_is_a_clear_error(client: Client) -> None:
    run = await misuse.submit(client)
    await run_until(worker(client, misuse), ended(client, run.id))
    assert "await ctx.step" in await run.result()
