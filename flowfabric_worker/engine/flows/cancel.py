"""Flow cancellation, member side (spec 04 §4.8): cancel each member, ack it,
and the ``cancel_reconciler`` that finishes what a crashed dispatcher left in
``pending_cancels`` once the grace window has passed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
import msgspec

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.runner import Candidate, Scanner
from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.flows import AckCancelMember
from flowfabric_worker.protocol.ids import ExecutionId, parse_execution_id
from flowfabric_worker.protocol.keys import FlowKeys, PartitionKeys
from flowfabric_worker.protocol.lifecycle import CancelExecution

__all__ = [
    "CANCEL_RECONCILER",
    "cancel_member",
    "cancel_members",
    "cancel_reconciler",
]

log = logging.getLogger("flowfabric_worker.flows")

CANCEL_RECONCILER = "cancel_reconciler"
#: Member cancels in flight at once (0.15 dispatches with up to 16).
PARALLEL = 16
#: Members one reconciler visit handles per flow.
RECONCILE_MEMBERS = 500
_CORE_FIELDS = ["lifecycle_phase", "lane_id", "current_attempt_index",
                "current_worker_instance_id", "current_waitpoint_id"]


async def cancel_member(backend: Backend, eid: ExecutionId, reason: str, *,
                        spare_active: bool = False) -> bool:
    """Cancel one member as the operator (source ``operator_override``, no
    fence). ``True`` when the member needs nothing more — cancelled now, or
    already terminal or gone, or refused for good — so it can be acked;
    ``False`` on a transient failure (it stays pending). ``spare_active``
    (``cancel_pending``) leaves a member that has started alone."""
    (phase, lane, attempt, wiid, waitpoint), = await backend.exec_fields([eid], _CORE_FIELDS)
    if phase in ("", "terminal") or (spare_active and phase == "active"):
        return True
    call = CancelExecution(
        eid=eid, lane_id=lane or "default", reason=reason, source="operator_override",
        attempt_index=int(attempt) if attempt.isdigit() else 0, worker_instance_id=wiid,
    )
    if waitpoint:  # the real waitpoint keys, so a suspended member's waitpoint closes
        call = msgspec.structs.replace(call, waitpoint_id=waitpoint)
    try:
        await backend.cancel_execution(call)
    except ContractError as exc:
        if exc.retryable:
            return False
        # execution_not_active / execution_not_found and any other refusal:
        # nothing a retry would change (spec 04 §4.8).
        log.info("cancel of flow member %s: %s", eid, exc.code)
    return True


async def cancel_members(
    backend: Backend, tag: str, flow_id: str, members: Sequence[ExecutionId], reason: str,
    *, spare_active: bool = False,
) -> list[ExecutionId]:
    """Cancel and ack ``members`` of a cancelled flow, 16 at a time; returns
    the members whose cancel failed transiently (left for the reconciler)."""
    failed: list[ExecutionId] = []
    limit = anyio.Semaphore(PARALLEL)
    levels = await _downstream_first(backend, FlowKeys(tag, flow_id), members)

    async def one(eid: ExecutionId) -> None:
        async with limit:
            try:
                done = await cancel_member(backend, eid, reason, spare_active=spare_active)
                if done:
                    await backend.ack_cancel_member(
                        AckCancelMember(tag=tag, flow_id=flow_id, eid=eid))
            except Exception as exc:
                log.warning("cancel of flow member %s failed: %s", eid, exc)
                done = False
            if not done:
                failed.append(eid)

    # Deepest members first: a downstream member is cancelled before its
    # upstream's cancel can cascade into it (it would end `skipped` instead).
    for level in levels:
        async with anyio.create_task_group() as tg:
            for eid in level:
                tg.start_soon(one, eid)
    return sorted(failed)


async def _downstream_first(
    backend: Backend, fk: FlowKeys, members: Sequence[ExecutionId]
) -> list[list[ExecutionId]]:
    """``members`` grouped by their depth in the flow graph, deepest first."""
    wanted = set(members)
    ins = await backend.sets([fk.incoming(m) for m in members])
    edge_ids = sorted({e for edges in ins for e in edges})
    upstream_of = dict(zip(edge_ids, (h.get("upstream_execution_id", "") for h in
                                      await backend.hashes([fk.edge(e) for e in edge_ids])),
                           strict=True))
    ups = {m: {upstream_of[e] for e in edges} & wanted
           for m, edges in zip(members, ins, strict=True)}
    depth: dict[ExecutionId, int] = {}

    def depth_of(m: ExecutionId, seen: frozenset[ExecutionId] = frozenset()) -> int:
        if m not in depth:
            parents = [u for u in ups.get(m, ()) if u not in seen]
            depth[m] = 1 + max((depth_of(u, seen | {m}) for u in parents), default=-1)
        return depth[m]

    by_depth: dict[int, list[ExecutionId]] = {}
    for m in members:
        by_depth.setdefault(depth_of(m), []).append(m)
    return [by_depth[d] for d in sorted(by_depth, reverse=True)]


async def _handle(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    done = 0
    for c in found:
        flow_id = c.member
        fk = FlowKeys(c.tag, flow_id)
        core = await backend.flow_core(fk)
        if core is None:
            await backend.drop_cancel_backlog(c.tag, flow_id, gone=True)
            continue
        (pending,) = await backend.sample_sets([fk.pending_cancels], RECONCILE_MEMBERS)
        if not pending:
            await backend.drop_cancel_backlog(c.tag, flow_id, gone=False)
            continue
        members: list[ExecutionId] = []
        for m in pending:
            try:
                members.append(parse_execution_id(m))
            except InvalidInput:
                await backend.remove_from_set(fk.pending_cancels, m)
        reason = core.get("cancel_reason") or "flow_cancelled"
        spare = core.get("cancellation_policy") == "cancel_pending"
        failed = await cancel_members(backend, c.tag, flow_id, members, reason,
                                      spare_active=spare)
        done += len(members) - len(failed)
    return done


def cancel_reconciler(interval: float = 15.0) -> Scanner:
    """``cancel_backlog`` entries past their grace window, 50 flows per partition."""

    def indexes(pk: PartitionKeys, _lane: str | None) -> list[str]:
        return [pk.cancel_backlog]

    return Scanner(CANCEL_RECONCILER, interval, 50, indexes, _handle)
