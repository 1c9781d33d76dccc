"""Contract error codes (spec 01 §7.3) mapped to exception classes.

Every code of the catalogue (emitted by the 0.15 library or only known to the
Rust client) maps to exactly one subclass of
:class:`~flowfabric_worker.errors.ContractError`; unknown codes map to
:class:`~flowfabric_worker.errors.UnknownContractError`, which keeps the code and
details.

Each class carries ``code``, ``raw_class`` (the catalogue's Class column),
``engine_kind`` and ``error_class``: the engine-level class decided by the kind
(contention → retryable; not-found, validation, conflict → terminal; everything
else keeps the raw class), which is what callers act on (spec 05 §4.9).
"""

from __future__ import annotations

from ..errors import ContractError, UnknownContractError
from .error_base import (
    CODE_CLASSES,
    AdmissionError,
    B,
    BudgetError,
    ClaimError,
    CodedContractError,
    EngineKind,
    ExecutionContractError,
    FlowError,
    I,
    LeaseError,
    R,
    SignalError,
    StreamError,
    SuspensionError,
    T,
    TokenError,
    ValidationContractError,
    _code,
)
from .errors_streams_flows_budgets import *  # noqa: F403 - the rest of the catalogue

__all__ = [
    "CODE_CLASSES",
    "AdmissionError",
    "AlreadyMemberOfDifferentFlow",  # noqa: F405 - from the star import
    "BudgetError",
    "CapabilityMismatch",
    "ClaimError",
    "CodedContractError",
    "EngineKind",
    "ExecutionContractError",
    "ExecutionNotActive",
    "ExecutionNotFound",  # noqa: F405 - from the star import
    "FlowError",
    "LeaseError",
    "SignalError",
    "StreamError",
    "SuspensionError",
    "TokenError",
    "TokenMismatch",
    "ValidationContractError",
    "error_for",
]


# --- lease and ownership -------------------------------------------------------


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


# --- claiming and scheduling -------------------------------------------------


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


# --- suspension and waitpoints -----------------------------------------------


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


# --- step journal (our ffw library) -------------------------------------------


@_code("nondeterministic_step", T, "state")
class NondeterministicStep(CodedContractError):
    """``ffw_journal_append``: the step recorded at this index has another
    name or kind (details: index, recorded name, recorded kind) — the task
    code changed between runs or is not deterministic."""

    @property
    def index(self) -> int:
        return int(self.detail(0) or 0)

    @property
    def recorded_name(self) -> str:
        return self.detail(1)

    @property
    def recorded_kind(self) -> str:
        return self.detail(2)


# --- signals -------------------------------------------------------------------


@_code("waitpoint_closed", I, "state")
class WaitpointClosed(SignalError):
    """The signal came too late."""


@_code("waitpoint_pending_use_buffer_script", R, "contention")
class WaitpointPendingUseBufferScript(SignalError):
    """The waitpoint is still pending: use the buffer function."""


@_code("target_not_signalable", T, "state")
class TargetNotSignalable(SignalError):
    """The execution is terminal or the waitpoint not active."""


@_code("signal_limit_exceeded", T, "validation")
class SignalLimitExceeded(SignalError):
    """The per-execution signal cap is reached."""


@_code("duplicate_signal", I, "state", lua=False)
class DuplicateSignal(SignalError):
    """Reserved; 0.15 reports duplicates with the ``DUPLICATE`` status."""


@_code("payload_too_large", T, "validation", lua=False)
class PayloadTooLarge(SignalError):
    """Reserved; 0.15 has no payload size check."""


# --- waitpoint HMAC --------------------------------------------------------------


@_code("missing_token", T, "transport")
class MissingToken(TokenError):
    """No token was presented."""


@_code("invalid_token", T, "validation")
class InvalidToken(TokenError):
    """Malformed, unknown kid, wrong digest, or unknown waitpoint."""


class TokenMismatch(InvalidToken):
    """Client-side: the presented token is not the one stored on the waitpoint
    (compared in constant time before anything is delivered, spec 05 §4.7)."""


@_code("token_expired", T, "transport")
class TokenExpired(TokenError):
    """The kid is known but its grace has passed."""


@_code("hmac_secret_not_initialized", T, "transport")
class HmacSecretNotInitialized(TokenError):
    """The partition has no keystore / no current kid."""


@_code("invalid_secret", T, "transport")
class InvalidSecret(TokenError):
    """The stored secret is not even-length hex."""


@_code("invalid_keys_missing_hmac", T, "transport")
class InvalidKeysMissingHmac(TokenError):
    """The keystore key was not passed."""


@_code("invalid_kid", T, "validation")
class InvalidKid(TokenError):
    """Rotation: kid empty or contains ``:``."""


@_code("invalid_secret_hex", T, "validation")
class InvalidSecretHex(TokenError):
    """Rotation: secret empty, odd length or non-hex."""


@_code("invalid_grace_ms", T, "validation")
class InvalidGraceMs(TokenError):
    """Grace not an integer in [0, 2^53-1]."""


@_code("rotation_conflict", T, "conflict")
class RotationConflict(TokenError):
    """Rotation: the kid is already current with another secret (detail: kid)."""


def error_for(
    code: str,
    details: tuple[str, ...] = (),
    *,
    function: str = "",
    execution_id: str | None = None,
) -> ContractError:
    """The exception instance for a refusal ``[0, code, details...]``."""
    cls = CODE_CLASSES.get(code)
    if cls is None and ":" in code:
        cls = CODE_CLASSES.get(code.split(":", 1)[0] + ":")
    if cls is None:
        cls = UnknownContractError
    return cls(code, details, function=function, execution_id=execution_id)


def _export_all() -> None:
    for cls in CODE_CLASSES.values():
        if cls.__name__ not in __all__:
            __all__.append(cls.__name__)


_export_all()
