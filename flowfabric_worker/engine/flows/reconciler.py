"""The dependency reconciler (spec 04 §4.5 item 2, spec 05 §7.2 #8): the pull
safety net behind completion dispatch.

For each child still in ``blocked:dependencies``, look at up to 20 of its
unresolved edges; an edge whose upstream is terminal is resolved with the
upstream's stored outcome. A lost pub/sub message, a crashed cascade or a
skip chain deeper than the cascade's limit is repaired here; the children this
skips are cascaded at once (their own children are not in the blocked set
until their edges are looked at, so waiting a tick per level is avoidable).
"""

from __future__ import annotations

from collections.abc import Sequence

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.flows.cascade import (
    CascadeReport,
    cascade,
    edge_outcome,
    resolve_edges,
)
from flowfabric_worker.engine.runner import Candidate, Scanner
from flowfabric_worker.protocol.dependencies import PromoteBlockedToEligible, ResolveDependency
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import WAKE_CHANNEL, ExecKeys, PartitionKeys

__all__ = ["DEPENDENCY_RECONCILER", "dependency_reconciler"]

DEPENDENCY_RECONCILER = "dependency_reconciler"
EDGES_PER_CHILD = 20


async def reconcile_children(
    backend: Backend, children: Sequence[tuple[ExecutionId, str]], now: int
) -> CascadeReport:
    """Resolve the settled edges of ``(child, lane)`` pairs; cascade the skips."""
    report = CascadeReport()
    edge_sets = await backend.sets([ExecKeys(c).deps_unresolved for c, _ in children])
    wanted: list[tuple[ExecutionId, str, str]] = [
        (child, lane, edge_id)
        for (child, lane), edges in zip(children, edge_sets, strict=True)
        for edge_id in edges[:EDGES_PER_CHILD]
    ]
    # Every edge already settled but still blocked: a parent task that
    # parked after its last child's edge resolved. Release it (the library
    # re-checks that nothing is open).
    stranded = [PromoteBlockedToEligible(eid=child, lane=lane, now_ms=now)
                for (child, lane), edges in zip(children, edge_sets, strict=True) if not edges]
    for call, reply in zip(stranded, await backend.call_many(list(stranded)), strict=True):
        if not isinstance(reply, Exception):
            report.promoted.append(call.eid)
            report.released += 1
            await backend.publish(WAKE_CHANNEL.format(lane=call.lane), "1")
    if not wanted:
        return report
    deps = await backend.hashes([ExecKeys(c).dep(e) for c, _, e in wanted])
    upstreams = sorted({d.get("upstream_execution_id", "") for d in deps} - {""})
    states = dict(zip(upstreams, await backend.exec_fields(
        upstreams, ["lifecycle_phase", "terminal_outcome"]), strict=True))
    cores = dict(zip([c for c, _ in children], await backend.exec_fields(
        [c for c, _ in children], ["current_attempt_index"]), strict=True))
    calls: list[ResolveDependency] = []
    for (child, lane, edge_id), dep in zip(wanted, deps, strict=True):
        up = dep.get("upstream_execution_id", "")
        phase, outcome = states.get(up, ["", ""])
        if phase != "terminal" or outcome in ("", "none") or not dep.get("flow_id"):
            continue
        attempt = cores[child][0]
        try:
            calls.append(ResolveDependency(
                eid=child, lane=lane, attempt_index=int(attempt) if attempt.isdigit() else 0,
                flow_id=dep["flow_id"], edge_id=edge_id, upstream=up,
                upstream_outcome=edge_outcome(dep.get("dependency_kind", ""), outcome),
                now_ms=now,
            ))
        except Exception:
            report.errors += 1
    for child in await resolve_edges(backend, calls, report):
        flow_id = next((d.get("flow_id", "") for (c, _, _), d in zip(wanted, deps, strict=True)
                        if c == child), "")
        if flow_id:
            await cascade(backend, child, flow_id, report)
    return report


async def _handle(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    children = [(c.member, c.lane or "default") for c in found if c.lane]
    report = await reconcile_children(backend, children, now)
    return report.resolved + report.released


def dependency_reconciler(interval: float = 15.0) -> Scanner:
    """``blocked:dependencies`` of every lane, 50 children per partition."""

    def indexes(pk: PartitionKeys, lane: str | None) -> list[str]:
        return [pk.lane_blocked(lane or "", "dependencies")]

    return Scanner(DEPENDENCY_RECONCILER, interval, 50, indexes, _handle,
                   per_lane=True, due_only=False)
