"""Contract error codes (spec 01 §7.3) of lease ownership and fencing."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import B, I, LeaseError, T, _code

__all__ = [
    "ActiveAttemptExists",
    "ExecutionNotActive",
    "FenceRequired",
    "LeaseExpired",
    "LeaseRevoked",
    "NoActiveLease",
    "PartialFenceTriple",
    "StaleLease",
]


@_code("stale_lease", T, "state")
class StaleLease(LeaseError):
    """The fence does not match the current lease: stop work, do not retry."""


@_code("lease_expired", T, "state")
class LeaseExpired(LeaseError):
    """The lease TTL passed: stop."""


@_code("lease_revoked", T, "state")
class LeaseRevoked(LeaseError):
    """An operator revoked the lease: stop."""


@_code("execution_not_active", T, "contention")
class ExecutionNotActive(LeaseError):
    """The execution is not ``active``. Details let a caller recognise its own
    earlier terminal call (replay reconciliation, spec 05 §4.4)."""

    @property
    def terminal_outcome(self) -> str:
        return self.detail(0)

    @property
    def lease_epoch(self) -> int | None:
        text = self.detail(1)
        return int(text) if text.isdigit() else None

    @property
    def lifecycle_phase(self) -> str:
        return self.detail(2)

    @property
    def attempt_id(self) -> str:
        return self.detail(3)


@_code("no_active_lease", I, "contention")
class NoActiveLease(LeaseError):
    """Nothing to revoke / no lease to bind a waitpoint to."""


@_code("fence_required", T, "transport")
class FenceRequired(LeaseError):
    """An unfenced call is not allowed."""


@_code("partial_fence_triple", T, "transport")
class PartialFenceTriple(LeaseError):
    """Some but not all fence fields were given."""


@_code("active_attempt_exists", B, "conflict")
class ActiveAttemptExists(LeaseError):
    """Invariant breach on claim: an attempt is already running."""
