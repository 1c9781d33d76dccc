"""Function-call structs for flows, dependency edges, edge groups and flow
cancellation (spec 04 §5).

Flow-structural calls take the flow's partition ``tag`` (``{fp:N}``, see
:func:`~flowfabric_worker.protocol.partitions.flow_tag`). The calls that run
on a member's own partition (applying and resolving dependencies, eligibility,
the flow-aware replay) are in :mod:`.dependencies`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import (
    ExecutionId,
    execution_tag,
    parse_execution_id,
    validate_uuid,
)
from flowfabric_worker.protocol.keys import ExecKeys, FlowKeys, PartitionKeys

__all__ = [
    "COMPLETION_KIND",
    "AckCancelMember",
    "AddExecutionToFlow",
    "AddMemberResult",
    "CancelFlow",
    "CancelFlowResult",
    "CreateFlow",
    "CreateFlowResult",
    "DrainSiblingCancelGroup",
    "FlowStatusResult",
    "ReconcileSiblingCancelGroup",
    "SetEdgeGroupPolicy",
    "SetFlowTags",
    "SetFlowTagsResult",
    "SiblingGroupResult",
    "StageDependencyEdge",
    "StageEdgeResult",
]

#: Python extension: an edge satisfied by *any* terminal outcome of its
#: upstream. Our engine roles resolve it as ``success`` (the 0.15 library
#: stores the kind and never reads it); it gates a parent task on its
#: children, which must wake the parent whether they succeed or not.
COMPLETION_KIND = "ffw_completion"
DEPENDENCY_KINDS = frozenset({"success_only", COMPLETION_KIND})
POLICY_VARIANTS = frozenset({"all_of", "any_of", "quorum"})
CANCEL_POLICIES = frozenset({"flow_only", "cancel_all", "cancel_pending"})
MAX_K = 2147483647
_TAG = re.compile(r"^\{fp:(0|[1-9][0-9]{0,4})\}$")
_TAG_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[^.]")


def _check_tag(tag: str) -> None:
    if not _TAG.match(tag):
        raise InvalidInput(f"flow partition tag must look like {{fp:N}}, got {tag!r}")


def check_colocated(tag: str, eid: str, what: str = "execution") -> None:
    """Co-location (§2.2): a member must be minted on its flow's partition."""
    parse_execution_id(eid)
    if execution_tag(eid) != tag:
        raise InvalidInput(
            f"{what} {eid} is on partition {execution_tag(eid)} but the flow is on {tag}; "
            "mint flow members on the flow's partition"
        )


class _FlowCall(msgspec.Struct, frozen=True, kw_only=True):
    tag: str
    flow_id: str

    def _validate_flow(self) -> None:
        _check_tag(self.tag)
        validate_uuid(self.flow_id, "flow id")

    @property
    def fk(self) -> FlowKeys:
        return FlowKeys(self.tag, self.flow_id)


# ---------------------------------------------------------------- create / members


class CreateFlowResult(msgspec.Struct, frozen=True):
    flow_id: str
    created: bool


class CreateFlow(_FlowCall, FCall[CreateFlowResult], frozen=True, kw_only=True):
    """``ff_create_flow`` (§5.1); a replay answers ``created=False``."""

    NAME: ClassVar[str] = "ff_create_flow"
    IDEMPOTENT: ClassVar[bool] = True
    flow_kind: str = "dag"
    namespace: str = ""
    now_ms: int = 0

    def __post_init__(self) -> None:
        self._validate_flow()

    def keys(self) -> list[str]:
        return [self.fk.core, self.fk.members, PartitionKeys(self.tag).flow_index]

    def argv(self) -> list[str]:
        return [self.flow_id, self.flow_kind, self.namespace, str(self.now_ms)]

    def decode(self, reply: Any) -> CreateFlowResult:
        env = self.envelope(reply)
        return CreateFlowResult(flow_id=env.field(0), created=env.status == "OK")


class AddMemberResult(msgspec.Struct, frozen=True):
    eid: ExecutionId
    node_count: int
    added: bool


class AddExecutionToFlow(_FlowCall, FCall[AddMemberResult], frozen=True, kw_only=True):
    """``ff_add_execution_to_flow`` (§5.2). The co-location check is done here,
    before anything is sent, as 0.15 does."""

    NAME: ClassVar[str] = "ff_add_execution_to_flow"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    now_ms: int = 0

    def __post_init__(self) -> None:
        self._validate_flow()
        check_colocated(self.tag, self.eid)

    def keys(self) -> list[str]:
        fk = self.fk
        return [fk.core, fk.members, PartitionKeys(self.tag).flow_index, ExecKeys(self.eid).core]

    def argv(self) -> list[str]:
        return [self.flow_id, self.eid, str(self.now_ms)]

    def decode(self, reply: Any) -> AddMemberResult:
        # `already_member_of_different_flow:<id>` (unmapped in 0.15) raises
        # AlreadyMemberOfDifferentFlow, an ExecutionAlreadyInFlow with .flow_id.
        env = self.envelope(reply)
        return AddMemberResult(
            eid=env.field(0), node_count=int(env.field(1, "0")), added=env.status == "OK"
        )


class SetFlowTagsResult(msgspec.Struct, frozen=True):
    pair_count: int


class SetFlowTags(_FlowCall, FCall[SetFlowTagsResult], frozen=True, kw_only=True):
    """``ff_set_flow_tags`` (§5.13); keys must look like ``namespace.name``."""

    NAME: ClassVar[str] = "ff_set_flow_tags"
    IDEMPOTENT: ClassVar[bool] = True
    tags: dict[str, str]

    def __post_init__(self) -> None:
        self._validate_flow()
        if not self.tags:
            raise InvalidInput("tags must not be empty")
        for key in self.tags:
            if not _TAG_KEY.match(key):
                raise InvalidInput(f"invalid tag key {key!r}: expected <namespace>.<name>")

    def keys(self) -> list[str]:
        return [self.fk.core, self.fk.tags]

    def argv(self) -> list[str]:
        return [x for kv in self.tags.items() for x in kv]

    def decode(self, reply: Any) -> SetFlowTagsResult:
        return SetFlowTagsResult(pair_count=int(self.envelope(reply).field(0, "0")))


# ---------------------------------------------------------------- edges


class StageEdgeResult(msgspec.Struct, frozen=True):
    edge_id: str
    graph_revision: int


class StageDependencyEdge(_FlowCall, FCall[StageEdgeResult], frozen=True, kw_only=True):
    """``ff_stage_dependency_edge`` (§5.3). Retry on ``stale_graph_revision``
    after re-reading the revision."""

    NAME: ClassVar[str] = "ff_stage_dependency_edge"
    edge_id: str
    upstream: ExecutionId
    downstream: ExecutionId
    expected_graph_revision: int
    dependency_kind: str = "success_only"
    data_passing_ref: str = ""
    now_ms: int

    def __post_init__(self) -> None:
        self._validate_flow()
        validate_uuid(self.edge_id, "edge id")
        check_colocated(self.tag, self.upstream, "upstream")
        check_colocated(self.tag, self.downstream, "downstream")
        if self.dependency_kind not in DEPENDENCY_KINDS:
            raise InvalidInput(f"unsupported dependency kind {self.dependency_kind!r}")
        if self.expected_graph_revision < 0:
            raise InvalidInput("expected_graph_revision must be >= 0")

    def keys(self) -> list[str]:
        fk = self.fk
        return [
            fk.core,
            fk.members,
            fk.edge(self.edge_id),
            fk.outgoing(self.upstream),
            fk.incoming(self.downstream),
            fk.grant(self.edge_id),
        ]

    def argv(self) -> list[str]:
        return [
            self.flow_id,
            self.edge_id,
            self.upstream,
            self.downstream,
            self.dependency_kind,
            self.data_passing_ref,
            str(self.expected_graph_revision),
            str(self.now_ms),
        ]

    def decode(self, reply: Any) -> StageEdgeResult:
        env = self.envelope(reply)
        return StageEdgeResult(edge_id=env.field(0), graph_revision=int(env.field(1, "0")))


class FlowStatusResult(msgspec.Struct, frozen=True):
    """A bare ``[1, "OK", <status>...]`` answer."""

    status: str


class SetEdgeGroupPolicy(_FlowCall, FCall[FlowStatusResult], frozen=True, kw_only=True):
    """``ff_set_edge_group_policy`` (§5.4): ``set`` or ``already_set``."""

    NAME: ClassVar[str] = "ff_set_edge_group_policy"
    IDEMPOTENT: ClassVar[bool] = True
    downstream: ExecutionId
    policy_variant: Literal["all_of", "any_of", "quorum"] = "all_of"
    on_satisfied: str = ""
    k: int = 0
    now_ms: int

    def __post_init__(self) -> None:
        self._validate_flow()
        check_colocated(self.tag, self.downstream, "downstream")
        if self.policy_variant not in POLICY_VARIANTS:
            raise InvalidInput(f"unsupported policy variant {self.policy_variant!r}")
        if self.policy_variant == "quorum" and not 1 <= self.k <= MAX_K:
            raise InvalidInput("quorum k must be between 1 and 2147483647")
        if self.policy_variant != "quorum" and self.k != 0:
            raise InvalidInput("k is only meaningful for quorum")
        if self.policy_variant == "all_of":
            if self.on_satisfied:
                raise InvalidInput("on_satisfied must be empty for all_of")
        elif self.on_satisfied not in ("cancel_remaining", "let_run"):
            raise InvalidInput("on_satisfied must be cancel_remaining or let_run")

    def keys(self) -> list[str]:
        return [self.fk.core, self.fk.edge_group(self.downstream)]

    def argv(self) -> list[str]:
        return [self.policy_variant, self.on_satisfied, str(self.k), str(self.now_ms)]

    def decode(self, reply: Any) -> FlowStatusResult:
        return FlowStatusResult(status=self.envelope(reply).field(0))


class CancelFlowResult(msgspec.Struct, frozen=True):
    policy: str
    members: tuple[ExecutionId, ...]


class CancelFlow(_FlowCall, FCall[CancelFlowResult], frozen=True, kw_only=True):
    """``ff_cancel_flow`` (§5.9). A second call raises ``flow_already_terminal``;
    the client turns that into an idempotent answer from the stored record."""

    NAME: ClassVar[str] = "ff_cancel_flow"
    reason: str = ""
    policy: str = "cancel_all"
    now_ms: int = 0
    grace_ms: int | None = None

    def __post_init__(self) -> None:
        self._validate_flow()
        if self.policy not in CANCEL_POLICIES:
            raise InvalidInput(f"unknown cancellation policy {self.policy!r}")
        if self.grace_ms is not None and not 0 <= self.grace_ms <= 2**53 - 1:
            raise InvalidInput("grace_ms must be a whole number in [0, 2^53-1]")

    def keys(self) -> list[str]:
        pk = PartitionKeys(self.tag)
        fk = self.fk
        return [fk.core, fk.members, pk.flow_index, fk.pending_cancels, pk.cancel_backlog]

    def argv(self) -> list[str]:
        grace = "" if self.grace_ms is None else str(self.grace_ms)
        return [self.flow_id, self.reason, self.policy, str(self.now_ms), grace]

    def decode(self, reply: Any) -> CancelFlowResult:
        env = self.envelope(reply)
        return CancelFlowResult(policy=env.field(0), members=env.fields[1:])


class AckCancelMember(_FlowCall, FCall[None], frozen=True, kw_only=True):
    """``ff_ack_cancel_member`` (§5.10); never fails."""

    NAME: ClassVar[str] = "ff_ack_cancel_member"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId

    def __post_init__(self) -> None:
        self._validate_flow()

    def keys(self) -> list[str]:
        return [self.fk.pending_cancels, PartitionKeys(self.tag).cancel_backlog]

    def argv(self) -> list[str]:
        return [self.eid, self.flow_id]

    def decode(self, reply: Any) -> None:
        self.envelope(reply)


class SiblingGroupResult(msgspec.Struct, frozen=True):
    action: str
    detail: str


class DrainSiblingCancelGroup(_FlowCall, FCall[SiblingGroupResult], frozen=True, kw_only=True):
    """``ff_drain_sibling_cancel_group`` (§5.11): drained | already_drained |
    drained_sans_group."""

    NAME: ClassVar[str] = "ff_drain_sibling_cancel_group"
    IDEMPOTENT: ClassVar[bool] = True
    downstream: ExecutionId

    def __post_init__(self) -> None:
        self._validate_flow()
        parse_execution_id(self.downstream)

    def keys(self) -> list[str]:
        return [PartitionKeys(self.tag).pending_cancel_groups, self.fk.edge_group(self.downstream)]

    def argv(self) -> list[str]:
        return [self.flow_id, self.downstream]

    def decode(self, reply: Any) -> SiblingGroupResult:
        env = self.envelope(reply)
        return SiblingGroupResult(action=env.field(0), detail=env.field(1))


class ReconcileSiblingCancelGroup(DrainSiblingCancelGroup, frozen=True, kw_only=True):
    """``ff_reconcile_sibling_cancel_group`` (§5.12): no_op | sremmed_stale |
    completed_drain, with the reason in ``detail``."""

    NAME: ClassVar[str] = "ff_reconcile_sibling_cancel_group"


# ---------------------------------------------------------------- replay
