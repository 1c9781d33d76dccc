"""``ctx.ensure_lease()`` as a fence (issue 12): once the attempt can no
longer complete — timed out, handed back on drain, lease expired while the
process could not renew — it raises ``LeaseLost``, so a side effect guarded
by it runs at most once per execution even when a second attempt runs.

Each task body records in ``LEDGER`` either ``effect`` (the guarded side
effect ran) or ``fenced`` (ensure_lease raised, with ``lease_lost`` set)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import AsyncIterator

import anyio
import pytest
from worker_support import lane_worker, run_until, state, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.errors import LeaseLost
from flowfabric_worker.tasks.retry import Retry

pytestmark = pytest.mark.anyio

LANE = "fence"

#: (execution id, "effect" | "fenced") per guarded section reached.
LEDGER: list[tuple[str, str]] = []
#: Runs of each execution's body so far (a hand-back resumes the same attempt
#: index, so the attempt index cannot tell the first run from the second).
RUNS: Counter[str] = Counter()
#: Bodies of each execution that reached their guarded section.
DONE: Counter[str] = Counter()
_lock = threading.Lock()


class _Client:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend


@pytest.fixture
async def backend(url: str) -> AsyncIterator[Backend]:
    LEDGER.clear()
    RUNS.clear()
    DONE.clear()
    b = await Backend.open(url)
    try:
        yield b
    finally:
        await b.close()


def _first_run(ctx: TaskContext) -> bool:
    with _lock:
        RUNS[ctx.execution_id] += 1
        return RUNS[ctx.execution_id] == 1


def _guarded_effect(ctx: TaskContext) -> None:
    """The side effect, guarded the documented way."""
    try:
        ctx.ensure_lease()
    except LeaseLost:
        with _lock:
            LEDGER.append((ctx.execution_id, "fenced" if ctx.lease_lost.is_set() else "?"))
        raise
    else:
        with _lock:
            LEDGER.append((ctx.execution_id, "effect"))
    finally:
        with _lock:
            DONE[ctx.execution_id] += 1


def _settled(eid: str) -> bool:
    """Every body of ``eid`` started so far reached its guarded section (a
    timed-out one may run on after the execution completed)."""
    with _lock:
        return RUNS[eid] > 0 and DONE[eid] == RUNS[eid]


def _entries(eid: str, kind: str) -> int:
    with _lock:
        return sum(1 for e, k in LEDGER if e == eid and k == kind)


_RETRY = Retry(max_attempts=3, backoff="fixed", initial=0.01)


@task(name="fence.shielded_timeout", lane=LANE, timeout=0.2, retry=_RETRY)
async def shielded_timeout(ctx: TaskContext) -> str:
    if _first_run(ctx):
        with anyio.CancelScope(shield=True):  # the time limit cannot interrupt this
            await anyio.sleep(0.5)
    _guarded_effect(ctx)
    return "done"


@task(name="fence.sync_timeout", lane=LANE, timeout=0.5, retry=_RETRY)
def sync_timeout(ctx: TaskContext) -> str:
    if _first_run(ctx):
        time.sleep(1.2)  # the thread is abandoned at the limit and runs on
    _guarded_effect(ctx)
    return "done"


@pytest.mark.parametrize("fn", [shielded_timeout, sync_timeout], ids=["async", "sync"])
async def test_timed_out_attempt_fails_ensure_lease(backend: Backend, fn: object) -> None:
    eid = await submit(backend, fn)  # type: ignore[arg-type]
    w = lane_worker(_Client(backend), [fn], LANE, reclaim=False)

    async def settled() -> bool:
        return await state(backend, eid) == "completed" and _settled(eid)

    await run_until(w, settled)
    assert _entries(eid, "effect") == 1
    assert _entries(eid, "fenced") == 1


@task(name="fence.paused", lane=LANE, retry=_RETRY)
async def paused(ctx: TaskContext) -> str:
    if _first_run(ctx):
        # A pause of the whole process as the worker sees it: the event loop
        # (hence every renewal) is blocked for longer than the 0.6 s lease.
        time.sleep(1.0)  # noqa: ASYNC251 - blocking the loop is the point
    _guarded_effect(ctx)
    return "done"


async def test_lease_expired_during_pause_fails_ensure_lease_on_waking(
    backend: Backend,
) -> None:
    eid = await submit(backend, paused)
    w = lane_worker(_Client(backend), [paused], LANE, lease_ttl=0.6)

    async def done() -> bool:
        return await state(backend, eid) == "completed" and _settled(eid)

    await run_until(w, done)
    # Fenced on waking, before any renewal answered; the reclaimed attempt
    # ran the side effect once.
    assert _entries(eid, "fenced") == 1
    assert _entries(eid, "effect") == 1


async def test_fence_uses_monotonic_confirmed_expiry_minus_margin() -> None:
    ctx = TaskContext(execution_id="e", attempt_index=0, attempt_type="initial",
                      lane="l", tags={})
    sent = time.monotonic()
    ctx.confirm_lease(sent, 1.0)
    ctx.ensure_lease()  # a whole TTL ahead
    ctx.confirm_lease(sent - 0.95, 1.0)  # older: does not shorten what is known
    ctx.ensure_lease()
    ctx2 = TaskContext(execution_id="e2", attempt_index=0, attempt_type="initial",
                       lane="l", tags={})
    ctx2.confirm_lease(time.monotonic() - 0.95, 1.0)  # 50 ms left, margin is 100 ms
    with pytest.raises(LeaseLost):
        ctx2.ensure_lease()
    assert ctx2.lease_lost.is_set() and ctx2.lease_gone


STARTED: dict[str, anyio.Event] = {}


@task(name="fence.drained", lane=LANE)
async def drained(ctx: TaskContext) -> str:
    if _first_run(ctx):
        STARTED[ctx.execution_id].set()
        with anyio.CancelScope(shield=True):  # outlives the drain's grace period
            await anyio.sleep(0.5)
    _guarded_effect(ctx)
    return "done"


async def test_handed_back_attempt_fails_ensure_lease(backend: Backend) -> None:
    eid = await submit(backend, drained)
    STARTED[eid] = anyio.Event()
    first = lane_worker(_Client(backend), [drained], LANE, grace_period=0.05)

    async def started() -> bool:
        return STARTED[eid].is_set()

    await run_until(first, started)  # stops it at once: the body is handed back
    assert (eid, "handed_back") in first.outcomes
    assert _entries(eid, "fenced") == 1 and _entries(eid, "effect") == 0
    second = lane_worker(_Client(backend), [drained], LANE)

    async def done() -> bool:
        return await state(backend, eid) == "completed" and _settled(eid)

    await run_until(second, done)
    assert _entries(eid, "effect") == 1
