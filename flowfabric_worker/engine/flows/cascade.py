"""The completion cascade (spec 04 §4.5, spec 05 §8.3): settle the outgoing
edges of a flow member that reached a terminal state, then the edges of every
child that this skipped, level by level.

Workers never resolve dependencies; the engine does, from here (push) and from
the dependency reconciler (pull). Every step is idempotent on the library side
(``already_resolved`` / ``already_fired``), so duplicate deliveries and several
processes cascading the same completion are harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.dependencies import ResolveDependency, ResolveResult
from flowfabric_worker.protocol.flows import COMPLETION_KIND
from flowfabric_worker.protocol.ids import ExecutionId, execution_tag
from flowfabric_worker.protocol.keys import WAKE_CHANNEL, FlowKeys

__all__ = ["MAX_DEPTH", "CascadeReport", "cascade", "edge_outcome", "resolve_edges"]

log = logging.getLogger("flowfabric_worker.flows")

#: Deeper skip chains are left to the dependency reconciler (spec 05 §8.3).
MAX_DEPTH = 50


def edge_outcome(kind: str, outcome: str) -> str:
    """The outcome an edge is resolved with: the upstream's own, except for
    our ``ffw_completion`` edges, which any terminal outcome satisfies."""
    return "success" if kind == COMPLETION_KIND else outcome


@dataclass
class CascadeReport:
    """What one cascade did: edges settled, children released or skipped."""

    resolved: int = 0
    promoted: list[ExecutionId] = field(default_factory=list)
    skipped: list[ExecutionId] = field(default_factory=list)
    errors: int = 0
    #: Members released without an edge to resolve (all already settled).
    released: int = 0


async def resolve_edges(
    backend: Backend, calls: list[ResolveDependency], report: CascadeReport
) -> list[ExecutionId]:
    """Send the resolutions in one pipeline; returns the children they skipped.

    A child released to ``eligible`` gets its lane's wake message, so an idle
    worker claims it at once instead of at its next poll.
    """
    if not calls:
        return []
    skipped: list[ExecutionId] = []
    lanes: set[str] = set()
    for call, reply in zip(calls, await backend.call_many(list(calls)), strict=True):
        if isinstance(reply, Exception):
            report.errors += 1
            log.warning("resolving edge %s of %s failed: %s", call.edge_id, call.eid, reply)
            continue
        assert isinstance(reply, ResolveResult)
        report.resolved += 1
        if reply.status == "satisfied":
            report.promoted.append(call.eid)
            lanes.add(call.lane)
        elif reply.child_skipped:
            report.skipped.append(call.eid)
            skipped.append(call.eid)
    for lane in sorted(lanes):
        try:
            await backend.publish(WAKE_CHANNEL.format(lane=lane), "1")
        except Exception as exc:  # only latency depends on it
            log.info("wake publish for lane %s failed: %s", lane, exc)
    return skipped


async def cascade(
    backend: Backend, upstream: ExecutionId, flow_id: str,
    report: CascadeReport | None = None,
) -> CascadeReport:
    """Resolve every outgoing edge of ``upstream`` with its stored outcome and
    recurse into the children that got skipped (breadth first, depth ≤ 50).

    An upstream that is not terminal (a message that arrived after a replay,
    say) resolves nothing: a non-success outcome would wrongly skip children.
    """
    report = report or CascadeReport()
    level = [upstream]
    depth = 0
    while level and depth <= MAX_DEPTH:
        nxt: list[ExecutionId] = []
        for eid in level:
            nxt.extend(await _one(backend, eid, flow_id, report))
        level, depth = nxt, depth + 1
    return report


async def _one(
    backend: Backend, upstream: ExecutionId, flow_id: str, report: CascadeReport
) -> list[ExecutionId]:
    (phase, outcome), = await backend.exec_fields([upstream], ["lifecycle_phase",
                                                              "terminal_outcome"])
    if phase != "terminal" or outcome in ("", "none"):
        return []
    fk = FlowKeys(execution_tag(upstream), flow_id)
    edge_ids = await backend.outgoing_edges(fk, upstream)
    if not edge_ids:
        return []
    edges = await backend.hashes([fk.edge(e) for e in edge_ids])
    children = [e.get("downstream_execution_id", "") for e in edges]
    cores = await backend.exec_fields([c for c in children if c],
                                      ["lane_id", "current_attempt_index"])
    now = await backend.server_time_ms()
    calls: list[ResolveDependency] = []
    it = iter(cores)
    for edge_id, edge, child in zip(edge_ids, edges, children, strict=True):
        if not child:  # unreadable edge: the reconciler will get to it
            report.errors += 1
            continue
        lane, attempt = next(it)
        try:
            calls.append(ResolveDependency(
                eid=child, lane=lane or "default",
                attempt_index=int(attempt) if attempt.isdigit() else 0,
                flow_id=flow_id, edge_id=edge_id, upstream=upstream,
                upstream_outcome=edge_outcome(edge.get("dependency_kind", ""), outcome),
                now_ms=now,
            ))
        except Exception as exc:  # malformed stored data: skip this edge
            report.errors += 1
            log.warning("edge %s of flow %s is malformed: %s", edge_id, flow_id, exc)
    return await resolve_edges(backend, calls, report)
