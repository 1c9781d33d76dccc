"""Contract error codes of streams, replay and attempts, flows and
dependencies, budgets, quotas, admission and generic validation (spec 01
§7.3). Re-exported by :mod:`.errors`."""

from __future__ import annotations

from .error_base import (
    AdmissionError,
    B,
    BudgetError,
    C,
    E,
    ExecutionContractError,
    FlowError,
    I,
    R,
    S,
    StreamError,
    T,
    ValidationContractError,
    _code,
)

__all__ = [
    "AlreadyMemberOfDifferentFlow",
    "AttemptAlreadyTerminal",
    "AttemptNotFound",
    "AttemptNotInCreatedState",
    "AttemptNotStarted",
    "BudgetAttachConflict",
    "BudgetExceeded",
    "BudgetNotFound",
    "BudgetOverrideNotAllowed",
    "BudgetSoftExceeded",
    "ConcurrencyLimitExceeded",
    "ContractInvalidInput",
    "Corruption",
    "CycleDetected",
    "DependencyAlreadyExists",
    "DepsNotSatisfied",
    "ExecutionAlreadyInFlow",
    "ExecutionNotFound",
    "ExecutionNotInFlow",
    "ExecutionNotTerminal",
    "FlowAlreadyTerminal",
    "FlowNotFound",
    "InvalidArgs",
    "InvalidBlockingReason",
    "InvalidBudgetScope",
    "InvalidDependency",
    "InvalidFrameType",
    "InvalidOffset",
    "InvalidPolicyJson",
    "InvalidQuotaSpec",
    "InvalidTagKey",
    "InvariantViolation",
    "MaxReplaysExhausted",
    "NotBlockedByDeps",
    "NotRunnable",
    "OkAlreadyApplied",
    "QuotaAttachConflict",
    "QuotaPolicyNotFound",
    "RateLimitExceeded",
    "RetentionLimitExceeded",
    "SelfReferencingEdge",
    "StaleGraphRevision",
    "StaleOwnerCannotAppend",
    "StreamAlreadyClosed",
    "StreamClosed",
    "StreamNotFound",
    "Terminal",
    "Unauthorized",
]


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
