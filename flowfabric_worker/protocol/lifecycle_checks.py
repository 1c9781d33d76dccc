"""Shared pieces of the lifecycle function structs: client-side input checks
(spec 02 §9: inputs the reference library crashes on never reach Redis) and
the decoded reply structs."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from ..errors import InvalidInput
from .ids import parse_execution_id

OPERATOR_OVERRIDE = "operator_override"
MAX_PRIORITY = 9000

_CANON_INT = re.compile(r"^(0|-?[1-9][0-9]*)$")


# ---------------------------------------------------------------- validation


def check_eid(eid: str) -> None:
    parse_execution_id(eid)


def check_int(value: int | None, what: str, *, minimum: int | None = None) -> None:
    """Integers only (bools are not integers on the wire)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidInput(f"{what} must be >= {minimum}, got {value}")


def check_json_object(text: str, what: str, *, allow_empty: bool = True) -> dict[str, Any]:
    """``text`` must be a JSON object (the library crashes on anything else)."""
    if text == "" and allow_empty:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def check_fence(lease_id: str, lease_epoch: str, attempt_id: str, source: str) -> None:
    """Partial triples are refused; an empty triple needs the operator override."""
    given = [v != "" for v in (lease_id, lease_epoch, attempt_id)]
    if any(given) and not all(given):
        raise InvalidInput("fence triple must be given whole (lease_id, lease_epoch, attempt_id)")
    if not any(given) and source != OPERATOR_OVERRIDE:
        raise InvalidInput("fence triple required unless source is operator_override")
    if lease_epoch and not _CANON_INT.match(lease_epoch):
        raise InvalidInput(f"lease_epoch must be canonical decimal, got {lease_epoch!r}")


def opt(value: int | None) -> str:
    return "" if value is None else str(value)


def epoch_text(value: int | str) -> str:
    text = str(value)
    if text and not _CANON_INT.match(text):
        raise InvalidInput(f"lease epoch must be canonical decimal, got {text!r}")
    return text


# ---------------------------------------------------------------- results


class OkResult(msgspec.Struct, frozen=True):
    """A bare ``[1, status, ...]`` with an optional tag field."""

    status: str
    tag: str = ""


class CreateResult(msgspec.Struct, frozen=True):
    execution_id: str
    duplicate: bool
    public_state: str  # "waiting" / "delayed"; empty on DUPLICATE


class GrantResult(msgspec.Struct, frozen=True):
    execution_id: str
    grant_expires_at: int | None = None  # only reclaim grants report it


class ClaimResult(msgspec.Struct, frozen=True):
    lease_id: str
    lease_epoch: int
    lease_expires_at: int
    attempt_id: str
    attempt_index: int
    attempt_type: str  # initial / retry / replay / reclaim / resumed


AttemptResult = ClaimResult


class GrantAndClaimResult(msgspec.Struct, frozen=True):
    lease_id: str
    lease_epoch: int
    attempt_index: int


class RenewLeaseResult(msgspec.Struct, frozen=True):
    lease_expires_at: int


class CompleteResult(msgspec.Struct, frozen=True):
    status: str  # "completed"


class FailResult(msgspec.Struct, frozen=True):
    outcome: str  # "retry_scheduled" / "terminal_failed"
    delay_until: float | None = None  # fractional with fractional backoff (spec 02 §4)


class CancelResult(msgspec.Struct, frozen=True):
    phase_before: str


class DelayResult(msgspec.Struct, frozen=True):
    delay_until: int


def _num(text: str) -> float:
    return float(text)

