"""Contract error codes (spec 01 §7.3) of generic validation and lookup."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import (
    ExecutionContractError,
    T,
    ValidationContractError,
    _code,
)

__all__ = [
    "ContractInvalidInput",
    "ExecutionNotFound",
    "InvalidBlockingReason",
    "InvalidPolicyJson",
    "InvalidTagKey",
    "Unauthorized",
]


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


@_code("unauthorized", T, "validation", lua=False)
class Unauthorized(ValidationContractError):
    """Rust-side: authentication or authorisation failed."""
