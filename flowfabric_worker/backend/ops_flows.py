"""Typed backend methods for flows, dependencies, budgets and quotas (spec 04)."""

from __future__ import annotations

from ..protocol.budgets import (
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
from ..protocol.flows import (
    AckCancelMember,
    AddExecutionToFlow,
    AddMemberResult,
    ApplyDependencyResult,
    ApplyDependencyToChild,
    CancelFlow,
    CancelFlowResult,
    CreateFlow,
    CreateFlowResult,
    DrainSiblingCancelGroup,
    EligibilityResult,
    EvaluateFlowEligibility,
    FlowStatusResult,
    PromoteBlockedToEligible,
    ReconcileSiblingCancelGroup,
    ReplayFlowMember,
    ReplayFlowMemberResult,
    ResolveDependency,
    ResolveResult,
    SetEdgeGroupPolicy,
    SetFlowTags,
    SetFlowTagsResult,
    SiblingGroupResult,
    StageDependencyEdge,
    StageEdgeResult,
)
from ._caller import Caller


class FlowOps(Caller):
    """One method per flow / dependency / budget / quota function."""

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
