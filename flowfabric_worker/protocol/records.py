"""Typed views of the stored records of spec 01 §4.

Every record has ``from_hash(mapping)`` taking a raw ``HGETALL`` reply (bytes or
str keys/values). Decoding is tolerant: missing fields take their default,
unknown fields are ignored, and the empty string stored for "not set" becomes
``None`` for optional numeric/timestamp fields. Integers are ms timestamps or
counters; state-vector fields are Literals of the spec 01 §5 values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar

import msgspec

from flowfabric_worker.protocol.tokens import Token

__all__ = [
    "Attempt",
    "AttemptState",
    "AttemptType",
    "BlockingReason",
    "ClaimGrant",
    "Condition",
    "EligibilityState",
    "ExecAttemptState",
    "ExecCore",
    "LeaseCurrent",
    "LifecyclePhase",
    "OwnershipState",
    "PublicState",
    "Record",
    "SignalRecord",
    "StreamMeta",
    "StreamSummary",
    "Suspension",
    "TerminalOutcome",
    "Waitpoint",
    "decode_hash",
]

LifecyclePhase = Literal["submitted", "runnable", "active", "suspended", "terminal"]
OwnershipState = Literal["unowned", "leased", "lease_expired_reclaimable", "lease_revoked"]
EligibilityState = Literal[
    "eligible_now",
    "not_eligible_until_time",
    "blocked_by_dependencies",
    "blocked_by_budget",
    "blocked_by_quota",
    "blocked_by_route",
    "blocked_by_lane_state",
    "blocked_by_operator",
    "not_applicable",
]
BlockingReason = Literal[
    "none",
    "waiting_for_worker",
    "waiting_for_retry_backoff",
    "waiting_for_resume_delay",
    "waiting_for_delay",
    "waiting_for_signal",
    "waiting_for_approval",
    "waiting_for_callback",
    "waiting_for_tool_result",
    "waiting_for_children",
    "waiting_for_budget",
    "waiting_for_quota",
    "waiting_for_capable_worker",
    "waiting_for_locality_match",
    "paused_by_operator",
    "paused_by_policy",
    "paused_by_flow_cancel",
]
TerminalOutcome = Literal["none", "success", "failed", "cancelled", "expired", "skipped"]
ExecAttemptState = Literal[
    "none",
    "pending_first_attempt",
    "running_attempt",
    "attempt_interrupted",
    "pending_retry_attempt",
    "pending_replay_attempt",
    "attempt_terminal",
]
PublicState = Literal[
    "waiting",
    "delayed",
    "rate_limited",
    "waiting_children",
    "active",
    "suspended",
    "resumable",
    "completed",
    "failed",
    "cancelled",
    "expired",
    "skipped",
]
AttemptState = Literal[
    "created",
    "started",
    "suspended",
    "ended_success",
    "ended_failure",
    "ended_cancelled",
    "interrupted_reclaimed",
]
AttemptType = Literal["initial", "retry", "replay", "reclaim", "fallback"]

R = TypeVar("R", bound="Record")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


def decode_hash(mapping: Mapping[Any, Any]) -> dict[str, str]:
    """A raw HGETALL reply as ``str -> str``."""
    return {_text(k): _text(v) for k, v in mapping.items()}


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the stored-record views."""

    @classmethod
    def from_hash(cls: type[R], mapping: Mapping[Any, Any]) -> R:
        """Decode a raw hash (bytes or str); tolerant of missing/extra fields."""
        data = decode_hash(mapping)
        optional = _optional_fields(cls)
        for name in optional:
            # "" is how the library stores "not set" for ms/int/uuid fields.
            if data.get(name) == "":
                del data[name]
        return msgspec.convert(data, cls, strict=False)


_OPTIONAL_CACHE: dict[type[Any], frozenset[str]] = {}


def _optional_fields(cls: type[Any]) -> frozenset[str]:
    cached = _OPTIONAL_CACHE.get(cls)
    if cached is None:
        cached = frozenset(
            f.encode_name for f in msgspec.structs.fields(cls) if f.default is None
        )
        _OPTIONAL_CACHE[cls] = cached
    return cached


class ExecCore(Record, frozen=True, kw_only=True):
    """``exec_core`` (spec 01 §4.1)."""

    execution_id: str = ""
    namespace: str = ""
    lane_id: str = ""
    execution_kind: str = ""
    partition_id: int = 0
    priority: int = 0
    creator_identity: str = ""
    lifecycle_phase: LifecyclePhase = "runnable"
    ownership_state: OwnershipState = "unowned"
    eligibility_state: EligibilityState = "eligible_now"
    blocking_reason: BlockingReason = "none"
    blocking_detail: str = ""
    terminal_outcome: TerminalOutcome = "none"
    attempt_state: ExecAttemptState = "none"
    public_state: PublicState = "waiting"
    total_attempt_count: int = 0
    current_attempt_index: int | None = None
    current_attempt_id: str | None = None
    current_lease_id: str | None = None
    current_lease_epoch: int = 0
    current_worker_id: str | None = None
    current_worker_instance_id: str | None = None
    current_lane: str = ""
    retry_count: int = 0
    replay_count: int = 0
    lease_reclaim_count: int = 0
    created_at: int = 0
    started_at: int | None = None
    completed_at: int | None = None
    last_transition_at: int = 0
    last_mutation_at: int = 0
    lease_acquired_at: int | None = None
    lease_expires_at: int | None = None
    lease_last_renewed_at: int | None = None
    lease_renewal_deadline: int | None = None
    lease_expired_at: int | None = None
    lease_revoked_at: int | None = None
    lease_revoke_reason: str = ""
    delay_until: int | None = None
    current_suspension_id: str | None = None
    current_waitpoint_id: str | None = None
    pending_retry_reason: str = ""
    pending_replay_reason: str = ""
    pending_replay_requested_by: str = ""
    pending_previous_attempt_index: int | None = None
    progress_pct: str = ""
    progress_message: str = ""
    progress_updated_at: int | None = None
    flow_id: str | None = None
    required_capabilities: str = ""
    failure_reason: str = ""
    cancellation_reason: str = ""
    cancelled_by: str = ""
    pending_replay_attempt: bool = False
    last_capability_mismatch_at: int | None = None
    last_hmac_validation_failed_at: int | None = None
    budget_ids: str = ""
    quota_policy_id: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.lifecycle_phase == "terminal"

    @property
    def capabilities(self) -> list[str]:
        """``required_capabilities`` as a list (sorted CSV in storage)."""
        return [c for c in self.required_capabilities.split(",") if c]

    @property
    def budgets(self) -> list[str]:
        return [b for b in self.budget_ids.split(",") if b]


class Attempt(Record, frozen=True, kw_only=True):
    """Attempt hash ``ff:attempt:<tag>:<eid>:<i>`` (spec 01 §4.2)."""

    attempt_id: str = ""
    execution_id: str = ""
    attempt_index: int = 0
    attempt_type: AttemptType = "initial"
    attempt_state: AttemptState = "started"
    created_at: int | None = None
    started_at: int | None = None
    lease_id: str | None = None
    lease_epoch: int | None = None
    worker_id: str | None = None
    worker_instance_id: str | None = None
    retry_reason: str = ""
    previous_attempt_index: int | None = None
    replay_reason: str = ""
    replay_requested_by: str = ""
    replayed_from_attempt_index: int | None = None
    reclaim_reason: str = ""
    suspended_at: int | None = None
    suspension_id: str | None = None
    resumed_at: int | None = None
    ended_at: int | None = None
    failure_reason: str = ""
    failure_category: str = ""


class LeaseCurrent(Record, frozen=True, kw_only=True):
    """``lease:current`` (spec 01 §4.4)."""

    lease_id: str = ""
    lease_epoch: int = 0
    execution_id: str = ""
    attempt_id: str = ""
    worker_id: str = ""
    worker_instance_id: str = ""
    acquired_at: int | None = None
    expires_at: int | None = None
    last_renewed_at: int | None = None
    renewal_deadline: int | None = None


class ClaimGrant(Record, frozen=True, kw_only=True):
    """``claim_grant`` (spec 01 §4.6)."""

    worker_id: str = ""
    worker_instance_id: str = ""
    lane_id: str = ""
    capability_hash: str = ""
    route_snapshot_json: str = ""
    admission_summary: str = ""
    created_at: int | None = None
    grant_expires_at: int | None = None


class Suspension(Record, frozen=True, kw_only=True):
    """``suspension:current`` (spec 01 §4.7). Open = ``suspension_id`` set and
    ``closed_at`` empty."""

    suspension_id: str | None = None
    execution_id: str = ""
    attempt_index: int | None = None
    waitpoint_id: str | None = None
    waitpoint_key: str = ""
    additional_waitpoints_json: str = "[]"
    reason_code: str = ""
    requested_by: str = ""
    created_at: int | None = None
    timeout_at: int | None = None
    timeout_behavior: str = ""
    resume_condition_json: str = ""
    resume_policy_json: str = ""
    continuation_metadata_pointer: str = ""
    buffered_signal_summary_json: str = ""
    last_signal_at: int | None = None
    satisfied_at: int | None = None
    closed_at: int | None = None
    close_reason: str = ""
    closer_signal_id: str | None = None
    all_satisfier_signals: str = ""

    @property
    def is_open(self) -> bool:
        return self.suspension_id is not None and self.closed_at is None


class Waitpoint(Record, frozen=True, kw_only=True):
    """Waitpoint hash ``ff:wp:<tag>:<waitpoint_id>`` (spec 01 §4.8)."""

    waitpoint_id: str = ""
    execution_id: str = ""
    attempt_index: int | None = None
    suspension_id: str | None = None
    waitpoint_key: str = ""
    waitpoint_token: str = ""
    state: Literal["pending", "active", "closed"] = "pending"
    created_at: int | None = None
    activated_at: int | None = None
    satisfied_at: int | None = None
    closed_at: int | None = None
    expires_at: int | None = None
    close_reason: str = ""
    signal_count: int = 0
    matched_signal_count: int = 0
    last_signal_at: int | None = None

    @property
    def token(self) -> Token:
        """The stored token as a :class:`Token` (redacted when printed)."""
        return Token(self.waitpoint_token)

    def _fields(self) -> Iterator[tuple[str, Any]]:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            # A bearer credential: only its kid may be shown (spec 01 §8.1).
            yield name, (Token(value) if name == "waitpoint_token" else value)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in self._fields())
        return f"Waitpoint({inner})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return list(self._fields())


class Condition(Record, frozen=True, kw_only=True):
    """Condition hash (spec 01 §4.9), scalar fields only; matcher fields are
    dynamic (``matcher:<i>:*``) — read them from the raw hash."""

    condition_type: str = ""
    match_mode: str = ""
    minimum_signal_count: int = 0
    total_matchers: int = 0
    satisfied_count: int = 0
    closed: bool = False
    updated_at: int | None = None
    closed_at: int | None = None
    closed_reason: str = ""
    composite: bool = False
    tree_json: str = ""


class StreamMeta(Record, frozen=True, kw_only=True):
    """Stream ``:meta`` (spec 01 §4.10)."""

    stream_id: str = ""
    execution_id: str = ""
    attempt_id: str = ""
    attempt_index: int | None = None
    created_at: int | None = None
    durability_mode: str = ""
    retention_maxlen: int | None = None
    frame_count: int = 0
    total_bytes: int = 0
    last_sequence: str = ""
    last_frame_at: int | None = None
    last_append_ts_ms: int | None = None
    has_durable_frame: bool = False
    ema_rate_hz: float | None = None
    maxlen_applied_last: int | None = None
    closed_at: int | None = None
    closed_reason: str = ""


class StreamSummary(Record, frozen=True, kw_only=True):
    """Attempt ``:summary`` (spec 01 §4.10)."""

    document: str = ""
    version: int = 0
    patch_kind: str = ""
    first_applied_ms: int | None = None
    last_updated_ms: int | None = None


class SignalRecord(Record, frozen=True, kw_only=True):
    """Signal hash ``ff:signal:<tag>:<signal_id>`` (spec 01 §4.11)."""

    signal_id: str = ""
    target_execution_id: str = ""
    target_waitpoint_id: str = ""
    target_scope: str = ""
    signal_name: str = ""
    signal_category: str = ""
    source_type: str = ""
    source_identity: str = ""
    correlation_id: str = ""
    idempotency_key: str = ""
    created_at: int | None = None
    accepted_at: int | None = None
    matched_waitpoint_id: str = ""
    payload_encoding: str = ""
    observed_effect: str = ""
