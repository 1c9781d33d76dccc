"""Sibling cancellation for ``any_of`` / ``quorum`` groups with
``cancel_remaining`` (spec 04 §4.9): the ``edge_cancel_dispatcher`` cancels the
upstreams a decided group listed, then drains the group; the
``edge_cancel_reconciler`` only finishes drains the dispatcher could not record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.flows.cancel import cancel_member
from flowfabric_worker.engine.runner import Candidate, Scanner
from flowfabric_worker.protocol.flows import DrainSiblingCancelGroup, ReconcileSiblingCancelGroup
from flowfabric_worker.protocol.ids import ExecutionId, parse_execution_id, validate_uuid
from flowfabric_worker.protocol.keys import FlowKeys, PartitionKeys

__all__ = [
    "EDGE_CANCEL_DISPATCHER",
    "EDGE_CANCEL_RECONCILER",
    "edge_cancel_dispatcher",
    "edge_cancel_reconciler",
]

log = logging.getLogger("flowfabric_worker.flows")

EDGE_CANCEL_DISPATCHER = "edge_cancel_dispatcher"
EDGE_CANCEL_RECONCILER = "edge_cancel_reconciler"
MAX_SIBLINGS = 1024
_GROUP_FIELDS = ["cancel_siblings_pending_flag", "cancel_siblings_pending_members",
                 "cancel_siblings_reason"]


def _parse(tuple_text: str) -> tuple[str, ExecutionId] | None:
    flow_id, sep, downstream = tuple_text.partition("|")
    try:
        if not sep:
            return None
        return validate_uuid(flow_id, "flow id"), parse_execution_id(downstream)
    except Exception:
        return None


async def _dispatch(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    done = 0
    for c in found:
        parsed = _parse(c.member)
        if parsed is None:
            await backend.remove_from_set(c.index, c.member)
            continue
        flow_id, downstream = parsed
        fk = FlowKeys(c.tag, flow_id)
        (group,) = await backend.hashes([fk.edge_group(downstream)])
        flag = group.get("cancel_siblings_pending_flag", "")
        listed = [m for m in group.get("cancel_siblings_pending_members", "").split("|") if m]
        reason = group.get("cancel_siblings_reason") or "sibling_quorum_satisfied"
        complete = True
        if flag or listed:
            for sibling in listed[:MAX_SIBLINGS]:
                try:
                    ok = await cancel_member(backend, parse_execution_id(sibling), reason)
                except Exception as exc:
                    log.warning("sibling cancel of %s failed: %s", sibling, exc)
                    ok = False
                complete = complete and ok
        if not complete:  # left for the next tick, not drained
            continue
        await backend.drain_sibling_cancel_group(
            DrainSiblingCancelGroup(tag=c.tag, flow_id=flow_id, downstream=downstream))
        done += 1
    return done


async def _reconcile(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    calls = []
    for c in found:
        parsed = _parse(c.member)
        if parsed is None:
            continue  # the dispatcher removes malformed tuples
        calls.append(ReconcileSiblingCancelGroup(tag=c.tag, flow_id=parsed[0],
                                                 downstream=parsed[1]))
    done = 0
    for call, reply in zip(calls, await backend.call_many(list(calls)), strict=True):
        if isinstance(reply, Exception):
            log.warning("reconciling sibling group %s failed: %s", call.downstream, reply)
        elif reply.action != "no_op":
            done += 1
    return done


def _indexes(pk: PartitionKeys, _lane: str | None) -> list[str]:
    return [pk.pending_cancel_groups]


def edge_cancel_dispatcher(interval: float = 1.0) -> Scanner:
    return Scanner(EDGE_CANCEL_DISPATCHER, interval, 50, _indexes, _dispatch,
                   set_read="sample")


def edge_cancel_reconciler(interval: float = 10.0) -> Scanner:
    return Scanner(EDGE_CANCEL_RECONCILER, interval, 50, _indexes, _reconcile,
                   set_read="sample")
