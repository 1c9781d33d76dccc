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

from collections.abc import Callable
from typing import Literal, TypeVar

from ..errors import ContractError, ErrorClass, UnknownContractError

__all__ = [
    "CODE_CLASSES",
    "AdmissionError",
    "AlreadyMemberOfDifferentFlow",
    "BudgetError",
    "CapabilityMismatch",
    "ClaimError",
    "CodedContractError",
    "EngineKind",
    "ExecutionContractError",
    "ExecutionNotActive",
    "ExecutionNotFound",
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

EngineKind = Literal[
    "not_found", "validation", "contention", "conflict", "state", "bug", "transport"
]

T = ErrorClass.TERMINAL
R = ErrorClass.RETRYABLE
C = ErrorClass.COOPERATIVE
I = ErrorClass.INFORMATIONAL  # noqa: E741 - the catalogue's own letter
B = ErrorClass.BUG
E = ErrorClass.EXPECTED
S = ErrorClass.SOFT

_KIND_CLASS: dict[str, ErrorClass] = {
    "contention": R,
    "not_found": T,
    "validation": T,
    "conflict": T,
    "bug": B,
}

CODE_CLASSES: dict[str, type[ContractError]] = {}
"""code -> class. The prefix code ``already_member_of_different_flow:`` is
stored with its trailing colon."""

_C = TypeVar("_C", bound="CodedContractError")


class CodedContractError(ContractError):
    """Base of every catalogued contract error; ``code`` is fixed per class."""

    raw_class: ErrorClass = T
    engine_kind: EngineKind = "transport"
    lua: bool = True

    def __init__(
        self,
        code: str | None = None,
        details: tuple[str, ...] = (),
        *,
        function: str = "",
        execution_id: str | None = None,
    ) -> None:
        super().__init__(
            type(self).code if code is None else code,
            tuple(details),
            function=function,
            execution_id=execution_id,
        )

    def detail(self, i: int) -> str:
        """Detail slot ``i`` or "" when absent."""
        return self.details[i] if i < len(self.details) else ""


def _code(
    code: str, raw: ErrorClass, kind: EngineKind, *, lua: bool = True
) -> Callable[[type[_C]], type[_C]]:
    def register(cls: type[_C]) -> type[_C]:
        if code in CODE_CLASSES:
            raise RuntimeError(f"contract code {code!r} registered twice")
        cls.code = code
        cls.raw_class = raw
        cls.engine_kind = kind
        cls.lua = lua
        cls.error_class = _KIND_CLASS.get(kind, raw)
        CODE_CLASSES[code] = cls
        return cls

    return register


# --- groups ------------------------------------------------------------------


class LeaseError(CodedContractError):
    """Lease and ownership refusals: the caller's fence no longer holds."""


class ClaimError(CodedContractError):
    """Claiming and scheduling refusals."""


class SuspensionError(CodedContractError):
    """Suspension and waitpoint refusals."""


class SignalError(CodedContractError):
    """Signal delivery refusals."""


class TokenError(SignalError):
    """Waitpoint HMAC token and keystore refusals (spec 01 §8)."""


class StreamError(CodedContractError):
    """Stream, replay and attempt refusals."""


class FlowError(CodedContractError):
    """Flow and dependency refusals."""


class BudgetError(CodedContractError):
    """Budget and quota refusals (reserved / Rust-side codes)."""


class AdmissionError(BudgetError):
    """Quota admission refusals (reserved codes; 0.15 answers with statuses)."""


class ValidationContractError(CodedContractError):
    """The library refused malformed input."""


class ExecutionContractError(CodedContractError):
    """Generic execution-level refusals."""


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


# --- streams, replay, attempts ---------------------------------------------------


@_code("stream_closed", T, "state")
class StreamClosed(StreamError):
    """The attempt ended; no more frames."""


@_code("stale_owner_cannot_append", T, "state")
class StaleOwnerCannotAppend(StreamError):
    """Lease mismatch on append."""


@_code("retention_limit_exceeded", T, "validation")
class RetentionLimitExceeded(StreamError):
    """Frame over the size limit."""


@_code("corruption", T, "transport")
class Corruption(StreamError):
    """A stored summary is unreadable."""


@_code("execution_not_terminal", T, "state")
class ExecutionNotTerminal(StreamError):
    """Replay of a live execution."""


@_code("max_replays_exhausted", T, "state")
class MaxReplaysExhausted(StreamError):
    """The replay cap is reached."""


@_code("stream_not_found", E, "not_found", lua=False)
class StreamNotFound(StreamError):
    """Rust-side: no frames yet."""


@_code("stream_already_closed", I, "state", lua=False)
class StreamAlreadyClosed(StreamError):
    """Rust-side; the library answers ``stream_closed``."""


@_code("invalid_frame_type", S, "validation", lua=False)
class InvalidFrameType(StreamError):
    """Rust-side; frame types are free-form in the library."""


@_code("invalid_offset", R, "validation", lua=False)
class InvalidOffset(StreamError):
    """Rust-side: malformed stream id for a read."""


@_code("attempt_not_found", T, "not_found", lua=False)
class AttemptNotFound(StreamError):
    """Rust-side: no attempt with that index."""


@_code("attempt_not_in_created_state", B, "bug", lua=False)
class AttemptNotInCreatedState(StreamError):
    """Rust-side: attempt sequencing bug."""


@_code("attempt_not_started", T, "state", lua=False)
class AttemptNotStarted(StreamError):
    """Rust-side: the attempt is not running."""


@_code("attempt_already_terminal", I, "state", lua=False)
class AttemptAlreadyTerminal(StreamError):
    """Rust-side: the attempt already ended."""


# --- flows and dependencies --------------------------------------------------------


@_code("flow_not_found", T, "not_found")
class FlowNotFound(FlowError):
    """The flow record is missing."""


@_code("execution_not_in_flow", T, "state")
class ExecutionNotInFlow(FlowError):
    """Staging: the upstream or downstream is not a member of the flow."""


@_code("execution_already_in_flow", T, "conflict")
class ExecutionAlreadyInFlow(FlowError):
    """The execution belongs to another flow."""


@_code("already_member_of_different_flow:", T, "conflict")
class AlreadyMemberOfDifferentFlow(ExecutionAlreadyInFlow):
    """Add-member: the execution already belongs to ``flow_id`` (carried inside
    the code string after the colon)."""

    @property
    def flow_id(self) -> str:
        return self.code.split(":", 1)[1] if ":" in self.code else ""


@_code("flow_already_terminal", T, "state")
class FlowAlreadyTerminal(FlowError):
    """The flow is cancelled, completed or failed."""


@_code("stale_graph_revision", R, "contention")
class StaleGraphRevision(FlowError):
    """Re-read the graph revision and retry."""


@_code("dependency_already_exists", T, "conflict")
class DependencyAlreadyExists(FlowError):
    """Staging: an edge with this id exists already."""


@_code("self_referencing_edge", T, "conflict")
class SelfReferencingEdge(FlowError):
    """Staging: upstream equals downstream."""


@_code("cycle_detected", T, "conflict")
class CycleDetected(FlowError):
    """Staging: the edge would close a cycle."""


@_code("invalid_dependency", T, "validation")
class InvalidDependency(FlowError):
    """Resolving: the child holds no dependency record for that edge."""


@_code("deps_not_satisfied", I, "state")
class DepsNotSatisfied(FlowError):
    """Promote-blocked: dependencies still unresolved."""

    @property
    def unsatisfied(self) -> int:
        return int(self.detail(0) or 0)

    @property
    def unresolved(self) -> int:
        return int(self.detail(1) or 0)


@_code("not_blocked_by_deps", I, "state")
class NotBlockedByDeps(FlowError):
    """Promote-blocked: not in ``blocked_by_dependencies``."""


@_code("not_runnable", T, "state")
class NotRunnable(FlowError):
    """Promote-blocked: the phase is not ``runnable``."""


@_code("terminal", T, "state")
class Terminal(FlowError):
    """Promote-blocked: ``terminal_outcome`` is set."""


@_code("invariant_violation", T, "bug")
class InvariantViolation(FlowError):
    """Resolving: edge-group counters exceed the group size (a bug)."""


@_code("invalid_args", T, "validation")
class InvalidArgs(FlowError, ValidationContractError):
    """Sibling-cancel drain/reconcile got an empty flow or downstream id."""


# --- budgets, quotas, admission, generic -------------------------------------------


@_code("invalid_blocking_reason", T, "validation")
class InvalidBlockingReason(ValidationContractError):
    """Unknown admission-block reason."""


@_code("invalid_input", T, "validation")
class ContractInvalidInput(ValidationContractError):
    """A numeric ARGV was not a number, or a structural input error (detail:
    the library's message)."""


@_code("invalid_policy_json", T, "validation")
class InvalidPolicyJson(ValidationContractError):
    """Create: the policy is not JSON, or ``routing_requirements`` is not an object."""


@_code("invalid_tag_key", T, "validation")
class InvalidTagKey(ValidationContractError):
    """A tag key outside the ``<caller>.<field>`` namespace."""


@_code("execution_not_found", T, "not_found")
class ExecutionNotFound(ExecutionContractError):
    """The execution record is missing."""


@_code("budget_exceeded", C, "state", lua=False)
class BudgetExceeded(BudgetError):
    """Reserved (0.15 reports ``HARD_BREACH`` as a success status)."""


@_code("budget_soft_exceeded", I, "state", lua=False)
class BudgetSoftExceeded(BudgetError):
    """Reserved (``SOFT_BREACH``)."""


@_code("ok_already_applied", I, "state", lua=False)
class OkAlreadyApplied(BudgetError):
    """Reserved (``ALREADY_APPLIED``)."""


@_code("rate_limit_exceeded", R, "contention", lua=False)
class RateLimitExceeded(AdmissionError):
    """Reserved (admission replies ``RATE_EXCEEDED``)."""


@_code("concurrency_limit_exceeded", R, "contention", lua=False)
class ConcurrencyLimitExceeded(AdmissionError):
    """Reserved (admission replies ``CONCURRENCY_EXCEEDED``)."""


@_code("budget_not_found", T, "not_found", lua=False)
class BudgetNotFound(BudgetError):
    """Rust-side: budget definition missing."""


@_code("quota_policy_not_found", T, "not_found", lua=False)
class QuotaPolicyNotFound(BudgetError):
    """Rust-side: quota policy missing."""


@_code("invalid_budget_scope", T, "validation", lua=False)
class InvalidBudgetScope(BudgetError):
    """Rust-side: malformed budget scope."""


@_code("budget_override_not_allowed", T, "validation", lua=False)
class BudgetOverrideNotAllowed(BudgetError):
    """Rust-side: the caller may not override a budget."""


@_code("invalid_quota_spec", T, "validation", lua=False)
class InvalidQuotaSpec(BudgetError):
    """Rust-side: malformed quota definition."""


@_code("unauthorized", T, "validation", lua=False)
class Unauthorized(ValidationContractError):
    """Rust-side: authentication or authorisation failed."""


@_code("budget_attach_conflict", T, "conflict", lua=False)
class BudgetAttachConflict(BudgetError):
    """Rust-side: conflicting budget attachment."""


@_code("quota_attach_conflict", T, "conflict", lua=False)
class QuotaAttachConflict(BudgetError):
    """Rust-side: conflicting quota attachment."""


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
