"""Decoded replies of the execution lifecycle calls (spec 02 §3)."""

from __future__ import annotations

import msgspec


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
