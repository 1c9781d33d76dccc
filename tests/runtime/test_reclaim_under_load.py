"""A crashed worker's execution is reclaimed within a bounded time even when
fresh work never runs out (issue 12, hole 3): the worker must not wait for
its backlog to drain before it looks for expired leases."""

from __future__ import annotations

import time

import anyio
import pytest
from worker_support import attempts, lane_worker, state, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.lifecycle import ClaimExecution, IssueClaimGrant

pytestmark = pytest.mark.anyio

LANE = "reclaim-load"
LEASE_TTL = 1.0
BACKLOG = 300
NAP = 0.05
CONCURRENCY = 2
#: Lease TTL + one busy reclaim interval (≤ 1 s) + a wide margin for a loaded box.
BOUND = 5.0
#: The backlog alone keeps the worker busy this long: well past BOUND, so the
#: crashed execution cannot finish in time by waiting for the queue to empty.
DRAIN_AT_LEAST = BACKLOG * NAP / CONCURRENCY
assert DRAIN_AT_LEAST > BOUND + 2


class _Client:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend


@task(name="t.reclaim.nap", lane=LANE)
async def nap() -> None:
    await anyio.sleep(NAP)


@task(name="t.reclaim.crashed", lane=LANE)
async def crashed() -> str:
    return "recovered"


async def test_crashed_execution_is_reclaimed_before_the_backlog_drains(
    backend: Backend,
) -> None:
    eid = await submit(backend, crashed)
    # A worker claims it with a short lease and dies: it never renews.
    await backend.call(IssueClaimGrant(eid=eid, lane_id=LANE, worker_id="dead",
                                       worker_instance_id="dead-1"))
    await backend.call(ClaimExecution(
        eid=eid, lane_id=LANE, worker_id="dead", worker_instance_id="dead-1",
        lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=int(LEASE_TTL * 1000)))
    crash = time.monotonic()
    backlog = [await submit(backend, nap) for _ in range(BACKLOG)]

    # No embedded scanners: the worker confirms and marks an expired lease
    # itself when it looks (so recovery cannot depend on them), and at the
    # test scale they would slow the backlog this test relies on.
    w = lane_worker(_Client(backend), [nap, crashed], LANE, lease_ttl=LEASE_TTL,
                    concurrency=CONCURRENCY, scanners=False)
    took: float | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        with anyio.move_on_after(BOUND):
            while await state(backend, eid) != "completed":  # noqa: ASYNC110 - polling Redis
                await anyio.sleep(0.02)
            took = time.monotonic() - crash
        w.stop()
    finished = [e for e in backlog if await state(backend, e) == "completed"]
    assert took is not None, (
        f"crashed execution not reclaimed within {BOUND} s of the crash "
        f"({len(finished)}/{BACKLOG} of the backlog done)")
    assert took < BOUND
    # The worker really was busy with fresh work the whole time.
    assert len(finished) < BACKLOG
    assert len(await attempts(backend, eid)) == 2
