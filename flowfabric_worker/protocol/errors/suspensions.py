"""Contract error codes (spec 01 §7.3) of suspension and waitpoints."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import I, R, SuspensionError, T, _code

__all__ = [
    "AdditionalWaitpointBindingMalformed",
    "AlreadySuspended",
    "ExecutionNotSuspended",
    "InvalidLeaseForSuspend",
    "InvalidWaitpointForExecution",
    "InvalidWaitpointKey",
    "PendingWaitpointExpired",
    "ResumeConditionNotMet",
    "UsePendingWithExtrasUnsupported",
    "WaitpointAlreadyExists",
    "WaitpointNotFound",
    "WaitpointNotOpen",
    "WaitpointNotPending",
    "WaitpointNotTokenBound",
]


@_code("execution_not_suspended", I, "state")
class ExecutionNotSuspended(SuspensionError):
    """Already resumed or cancelled."""


@_code("already_suspended", I, "state")
class AlreadySuspended(SuspensionError):
    """An open suspension exists."""


@_code("waitpoint_not_found", R, "contention")
class WaitpointNotFound(SuspensionError):
    """The waitpoint may not exist yet: retry with backoff."""


@_code("waitpoint_already_exists", I, "conflict")
class WaitpointAlreadyExists(SuspensionError):
    """A pending/active waitpoint with that id exists."""


@_code("waitpoint_not_pending", I, "state")
class WaitpointNotPending(SuspensionError):
    """Suspend on a pending waitpoint that is no longer ``pending``."""


@_code("waitpoint_not_open", I, "state")
class WaitpointNotOpen(SuspensionError):
    """Close of a waitpoint that is neither pending nor active."""


@_code("pending_waitpoint_expired", I, "state")
class PendingWaitpointExpired(SuspensionError):
    """Suspend on a pending waitpoint whose ``expires_at`` has passed."""


@_code("invalid_waitpoint_for_execution", T, "validation")
class InvalidWaitpointForExecution(SuspensionError):
    """The waitpoint belongs elsewhere."""


@_code("waitpoint_not_token_bound", T, "validation")
class WaitpointNotTokenBound(SuspensionError):
    """The pending waitpoint has no token."""


@_code("invalid_lease_for_suspend", T, "validation")
class InvalidLeaseForSuspend(SuspensionError):
    """Suspend's attempt index differs from ``current_attempt_index``."""


@_code("use_pending_with_extras_unsupported", T, "transport")
class UsePendingWithExtrasUnsupported(SuspensionError):
    """Suspend combined a pending primary waitpoint with extra bindings."""


@_code("additional_waitpoint_binding_malformed", T, "transport")
class AdditionalWaitpointBindingMalformed(SuspensionError):
    """An extra waitpoint binding has an empty id or key."""


@_code("invalid_waitpoint_key", T, "validation", lua=False)
class InvalidWaitpointKey(SuspensionError):
    """Reserved; never returned."""


@_code("resume_condition_not_met", T, "state", lua=False)
class ResumeConditionNotMet(SuspensionError):
    """Reserved; never returned."""
