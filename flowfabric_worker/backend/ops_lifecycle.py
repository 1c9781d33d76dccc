"""Typed backend methods for execution lifecycle (spec 02)."""

from __future__ import annotations

from typing import Any

from flowfabric_worker.backend import cluster_registry
from flowfabric_worker.backend._caller import Caller
from flowfabric_worker.protocol.lifecycle import (
    CancelExecution,
    CancelResult,
    ClaimExecution,
    ClaimResult,
    CompleteExecution,
    CompleteResult,
    CreateExecution,
    CreateResult,
    DelayExecution,
    DelayResult,
    FailExecution,
    FailResult,
    GrantAndClaimResult,
    GrantResult,
    IssueClaimGrant,
    IssueGrantAndClaim,
    MoveToWaitingChildren,
    OkResult,
    RenewLease,
    RenewLeaseResult,
    UpdateProgress,
)
from flowfabric_worker.protocol.maintenance import (
    BlockExecutionForAdmission,
    ExpireExecution,
    ExpireResult,
    IssueReclaimGrant,
    MarkLeaseExpiredIfDue,
    PromoteDelayed,
    ReclaimExecution,
    UnblockExecution,
)
from flowfabric_worker.protocol.operator import (
    ChangePriority,
    ChangePriorityResult,
    ReplayExecution,
    RevokeLease,
    RevokeResult,
    SetExecutionTags,
)
from flowfabric_worker.protocol.worker_registry import (
    HeartbeatResult,
    HeartbeatWorker,
    RegisterWorker,
    Version,
)


class LifecycleOps(Caller):
    """One method per lifecycle function of spec 02 §3."""

    redis: Any  # Backend.redis (the cluster registry path sends plain commands)

    async def create_execution(self, args: CreateExecution) -> CreateResult:
        return await self.call(args)

    async def issue_claim_grant(self, args: IssueClaimGrant) -> GrantResult:
        return await self.call(args)

    async def claim_execution(self, args: ClaimExecution) -> ClaimResult:
        return await self.call(args)

    async def issue_grant_and_claim(self, args: IssueGrantAndClaim) -> GrantAndClaimResult:
        return await self.call(args)

    async def renew_lease(self, args: RenewLease) -> RenewLeaseResult:
        return await self.call(args)

    async def update_progress(self, args: UpdateProgress) -> OkResult:
        return await self.call(args)

    async def complete_execution(self, args: CompleteExecution) -> CompleteResult:
        return await self.call(args)

    async def fail_execution(self, args: FailExecution) -> FailResult:
        return await self.call(args)

    async def cancel_execution(self, args: CancelExecution) -> CancelResult:
        return await self.call(args)

    async def delay_execution(self, args: DelayExecution) -> DelayResult:
        return await self.call(args)

    async def move_to_waiting_children(self, args: MoveToWaitingChildren) -> OkResult:
        return await self.call(args)

    async def promote_delayed(self, args: PromoteDelayed) -> OkResult:
        return await self.call(args)

    async def mark_lease_expired_if_due(self, args: MarkLeaseExpiredIfDue) -> OkResult:
        return await self.call(args)

    async def revoke_lease(self, args: RevokeLease) -> RevokeResult:
        return await self.call(args)

    async def issue_reclaim_grant(self, args: IssueReclaimGrant) -> GrantResult:
        return await self.call(args)

    async def reclaim_execution(self, args: ReclaimExecution) -> ClaimResult:
        return await self.call(args)

    async def expire_execution(self, args: ExpireExecution) -> ExpireResult:
        return await self.call(args)

    async def change_priority(self, args: ChangePriority) -> ChangePriorityResult:
        return await self.call(args)

    async def replay_execution(self, args: ReplayExecution) -> OkResult:
        return await self.call(args)

    async def set_execution_tags(self, args: SetExecutionTags) -> OkResult:
        return await self.call(args)

    async def block_execution_for_admission(self, args: BlockExecutionForAdmission) -> OkResult:
        return await self.call(args)

    async def unblock_execution(self, args: UnblockExecution) -> OkResult:
        return await self.call(args)

    async def register_worker(self, args: RegisterWorker) -> OkResult:
        if getattr(self, "cluster", None) is not None:  # untagged keys: plain commands
            return await cluster_registry.register_worker(self.redis, args)
        return await self.call(args)

    async def heartbeat_worker(self, args: HeartbeatWorker) -> HeartbeatResult:
        if getattr(self, "cluster", None) is not None:
            return await cluster_registry.heartbeat_worker(self.redis, args)
        return await self.call(args)

    async def library_version(self, args: Version | None = None) -> str:
        return await self.call(args or Version())
