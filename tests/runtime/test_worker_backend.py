"""The worker against the real function library (redis-server and memory://)."""

from __future__ import annotations

import gc
import weakref

import anyio
import msgspec
import pytest
from worker_support import attempts, core, run_until, state, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.errors import LeaseLost, Permanent, Transient
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import worker_alive
from flowfabric_worker.protocol.lifecycle import ClaimExecution, IssueClaimGrant
from flowfabric_worker.tasks.retry import Retry
from flowfabric_worker.worker.backend_port import BackendEngine
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


class Client:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend


class Point(msgspec.Struct):
    x: int
    y: int


@task(name="t.add")
async def add(ctx: TaskContext, p: Point) -> int:
    await ctx.progress(50, "adding")
    return p.x + p.y


@task(name="t.square")
def square(n: int) -> int:
    return n * n


FLAKY_CALLS: list[int] = []


@task(name="t.flaky", retry=Retry(max_attempts=4, backoff="fixed", initial=0.02))
async def flaky() -> str:
    FLAKY_CALLS.append(1)
    if len(FLAKY_CALLS) < 3:
        raise Transient("upstream 503")
    return "ok"


@task(name="t.reject", retry=Retry(max_attempts=4, backoff="fixed", initial=0.02))
async def reject() -> None:
    raise Permanent("rejected by reviewer")


@task(name="t.slow", timeout=0.1)
async def slow() -> None:
    await anyio.sleep(10)


@task(name="t.late", deadline=0.15, retry=Retry(max_attempts=3, backoff="fixed", initial=0.01))
async def late() -> None:
    await anyio.sleep(10)


def worker(b: Backend, *tasks: object, **kw: object) -> Worker:
    kw.setdefault("lease_ttl", 2.0)
    kw.setdefault("scanner_interval_scale", 0.05)
    return Worker(Client(b), list(tasks), **kw)  # type: ignore[arg-type]


async def test_typed_args_context_and_sync(backend: Backend) -> None:
    e1 = await submit(backend, add, Point(x=2, y=3))
    e2 = await submit(backend, square, 7)
    w = worker(backend, add, square)

    async def done() -> bool:
        return await state(backend, e1) == "completed" and await state(backend, e2) == "completed"

    await run_until(w, done)
    assert add.decode_result(await backend.get_result(e1) or b"") == 5
    assert square.decode_result(await backend.get_result(e2) or b"") == 49
    assert (await core(backend, e1)).get("progress_pct") in {"50", "50.0"}
    # The worker advertised itself in the registry (spec 05 §1.2).
    assert await backend.redis.exists(worker_alive("", w.instance_id))


async def test_retry_then_success(backend: Backend) -> None:
    FLAKY_CALLS.clear()
    eid = await submit(backend, flaky)
    w = worker(backend, flaky)

    async def done() -> bool:
        return await state(backend, eid) == "completed"

    await run_until(w, done)
    rows = await attempts(backend, eid)
    assert len(rows) == 3
    assert [r.get("failure_category") for r in rows[:2]] == ["transient", "transient"]


async def test_permanent_failure_not_retried(backend: Backend) -> None:
    eid = await submit(backend, reject)
    w = worker(backend, reject)

    async def done() -> bool:
        return await state(backend, eid) == "failed"

    await run_until(w, done)
    rows = await attempts(backend, eid)
    assert len(rows) == 1 and rows[0].get("failure_category") == "permanent"
    assert "rejected by reviewer" in (await core(backend, eid)).get("failure_reason", "") + \
        rows[0].get("failure_reason", "")


async def test_timeout_and_deadline(backend: Backend) -> None:
    e1 = await submit(backend, slow)
    e2 = await submit(backend, late)
    w = worker(backend, slow, late)

    async def done() -> bool:
        return await state(backend, e1) == "failed" and await state(backend, e2) == "failed"

    await run_until(w, done)
    assert (await attempts(backend, e1))[0].get("failure_category") == "timeout"
    # The deadline caps every attempt; once passed, the retry fails at once.
    assert all(r.get("failure_category") == "timeout" for r in await attempts(backend, e2))


async def test_payload_mismatch_and_unknown_task(backend: Backend) -> None:
    bad = await submit(backend, square, 3)
    await backend.redis.set(f"ff:exec:{{fp:0}}:{bad}:payload", b"")  # harmless if unused
    from flowfabric_worker.protocol.keys import ExecKeys

    await backend.redis.set(ExecKeys(bad).payload, b'{"args":["not a number"],"kwargs":{}}')
    unknown = await submit(backend, reject)  # registered name t.reject, worker lacks it
    w = worker(backend, square)

    async def done() -> bool:
        return (await state(backend, bad) == "failed"
                and (unknown, "handed_back") in w.outcomes)

    await run_until(w, done)
    assert (await attempts(backend, bad))[0].get("failure_category") == "permanent"
    # Not ours: handed back for another worker (docs/operations.md, mixed fleets).
    assert not (await attempts(backend, unknown))[0].get("failure_category")


async def test_dead_worker_lease_is_reclaimed_and_stale_complete_refused(
    backend: Backend,
) -> None:
    eid = await submit(backend, square, 4)
    # A worker claims with a 300 ms lease and then "dies" (never renews).
    await backend.call(IssueClaimGrant(eid=eid, lane_id="default", worker_id="dead",
                                       worker_instance_id="dead-1"))
    old = await backend.call(ClaimExecution(
        eid=eid, lane_id="default", worker_id="dead", worker_instance_id="dead-1",
        lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=300))
    await anyio.sleep(0.35)
    w = worker(backend, square)

    async def done() -> bool:
        return await state(backend, eid) == "completed"

    await run_until(w, done)
    assert len(await attempts(backend, eid)) == 2
    # The dead worker's late terminal call is refused, typed, nothing changes.
    stale = Claimed(eid, "default", old.attempt_index, old.attempt_id, old.lease_id,
                    old.lease_epoch, old.lease_expires_at, worker_instance_id="dead-1")
    from flowfabric_worker.worker.executor import Executor

    with pytest.raises(LeaseLost):
        await Executor(BackendEngine(backend), {}, 1000)._terminal(stale, "complete", b"99")
    assert square.decode_result(await backend.get_result(eid) or b"") == 16


@task(name="t.gpu", capabilities={"gpu"})
async def gpu_job() -> int:
    return 1


async def test_capability_mismatch_blocks_without_claiming(backend: Backend) -> None:
    eid = await submit(backend, gpu_job)
    plain = worker(backend, gpu_job)

    async def blocked() -> bool:
        return (await core(backend, eid)).get("blocking_reason") == "waiting_for_capable_worker"

    await run_until(plain, blocked)
    assert await attempts(backend, eid) == []


REVOKED: list[bool] = []


@task(name="t.revoked")
async def revoked_job(ctx: TaskContext) -> str:
    try:
        await anyio.sleep(10)
    finally:
        REVOKED.append(ctx.lease_lost.is_set())
    return "never"


async def test_operator_revoke_sets_lease_lost_and_cancels_task(backend: Backend) -> None:
    from flowfabric_worker.protocol.operator import RevokeLease

    REVOKED.clear()
    eid = await submit(backend, revoked_job)
    w = worker(backend, revoked_job, lease_ttl=0.6, reclaim=False)

    async def scenario() -> bool:
        c = await core(backend, eid)
        if c.get("ownership_state") == "leased" and not REVOKED:
            await backend.call(RevokeLease(
                eid=eid, worker_instance_id=c["current_worker_instance_id"],
                revoke_reason="operator"))
        return bool(w.outcomes)

    await run_until(w, scenario)
    assert REVOKED == [True] and w.outcomes == [(eid, "lease_lost")]
    assert await state(backend, eid) != "completed"


@task(name="t.outlives_ttl")
async def outlives_ttl(ctx: TaskContext) -> str:
    await anyio.sleep(1.5)  # 2.5 lease TTLs: only renewals keep the lease
    ctx.ensure_lease()
    return "kept"


async def test_shared_renewal_loop_keeps_a_long_task_leased(backend: Backend) -> None:
    eid = await submit(backend, outlives_ttl)
    w = worker(backend, outlives_ttl, lease_ttl=0.6, reclaim=False)

    async def done() -> bool:
        return bool(w.outcomes)

    await run_until(w, done)
    # Without renewals the lease would have expired twice over: the expiry
    # scanner (running here) marks it, the complete is refused as stale.
    assert w.outcomes == [(eid, "completed")]
    assert len(await attempts(backend, eid)) == 1


CONTEXTS: list[weakref.ref[TaskContext]] = []


@task(name="t.remember")
async def remember(ctx: TaskContext) -> int:
    CONTEXTS.append(weakref.ref(ctx))
    return 1


async def test_finished_attempt_is_freed_at_once(backend: Backend) -> None:
    """Issue 18: nothing of a finished attempt outlives it. Its context is
    freed by reference counting alone (the collector is off here): not held
    by the renewal heap (whose entry comes due a third of the 30 s TTL
    later) nor by a reference cycle through its lazy extensions."""
    CONTEXTS.clear()
    eid = await submit(backend, remember)
    w = worker(backend, remember, lease_ttl=30.0)
    freed: list[bool] = []

    async def done() -> bool:
        if w.outcomes and not w._inflight:
            freed.append(CONTEXTS[0]() is None)  # checked while the worker runs
            return True
        return False

    gc.disable()
    try:
        await run_until(w, done)
    finally:
        gc.enable()
    assert w.outcomes == [(eid, "completed")] and freed == [True]
