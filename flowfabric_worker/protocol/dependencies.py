"""Function-call structs that run on a flow member's own partition (spec 04
§5): applying a staged edge to the child, resolving it when the upstream ends,
re-evaluating and promoting eligibility, and the flow-aware form of
``ff_replay_execution`` (§5.14). By the co-location rule (§2.2) the member's
partition is its flow's slot.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.flows import DEPENDENCY_KINDS, check_colocated
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import (
    ExecutionId,
    execution_tag,
    parse_execution_id,
    validate_uuid,
)
from flowfabric_worker.protocol.keys import ExecKeys

__all__ = [
    "ApplyDependencyResult",
    "ApplyDependencyToChild",
    "EligibilityResult",
    "EvaluateFlowEligibility",
    "PromoteBlockedToEligible",
    "ReplayFlowMember",
    "ReplayFlowMemberResult",
    "ResolveDependency",
    "ResolveResult",
]


class ApplyDependencyResult(msgspec.Struct, frozen=True):
    """``unsatisfied_count`` is ``None`` for an ``already_applied`` replay."""

    unsatisfied_count: int | None


class ApplyDependencyToChild(FCall[ApplyDependencyResult], frozen=True, kw_only=True):
    """``ff_apply_dependency_to_child`` (§5.5), on the child's partition."""

    NAME: ClassVar[str] = "ff_apply_dependency_to_child"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lane: str = "default"
    flow_id: str
    edge_id: str
    upstream: ExecutionId
    graph_revision: int
    dependency_kind: str = "success_only"
    data_passing_ref: str = ""
    with_edge_group: bool = True
    now_ms: int

    def __post_init__(self) -> None:
        parse_execution_id(self.eid)
        validate_uuid(self.flow_id, "flow id")
        validate_uuid(self.edge_id, "edge id")
        check_colocated(execution_tag(self.eid), self.upstream, "upstream")
        if self.dependency_kind not in DEPENDENCY_KINDS:
            raise InvalidInput(f"unsupported dependency kind {self.dependency_kind!r}")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        group = k.flow(self.flow_id).edge_group(self.eid) if self.with_edge_group else ""
        return [
            k.core,
            k.deps_meta,
            k.deps_unresolved,
            k.dep(self.edge_id),
            k.lane_eligible(self.lane),
            k.lane_blocked(self.lane, "dependencies"),
            k.deps_all_edges,
            group,
        ]

    def argv(self) -> list[str]:
        return [
            self.flow_id,
            self.edge_id,
            self.upstream,
            str(self.graph_revision),
            self.dependency_kind,
            self.data_passing_ref,
            str(self.now_ms),
        ]

    def decode(self, reply: Any) -> ApplyDependencyResult:
        value = self.envelope(reply).field(0)
        return ApplyDependencyResult(
            unsatisfied_count=None if value == "already_applied" else int(value)
        )


class ResolveResult(msgspec.Struct, frozen=True):
    """``status``: satisfied | impossible | already_resolved | already_fired |
    pending; ``marker``: "" | data_injected | child_skipped."""

    status: str
    marker: str

    @property
    def child_skipped(self) -> bool:
        return self.status == "impossible" and self.marker == "child_skipped"


class ResolveDependency(FCall[ResolveResult], frozen=True, kw_only=True):
    """``ff_resolve_dependency`` (§5.6). Engine-only: never called by workers."""

    NAME: ClassVar[str] = "ff_resolve_dependency"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lane: str = "default"
    attempt_index: int = 0
    flow_id: str
    edge_id: str
    upstream: ExecutionId
    upstream_outcome: str
    now_ms: int

    def __post_init__(self) -> None:
        parse_execution_id(self.eid)
        validate_uuid(self.flow_id, "flow id")
        validate_uuid(self.edge_id, "edge id")
        check_colocated(execution_tag(self.eid), self.upstream, "upstream")
        if not self.upstream_outcome:
            raise InvalidInput("upstream_outcome is required")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        fk = k.flow(self.flow_id)
        return [
            k.core,
            k.deps_meta,
            k.deps_unresolved,
            k.dep(self.edge_id),
            k.lane_eligible(self.lane),
            k.lane_terminal(self.lane),
            k.lane_blocked(self.lane, "dependencies"),
            k.attempt(self.attempt_index),
            k.stream_meta(self.attempt_index),
            k.payload,
            ExecKeys(self.upstream).result,
            fk.edge_group(self.eid),
            fk.incoming(self.eid),
            k.pending_cancel_groups,
        ]

    def argv(self) -> list[str]:
        return [self.edge_id, self.upstream_outcome, str(self.now_ms), self.flow_id, self.eid]

    def decode(self, reply: Any) -> ResolveResult:
        env = self.envelope(reply)
        return ResolveResult(status=env.field(0), marker=env.field(1))


class EligibilityResult(msgspec.Struct, frozen=True):
    status: str


class EvaluateFlowEligibility(FCall[EligibilityResult], frozen=True, kw_only=True):
    """``ff_evaluate_flow_eligibility`` (§5.7), read-only."""

    NAME: ClassVar[str] = "ff_evaluate_flow_eligibility"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId

    def __post_init__(self) -> None:
        parse_execution_id(self.eid)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.deps_meta]

    def argv(self) -> list[str]:
        return []

    def decode(self, reply: Any) -> EligibilityResult:
        return EligibilityResult(status=self.envelope(reply).field(0))


class PromoteBlockedToEligible(FCall[None], frozen=True, kw_only=True):
    """``ff_promote_blocked_to_eligible`` (§5.8)."""

    NAME: ClassVar[str] = "ff_promote_blocked_to_eligible"
    eid: ExecutionId
    lane: str = "default"
    now_ms: int

    def __post_init__(self) -> None:
        parse_execution_id(self.eid)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [
            k.core,
            k.lane_blocked(self.lane, "dependencies"),
            k.lane_eligible(self.lane),
            k.deps_meta,
            k.deps_unresolved,
        ]

    def argv(self) -> list[str]:
        return [self.eid, str(self.now_ms)]

    def decode(self, reply: Any) -> None:
        self.envelope(reply)


# ---------------------------------------------------------------- cancellation


class ReplayFlowMemberResult(msgspec.Struct, frozen=True):
    unsatisfied_count: int


class ReplayFlowMember(FCall[ReplayFlowMemberResult], frozen=True, kw_only=True):
    """The flow-aware form of ``ff_replay_execution`` (§5.14) for a skipped
    flow member: pass the ids of its inbound edges (``SMEMBERS in_adj``)."""

    NAME: ClassVar[str] = "ff_replay_execution"
    eid: ExecutionId
    lane: str = "default"
    inbound_edge_ids: tuple[str, ...] = ()
    now_ms: int = 0

    def __post_init__(self) -> None:
        parse_execution_id(self.eid)
        for edge_id in self.inbound_edge_ids:
            validate_uuid(edge_id, "edge id")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [
            k.core,
            k.lane_terminal(self.lane),
            k.lane_eligible(self.lane),
            k.lease_history,
            k.lane_blocked(self.lane, "dependencies"),
            k.deps_meta,
            k.deps_unresolved,
            *(k.dep(e) for e in self.inbound_edge_ids),
        ]

    def argv(self) -> list[str]:
        return [self.eid, str(self.now_ms), *self.inbound_edge_ids]

    def decode(self, reply: Any) -> ReplayFlowMemberResult:
        return ReplayFlowMemberResult(unsatisfied_count=int(self.envelope(reply).field(0, "0")))
