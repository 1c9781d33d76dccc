"""Contract error codes (spec 01 §7.3) of budgets, quotas and admission."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import AdmissionError, BudgetError, C, I, R, T, _code

__all__ = [
    "BudgetAttachConflict",
    "BudgetExceeded",
    "BudgetNotFound",
    "BudgetOverrideNotAllowed",
    "BudgetSoftExceeded",
    "ConcurrencyLimitExceeded",
    "InvalidBudgetScope",
    "InvalidQuotaSpec",
    "OkAlreadyApplied",
    "QuotaAttachConflict",
    "QuotaPolicyNotFound",
    "RateLimitExceeded",
]


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


@_code("budget_attach_conflict", T, "conflict", lua=False)
class BudgetAttachConflict(BudgetError):
    """Rust-side: conflicting budget attachment."""


@_code("quota_attach_conflict", T, "conflict", lua=False)
class QuotaAttachConflict(BudgetError):
    """Rust-side: conflicting quota attachment."""
