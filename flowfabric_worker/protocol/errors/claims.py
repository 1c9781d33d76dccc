"""Contract error codes (spec 01 §7.3) of claiming and scheduling."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import ClaimError, I, R, T, _code

__all__ = [
    "CapabilityMismatch",
    "ClaimGrantExpired",
    "ExecutionNotEligible",
    "ExecutionNotEligibleForAttempt",
    "ExecutionNotInEligibleSet",
    "ExecutionNotLeaseable",
    "ExecutionNotReclaimable",
    "GrantAlreadyExists",
    "InvalidCapabilities",
    "InvalidClaimGrant",
    "LeaseConflict",
    "MaxRetriesExhausted",
    "NoEligibleExecution",
    "NotAResumedExecution",
    "ReplayNotAllowed",
    "UseClaimResumedExecution",
]


@_code("use_claim_resumed_execution", R, "contention")
class UseClaimResumedExecution(ClaimError):
    """Re-dispatch to the resume-claim."""


@_code("not_a_resumed_execution", R, "contention")
class NotAResumedExecution(ClaimError):
    """Re-dispatch to the normal claim."""


@_code("execution_not_leaseable", R, "contention")
class ExecutionNotLeaseable(ClaimError):
    """The state changed since the grant: get a new grant."""


@_code("lease_conflict", R, "contention")
class LeaseConflict(ClaimError):
    """Someone else owns the execution: pick another one."""


@_code("invalid_claim_grant", R, "contention")
class InvalidClaimGrant(ClaimError):
    """Grant missing or for another worker: get a new grant."""


@_code("claim_grant_expired", R, "contention")
class ClaimGrantExpired(ClaimError):
    """The grant TTL passed: get a new grant."""


@_code("no_eligible_execution", R, "contention", lua=False)
class NoEligibleExecution(ClaimError):
    """Nothing to claim (Rust-side)."""


@_code("execution_not_eligible", I, "contention")
class ExecutionNotEligible(ClaimError):
    """Not claimable / not in the expected state: skip."""


@_code("execution_not_in_eligible_set", I, "contention")
class ExecutionNotInEligibleSet(ClaimError):
    """Another scheduler took it: skip."""


@_code("grant_already_exists", I, "state")
class GrantAlreadyExists(ClaimError):
    """A grant is outstanding: skip."""


@_code("execution_not_reclaimable", I, "contention")
class ExecutionNotReclaimable(ClaimError):
    """Already reclaimed, not expired/revoked, or terminal: skip."""


@_code("capability_mismatch", R, "validation")
class CapabilityMismatch(ClaimError):
    """The worker lacks capability tokens (``missing``: sorted list)."""

    @property
    def missing(self) -> list[str]:
        return [c for c in self.detail(0).split(",") if c]


@_code("invalid_capabilities", T, "validation")
class InvalidCapabilities(ClaimError):
    """Malformed / oversized capability list (detail ``<side>:<reason>``)."""


@_code("max_retries_exhausted", T, "state")
class MaxRetriesExhausted(ClaimError):
    """Reclaim cap reached; the execution was already made terminal ``failed``."""


@_code("execution_not_eligible_for_attempt", T, "state", lua=False)
class ExecutionNotEligibleForAttempt(ClaimError):
    """Rust-side: wrong state for a new attempt."""


@_code("replay_not_allowed", T, "state", lua=False)
class ReplayNotAllowed(ClaimError):
    """Rust-side: replay refused."""
