"""Drive an execution to a waitpoint by hand (what a worker's wait does), so the
client side of signals is tested against the real Lua on its own."""

from __future__ import annotations

import time
from typing import Any

from flowfabric_worker.client.client import Client
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.ids import ExecutionId, new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import (
    ClaimExecution,
    ClaimResult,
    CompleteExecution,
    IssueClaimGrant,
)
from flowfabric_worker.protocol.signals import (
    CreatePendingWaitpoint,
    PendingWaitpoint,
    SuspendExecution,
    SuspendResult,
)

LANE = "sigclient"
WORKER, WIID = "w-sig", "w-sig-1"


async def running(client: Client) -> tuple[ExecutionId, ClaimResult]:
    """Submit an execution and claim it (lease held, attempt 0)."""
    run = await client.submit("sig.task", lane=LANE)
    b = client.backend
    await b.call(IssueClaimGrant(eid=run.id, lane_id=LANE, worker_id=WORKER,
                                 worker_instance_id=WIID))
    total = await b.redis.hget(ExecKeys(run.id).core, "total_attempt_count")
    c = await b.call(ClaimExecution(
        eid=run.id, lane_id=LANE, worker_id=WORKER, worker_instance_id=WIID,
        lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=60_000,
        attempt_index=int(total or 0)))
    return run.id, c


async def pending(client: Client, eid: ExecutionId, c: ClaimResult,
                  key: str = "") -> PendingWaitpoint:
    wp = new_uuid()
    return await client.backend.call(CreatePendingWaitpoint(
        eid=eid, attempt_index=c.attempt_index, waitpoint_id=wp,
        waitpoint_key=key or f"wpk:{wp}", expires_at=int(time.time() * 1000) + 600_000))


async def suspend(client: Client, eid: ExecutionId, c: ClaimResult, names: list[str],
                  *, mode: str = "any", use_pending: str = "", **kw: Any) -> SuspendResult:
    wp = use_pending or new_uuid()
    return await client.backend.call(SuspendExecution(
        eid=eid, attempt_index=c.attempt_index, attempt_id=c.attempt_id, lease_id=c.lease_id,
        lease_epoch=c.lease_epoch, worker_instance_id=WIID, lane=LANE,
        suspension_id=new_uuid(), waitpoint_id=wp,
        waitpoint_key="" if use_pending else f"wpk:{wp}",
        resume_condition_json=C.signal_set(names, mode=mode),  # type: ignore[arg-type]
        resume_policy_json=C.resume_policy_json(), use_pending_waitpoint=bool(use_pending),
        **kw))


async def complete(client: Client, eid: ExecutionId, c: ClaimResult) -> None:
    await client.backend.call(CompleteExecution(
        eid=eid, lane_id=LANE, attempt_index=c.attempt_index, worker_instance_id=WIID,
        lease_id=c.lease_id, lease_epoch=c.lease_epoch, attempt_id=c.attempt_id,
        result_payload=b"null"))
