"""Typed backend methods for flows, dependencies, budgets and quotas (spec 04)."""

from __future__ import annotations

from typing import Any

import msgspec

from flowfabric_worker.backend._caller import Caller
from flowfabric_worker.backend.flow_reads import FlowReads
from flowfabric_worker.protocol.budgets import (
    AdmissionResult,
    BudgetReply,
    CheckAdmissionAndRecord,
    CreateBudget,
    CreateQuotaPolicy,
    CreateResult,
    RecordSpend,
    ReleaseAdmission,
    ReleaseBudget,
    ReleaseResult,
    ReportUsageAndCheck,
    ResetBudget,
    ResetResult,
)
from flowfabric_worker.protocol.dependencies import (
    ApplyDependencyResult,
    ApplyDependencyToChild,
    EligibilityResult,
    EvaluateFlowEligibility,
    PromoteBlockedToEligible,
    ReplayFlowMember,
    ReplayFlowMemberResult,
    ResolveDependency,
    ResolveResult,
)
from flowfabric_worker.protocol.errors import (
    DependencyAlreadyExists,
    FlowAlreadyTerminal,
    StaleGraphRevision,
)
from flowfabric_worker.protocol.flows import (
    AckCancelMember,
    AddExecutionToFlow,
    AddMemberResult,
    CancelFlow,
    CancelFlowResult,
    CreateFlow,
    CreateFlowResult,
    DrainSiblingCancelGroup,
    FlowStatusResult,
    ReconcileSiblingCancelGroup,
    SetEdgeGroupPolicy,
    SetFlowTags,
    SetFlowTagsResult,
    SiblingGroupResult,
    StageDependencyEdge,
    StageEdgeResult,
)
from flowfabric_worker.protocol.keys import FlowKeys, PartitionKeys

_MAX_STAGE_ATTEMPTS = 16
_CANCEL_REPLY_CAP = 1000


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class FlowOps(FlowReads, Caller):
    """One method per flow / dependency / budget / quota function, plus the
    two client-side repairs spec 04 asks for (§5.3 staging retry, §5.9
    idempotent flow cancel)."""

    redis: Any  # the client's stubs differ between redis-py 5 and 8

    async def create_flow(self, args: CreateFlow) -> CreateFlowResult:
        return await self.call(args)

    async def add_execution_to_flow(self, args: AddExecutionToFlow) -> AddMemberResult:
        return await self.call(args)

    async def set_flow_tags(self, args: SetFlowTags) -> SetFlowTagsResult:
        return await self.call(args)

    async def stage_dependency_edge(self, args: StageDependencyEdge) -> StageEdgeResult:
        return await self.call(args)

    async def set_edge_group_policy(self, args: SetEdgeGroupPolicy) -> FlowStatusResult:
        return await self.call(args)

    async def apply_dependency_to_child(
        self, args: ApplyDependencyToChild
    ) -> ApplyDependencyResult:
        return await self.call(args)

    async def resolve_dependency(self, args: ResolveDependency) -> ResolveResult:
        return await self.call(args)

    async def evaluate_flow_eligibility(
        self, args: EvaluateFlowEligibility
    ) -> EligibilityResult:
        return await self.call(args)

    async def promote_blocked_to_eligible(self, args: PromoteBlockedToEligible) -> None:
        await self.call(args)

    async def cancel_flow(self, args: CancelFlow) -> CancelFlowResult:
        return await self.call(args)

    async def ack_cancel_member(self, args: AckCancelMember) -> None:
        await self.call(args)

    async def drain_sibling_cancel_group(
        self, args: DrainSiblingCancelGroup
    ) -> SiblingGroupResult:
        return await self.call(args)

    async def reconcile_sibling_cancel_group(
        self, args: ReconcileSiblingCancelGroup
    ) -> SiblingGroupResult:
        return await self.call(args)

    async def replay_flow_member(self, args: ReplayFlowMember) -> ReplayFlowMemberResult:
        return await self.call(args)

    async def create_budget(self, args: CreateBudget) -> CreateResult:
        return await self.call(args)

    async def report_usage_and_check(self, args: ReportUsageAndCheck) -> BudgetReply:
        return await self.call(args)

    async def record_spend(self, args: RecordSpend) -> BudgetReply:
        return await self.call(args)

    async def release_budget(self, args: ReleaseBudget) -> ReleaseResult:
        return await self.call(args)

    async def reset_budget(self, args: ResetBudget) -> ResetResult:
        return await self.call(args)

    async def create_quota_policy(self, args: CreateQuotaPolicy) -> CreateResult:
        return await self.call(args)

    async def check_admission_and_record(
        self, args: CheckAdmissionAndRecord
    ) -> AdmissionResult:
        return await self.call(args)

    async def release_admission(self, args: ReleaseAdmission) -> None:
        await self.call(args)

    async def drop_cancel_backlog(self, tag: str, flow_id: str, *, gone: bool) -> None:
        """Take a flow off ``cancel_backlog`` (spec 04 §4.8 reconciler); with
        ``gone`` (its flow_core vanished) also drop its ``pending_cancels``."""
        pipe = self.redis.pipeline(transaction=False)
        if gone:
            pipe.delete(FlowKeys(tag, flow_id).pending_cancels)
        pipe.zrem(PartitionKeys(tag).cancel_backlog, flow_id)
        await pipe.execute()

    async def remove_from_set(self, key: str, member: str) -> None:
        """``SREM`` a malformed entry from a flow index (``pending_cancels``,
        ``pending_cancel_groups``) so it cannot wedge a scanner."""
        await self.redis.srem(key, member)

    async def write_flow_summary(
        self, tag: str, flow_id: str, fields: dict[str, str], *, settled: bool
    ) -> None:
        """The projector's output (spec 04 §4.7) on ``flow_summary``; a
        ``settled`` flow (every member terminal, all of them seen) also leaves
        ``flow_index`` until a new member re-adds it."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(FlowKeys(tag, flow_id).summary, mapping=fields)
        if settled:
            pipe.srem(PartitionKeys(tag).flow_index, flow_id)
        await pipe.execute()

    async def call_atomic(self, fns: list[Any]) -> list[Any]:
        """Run calls on one slot inside ``MULTI``/``EXEC``: no other client's
        command (a worker's claim, say) runs between them. Each element of the
        result is the decoded value or the exception that call raised; a
        refusal does not undo the calls before it. Never resent after a lost
        reply (the sequence as a whole is not idempotent)."""
        async def once() -> list[Any]:
            pipe = self.redis.pipeline(transaction=True)
            for fn in fns:
                keys = list(fn.keys())
                pipe.execute_command("FCALL", fn.NAME, len(keys), *keys, *fn.argv())
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

        replies = await self._transport(  # type: ignore[attr-defined]
            "flow transaction", once, idempotent=False)
        out: list[Any] = []
        for fn, reply in zip(fns, replies, strict=True):
            if isinstance(reply, Exception):
                out.append(reply)
                continue
            try:
                out.append(fn.decode(reply))
            except Exception as exc:  # a refusal is a value here
                out.append(exc)
        return out

    async def stage_edge_with_retry(self, args: StageDependencyEdge) -> StageEdgeResult:
        """Stage an edge, re-reading ``graph_revision`` on ``stale_graph_revision``
        (§4.2). A ``dependency_already_exists`` for the same endpoints, kind and
        data ref counts as success (our earlier attempt whose reply was lost)."""
        call = args
        for _ in range(_MAX_STAGE_ATTEMPTS):
            try:
                return await self.call(call)
            except StaleGraphRevision:
                rev = await self.redis.hget(call.fk.core, "graph_revision")
                call = msgspec.structs.replace(call, expected_graph_revision=int(_text(rev) or 0))
            except DependencyAlreadyExists:
                edge = {
                    _text(k): _text(v)
                    for k, v in (await self.redis.hgetall(call.fk.edge(call.edge_id))).items()
                }
                same = (
                    edge.get("upstream_execution_id") == call.upstream
                    and edge.get("downstream_execution_id") == call.downstream
                    and edge.get("dependency_kind") == call.dependency_kind
                    and edge.get("data_passing_ref") == call.data_passing_ref
                )
                if not same:
                    raise
                rev = await self.redis.hget(call.fk.core, "graph_revision")
                return StageEdgeResult(edge_id=call.edge_id, graph_revision=int(_text(rev) or 0))
        return await self.call(call)

    async def cancel_flow_idempotent(self, args: CancelFlow) -> CancelFlowResult:
        """``ff_cancel_flow`` whose replay answers from the stored record, as
        0.15's control plane does (§5.9). Members are capped at 1000."""
        try:
            return await self.call(args)
        except FlowAlreadyTerminal:
            fields = ["public_flow_state", "cancellation_policy"]
            state, policy = await self.redis.hmget(args.fk.core, fields)
            if _text(state) != "cancelled":
                raise
            members = sorted(_text(m) for m in await self.redis.smembers(args.fk.members))
            return CancelFlowResult(
                policy=_text(policy) or args.policy, members=tuple(members[:_CANCEL_REPLY_CAP])
            )
