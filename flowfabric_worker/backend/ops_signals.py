"""Typed backend methods for suspension, waitpoints and signals (spec 03 §5–§6)."""

from __future__ import annotations

from flowfabric_worker.backend._caller import Caller
from flowfabric_worker.protocol.signals import (
    BufferSignal,
    ClaimResumedExecution,
    ClaimResumedResult,
    CloseWaitpoint,
    CloseWaitpointResult,
    CreatePendingWaitpoint,
    DeliverSignal,
    ExpireSuspension,
    ExpireSuspensionResult,
    HmacKids,
    ListHmacKids,
    PendingWaitpoint,
    ResumeExecution,
    ResumeExecutionResult,
    RotateHmacResult,
    RotateHmacSecret,
    SignalResult,
    SuspendExecution,
    SuspendResult,
)


class SignalOps(Caller):
    """One method per waitpoint / signal / HMAC / resume-claim function."""

    async def create_pending_waitpoint(self, args: CreatePendingWaitpoint) -> PendingWaitpoint:
        return await self.call(args)

    async def suspend_execution(self, args: SuspendExecution) -> SuspendResult:
        return await self.call(args)

    async def resume_execution(self, args: ResumeExecution) -> ResumeExecutionResult:
        return await self.call(args)

    async def close_waitpoint(self, args: CloseWaitpoint) -> CloseWaitpointResult:
        return await self.call(args)

    async def expire_suspension(self, args: ExpireSuspension) -> ExpireSuspensionResult:
        return await self.call(args)

    async def deliver_signal(self, args: DeliverSignal) -> SignalResult:
        return await self.call(args)

    async def buffer_signal(self, args: BufferSignal) -> SignalResult:
        return await self.call(args)

    async def claim_resumed_execution(self, args: ClaimResumedExecution) -> ClaimResumedResult:
        return await self.call(args)

    async def rotate_waitpoint_hmac_secret(self, args: RotateHmacSecret) -> RotateHmacResult:
        return await self.call(args)

    async def list_waitpoint_hmac_kids(self, args: ListHmacKids) -> HmacKids:
        return await self.call(args)
