"""Function-call structs for execution creation, claiming, leases and the
terminal / self-parking operations (spec 02 §3.1–§3.12).

Scanner, operator and registry functions live in :mod:`.lifecycle_admin`.
Every struct validates client-side the inputs spec 02 §9 lists as crashing
or misbehaving in the reference library, so they never reach Redis.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import msgspec

from ..errors import InvalidInput
from .function import FCall
from .ids import ExecutionId, parse_execution_id
from .keys import ExecKeys

__all__ = [
    "AttemptResult",
    "CancelExecution",
    "CancelResult",
    "ClaimExecution",
    "ClaimResult",
    "CompleteExecution",
    "CompleteResult",
    "CreateExecution",
    "CreateResult",
    "DelayExecution",
    "DelayResult",
    "FailExecution",
    "FailResult",
    "GrantAndClaimResult",
    "GrantResult",
    "IssueClaimGrant",
    "IssueGrantAndClaim",
    "MoveToWaitingChildren",
    "OkResult",
    "RenewLease",
    "RenewLeaseResult",
    "UpdateProgress",
]

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


# ---------------------------------------------------------------- create


class CreateExecution(FCall[CreateResult], frozen=True, kw_only=True):
    """``ff_create_execution`` (spec 02 §3.1).

    ``delay_until`` must be decided by the caller against its clock: the
    struct files the execution in the delayed key only when it is given
    (send ``None`` unless it is comfortably in the future, §3.1).
    """

    NAME: ClassVar[str] = "ff_create_execution"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    namespace: str = ""
    lane_id: str
    execution_kind: str = ""
    priority: int = 0
    creator_identity: str = ""
    policy_json: str = "{}"
    input_payload: bytes | str = b""
    delay_until: int | None = None
    idempotency_key: str = ""
    dedup_ttl_ms: int | None = None
    tags_json: str = ""
    execution_deadline_at: int | None = None
    partition_id: int | None = None

    def __post_init__(self) -> None:
        check_eid(self.eid)
        if not self.lane_id:
            raise InvalidInput("lane_id is required")
        check_int(self.priority, "priority")
        check_int(self.delay_until, "delay_until", minimum=0)
        check_int(self.dedup_ttl_ms, "dedup_ttl_ms")
        check_int(self.execution_deadline_at, "execution_deadline_at", minimum=0)
        check_int(self.partition_id, "partition_id", minimum=0)
        if self.policy_json:
            policy = check_json_object(self.policy_json, "policy_json")
            if "routing_requirements" in policy:
                rr = policy["routing_requirements"]
                if not isinstance(rr, dict):
                    raise InvalidInput("policy routing_requirements must be an object")
                if "required_capabilities" in rr and not isinstance(
                    rr["required_capabilities"], list
                ):
                    raise InvalidInput("required_capabilities must be an array")
        if self.tags_json:
            tags = check_json_object(self.tags_json, "tags_json")
            for k, v in tags.items():
                if isinstance(v, dict | list) or v is None:
                    raise InvalidInput(f"tag {k!r} must have a scalar value")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        queue = (
            k.lane_delayed(self.lane_id)
            if self.delay_until is not None
            else k.lane_eligible(self.lane_id)
        )
        idem = (
            k.idempotency(self.namespace, self.idempotency_key) if self.idempotency_key else k.noop
        )
        return [
            k.core, k.payload, k.policy, k.tags, queue, idem,
            k.execution_deadline, k.all_executions,
        ]  # fmt: skip

    def argv(self) -> list[str | bytes]:
        ttl = self.dedup_ttl_ms
        if self.idempotency_key and ttl is None:
            ttl = 86_400_000
        return [
            self.eid, self.namespace, self.lane_id, self.execution_kind,
            str(self.priority), self.creator_identity, self.policy_json,
            self.input_payload, opt(self.delay_until), opt(ttl), self.tags_json,
            opt(self.execution_deadline_at), opt(self.partition_id),
        ]  # fmt: skip

    def decode(self, reply: Any) -> CreateResult:
        env = self.envelope(reply)
        if env.status == "DUPLICATE":
            return CreateResult(execution_id=env.field(0), duplicate=True, public_state="")
        return CreateResult(execution_id=env.field(0), duplicate=False, public_state=env.field(1))


# ---------------------------------------------------------------- grants and claims


class IssueClaimGrant(FCall[GrantResult], frozen=True, kw_only=True):
    """``ff_issue_claim_grant`` (spec 02 §3.2)."""

    NAME: ClassVar[str] = "ff_issue_claim_grant"
    eid: ExecutionId
    lane_id: str
    worker_id: str
    worker_instance_id: str = ""
    capability_hash: str = ""
    grant_ttl_ms: int = 5000
    route_snapshot_json: str = ""
    admission_summary: str = ""
    worker_capabilities_csv: str = ""

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.grant_ttl_ms, "grant_ttl_ms", minimum=1)
        if not self.worker_id:
            raise InvalidInput("worker_id is required")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.claim_grant, k.lane_eligible(self.lane_id)]

    def argv(self) -> list[str]:
        return [
            self.eid, self.worker_id, self.worker_instance_id, self.lane_id,
            self.capability_hash, str(self.grant_ttl_ms), self.route_snapshot_json,
            self.admission_summary, self.worker_capabilities_csv,
        ]  # fmt: skip

    def decode(self, reply: Any) -> GrantResult:
        env = self.envelope(reply)
        return GrantResult(execution_id=env.field(0))


def _claim_result(fields: tuple[str, ...]) -> ClaimResult:
    return ClaimResult(
        lease_id=fields[0],
        lease_epoch=int(fields[1]),
        lease_expires_at=int(fields[2]),
        attempt_id=fields[3],
        attempt_index=int(fields[4]),
        attempt_type=fields[5],
    )


class ClaimExecution(FCall[ClaimResult], frozen=True, kw_only=True):
    """``ff_claim_execution`` (spec 02 §3.3): new attempt under a new lease.

    ``attempt_index`` is the ``total_attempt_count`` read beforehand; it only
    names placeholder keys.
    """

    NAME: ClassVar[str] = "ff_claim_execution"
    eid: ExecutionId
    lane_id: str
    worker_id: str
    worker_instance_id: str
    lease_id: str
    attempt_id: str
    lease_ttl_ms: int
    renew_before_ms: int | None = None
    attempt_index: int = 0
    capability_snapshot_hash: str = ""
    attempt_policy_json: str = "{}"
    attempt_timeout_ms: int | None = None
    execution_deadline_at: int | None = None

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.lease_ttl_ms, "lease_ttl_ms", minimum=1)
        check_int(self.renew_before_ms, "renew_before_ms", minimum=0)
        check_int(self.attempt_index, "attempt_index", minimum=0)
        check_int(self.attempt_timeout_ms, "attempt_timeout_ms", minimum=0)
        check_int(self.execution_deadline_at, "execution_deadline_at", minimum=0)
        if not self.lease_id or not self.attempt_id or not self.worker_id:
            raise InvalidInput("lease_id, attempt_id and worker_id are required")
        check_json_object(self.attempt_policy_json, "attempt_policy_json", allow_empty=True)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i = self.attempt_index
        return [
            k.core, k.claim_grant, k.lane_eligible(self.lane_id), k.lease_expiry,
            k.worker_leases(self.worker_instance_id), k.attempt(i), k.attempt_usage(i),
            k.attempt_policy(i), k.attempts, k.lease_current, k.lease_history,
            k.lane_active(self.lane_id), k.attempt_timeout, k.execution_deadline,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        renew = self.renew_before_ms
        if renew is None:
            renew = self.lease_ttl_ms * 2 // 3
        return [
            self.eid, self.worker_id, self.worker_instance_id, self.lane_id,
            self.capability_snapshot_hash, self.lease_id, str(self.lease_ttl_ms),
            str(renew), self.attempt_id, self.attempt_policy_json,
            opt(self.attempt_timeout_ms), opt(self.execution_deadline_at),
        ]  # fmt: skip

    def decode(self, reply: Any) -> ClaimResult:
        return _claim_result(self.envelope(reply).fields)


class IssueGrantAndClaim(FCall[GrantAndClaimResult], frozen=True, kw_only=True):
    """``ff_issue_grant_and_claim`` (spec 02 §3.5), the operator path."""

    NAME: ClassVar[str] = "ff_issue_grant_and_claim"
    eid: ExecutionId
    lane_id: str
    lease_id: str
    attempt_id: str
    lease_ttl_ms: int
    worker_id: str = "operator"
    worker_instance_id: str = "operator"
    capability_snapshot_hash: str = ""
    attempt_policy_json: str = "{}"
    attempt_timeout_ms: int | None = None
    execution_deadline_at: int | None = None

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.lease_ttl_ms, "lease_ttl_ms", minimum=1)
        check_int(self.attempt_timeout_ms, "attempt_timeout_ms", minimum=0)
        check_int(self.execution_deadline_at, "execution_deadline_at", minimum=0)
        if not self.lease_id or not self.attempt_id or not self.worker_id:
            raise InvalidInput("lease_id, attempt_id and worker_id are required")
        check_json_object(self.attempt_policy_json, "attempt_policy_json", allow_empty=True)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [
            k.core, k.claim_grant, k.lane_eligible(self.lane_id), k.lease_expiry,
            k.worker_leases(self.worker_instance_id), k.attempts, k.lease_current,
            k.lease_history, k.lane_active(self.lane_id), k.attempt_timeout,
            k.execution_deadline,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [
            self.eid, self.worker_id, self.worker_instance_id, self.lane_id,
            self.capability_snapshot_hash, self.lease_id, str(self.lease_ttl_ms),
            self.attempt_id, self.attempt_policy_json, opt(self.attempt_timeout_ms),
            opt(self.execution_deadline_at),
        ]  # fmt: skip

    def decode(self, reply: Any) -> GrantAndClaimResult:
        env = self.envelope(reply)
        return GrantAndClaimResult(
            lease_id=env.field(0), lease_epoch=int(env.field(1)), attempt_index=int(env.field(2))
        )


# ---------------------------------------------------------------- lease upkeep


class RenewLease(FCall[RenewLeaseResult], frozen=True, kw_only=True):
    """``ff_renew_lease`` (spec 02 §3.6)."""

    NAME: ClassVar[str] = "ff_renew_lease"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    attempt_index: int
    attempt_id: str
    lease_id: str
    lease_epoch: int
    lease_ttl_ms: int
    lease_history_grace_ms: int = 5000

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.attempt_index, "attempt_index", minimum=0)
        check_int(self.lease_epoch, "lease_epoch", minimum=0)
        check_int(self.lease_ttl_ms, "lease_ttl_ms", minimum=1)
        check_int(self.lease_history_grace_ms, "lease_history_grace_ms", minimum=0)
        if not self.attempt_id or not self.lease_id:
            raise InvalidInput("renew needs the whole fence triple")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.lease_current, k.lease_history, k.lease_expiry]

    def argv(self) -> list[str]:
        return [
            self.eid, str(self.attempt_index), self.attempt_id, self.lease_id,
            str(self.lease_epoch), str(self.lease_ttl_ms), str(self.lease_history_grace_ms),
        ]  # fmt: skip

    def decode(self, reply: Any) -> RenewLeaseResult:
        return RenewLeaseResult(lease_expires_at=int(self.envelope(reply).field(0)))


class UpdateProgress(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_update_progress`` (spec 02 §3.7); empty pct/message keep the stored value."""

    NAME: ClassVar[str] = "ff_update_progress"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lease_id: str
    lease_epoch: int
    progress_pct: str = ""
    progress_message: str = ""

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.lease_epoch, "lease_epoch", minimum=0)

    def keys(self) -> list[str]:
        return [ExecKeys(self.eid).core]

    def argv(self) -> list[str]:
        return [
            self.eid, self.lease_id, str(self.lease_epoch), self.progress_pct,
            self.progress_message,
        ]  # fmt: skip

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))


# ---------------------------------------------------------------- terminal and parking


class _Fenced(msgspec.Struct, frozen=True, kw_only=True):
    """Shared fields of the fully fenced calls (spec 02 §0.7).

    ``attempt_index``, ``lane_id`` and ``worker_instance_id`` name the keys
    used as given (the current attempt, the lane sets, the owner's lease set).
    """

    eid: ExecutionId
    lane_id: str
    attempt_index: int
    worker_instance_id: str
    lease_id: str = ""
    lease_epoch: int | None = None
    attempt_id: str = ""
    source: str = ""

    def _check(self) -> None:
        check_eid(self.eid)
        check_int(self.attempt_index, "attempt_index", minimum=0)
        check_int(self.lease_epoch, "lease_epoch", minimum=0)
        check_fence(self.lease_id, opt(self.lease_epoch), self.attempt_id, self.source)

    def _fence(self) -> list[str]:
        return [self.eid, self.lease_id, opt(self.lease_epoch), self.attempt_id]


class CompleteExecution(_Fenced, FCall[CompleteResult], frozen=True, kw_only=True):
    """``ff_complete_execution`` (spec 02 §3.8)."""

    NAME: ClassVar[str] = "ff_complete_execution"
    result_payload: bytes | str = b""

    def __post_init__(self) -> None:
        self._check()

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i, lane = self.attempt_index, self.lane_id
        return [
            k.core, k.attempt(i), k.lease_expiry, k.worker_leases(self.worker_instance_id),
            k.lane_terminal(lane), k.lease_current, k.lease_history, k.lane_active(lane),
            k.stream_meta(i), k.result, k.attempt_timeout, k.execution_deadline,
        ]  # fmt: skip

    def argv(self) -> list[str | bytes]:
        return [*self._fence(), self.result_payload, self.source]

    def decode(self, reply: Any) -> CompleteResult:
        return CompleteResult(status=self.envelope(reply).field(0))


class FailExecution(_Fenced, FCall[FailResult], frozen=True, kw_only=True):
    """``ff_fail_execution`` (spec 02 §3.9); ``retry_policy_json`` empty = never retry."""

    NAME: ClassVar[str] = "ff_fail_execution"
    failure_reason: str = ""
    failure_category: str = ""
    retry_policy_json: str = ""

    def __post_init__(self) -> None:
        self._check()
        if self.retry_policy_json:
            policy = check_json_object(self.retry_policy_json, "retry_policy_json")
            mr = policy.get("max_retries", 0)
            if isinstance(mr, bool) or not isinstance(mr, int | float):
                raise InvalidInput("retry_policy_json max_retries must be a number")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i, lane = self.attempt_index, self.lane_id
        return [
            k.core, k.attempt(i), k.lease_expiry, k.worker_leases(self.worker_instance_id),
            k.lane_terminal(lane), k.lane_delayed(lane), k.lease_current, k.lease_history,
            k.lane_active(lane), k.stream_meta(i), k.attempt_timeout, k.execution_deadline,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [
            *self._fence(), self.failure_reason, self.failure_category,
            self.retry_policy_json, self.source,
        ]  # fmt: skip

    def decode(self, reply: Any) -> FailResult:
        env = self.envelope(reply)
        outcome = env.field(0)
        if outcome == "retry_scheduled":
            return FailResult(outcome=outcome, delay_until=_num(env.field(1)))
        return FailResult(outcome=outcome)


class CancelExecution(FCall[CancelResult], frozen=True, kw_only=True):
    """``ff_cancel_execution`` (spec 02 §3.10).

    ``attempt_index``, ``worker_instance_id`` and ``waitpoint_id`` are the
    pre-read ``current_*`` values (placeholders are fine when absent).
    """

    NAME: ClassVar[str] = "ff_cancel_execution"
    eid: ExecutionId
    lane_id: str
    reason: str = ""
    source: str = ""
    lease_id: str = ""
    lease_epoch: int | None = None
    attempt_index: int = 0
    worker_instance_id: str = ""
    waitpoint_id: str = "00000000-0000-4000-8000-000000000000"

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.lease_epoch, "lease_epoch", minimum=0)
        check_int(self.attempt_index, "attempt_index", minimum=0)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i, lane = self.attempt_index, self.lane_id
        return [
            k.core, k.attempt(i), k.stream_meta(i), k.lease_current, k.lease_history,
            k.lease_expiry, k.worker_leases(self.worker_instance_id), k.suspension_current,
            k.waitpoint(self.waitpoint_id), k.waitpoint_condition(self.waitpoint_id),
            k.suspension_timeout, k.lane_terminal(lane), k.attempt_timeout,
            k.execution_deadline, k.lane_eligible(lane), k.lane_delayed(lane),
            k.lane_blocked(lane, "dependencies"), k.lane_blocked(lane, "budget"),
            k.lane_blocked(lane, "quota"), k.lane_blocked(lane, "route"),
            k.lane_blocked(lane, "operator"),
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [self.eid, self.reason, self.source, self.lease_id, opt(self.lease_epoch)]

    def decode(self, reply: Any) -> CancelResult:
        env = self.envelope(reply)
        return CancelResult(phase_before=env.field(1))


class DelayExecution(_Fenced, FCall[DelayResult], frozen=True, kw_only=True):
    """``ff_delay_execution`` (spec 02 §3.11)."""

    NAME: ClassVar[str] = "ff_delay_execution"
    delay_until: int = 0

    def __post_init__(self) -> None:
        self._check()
        check_int(self.delay_until, "delay_until", minimum=0)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        lane = self.lane_id
        return [
            k.core, k.attempt(self.attempt_index), k.lease_current, k.lease_history,
            k.lease_expiry, k.worker_leases(self.worker_instance_id), k.lane_active(lane),
            k.lane_delayed(lane), k.attempt_timeout,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [*self._fence(), str(self.delay_until), self.source]

    def decode(self, reply: Any) -> DelayResult:
        return DelayResult(delay_until=int(_num(self.envelope(reply).field(0))))


class MoveToWaitingChildren(_Fenced, FCall[OkResult], frozen=True, kw_only=True):
    """``ff_move_to_waiting_children`` (spec 02 §3.12)."""

    NAME: ClassVar[str] = "ff_move_to_waiting_children"

    def __post_init__(self) -> None:
        self._check()

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        lane = self.lane_id
        return [
            k.core, k.attempt(self.attempt_index), k.lease_current, k.lease_history,
            k.lease_expiry, k.worker_leases(self.worker_instance_id), k.lane_active(lane),
            k.lane_blocked(lane, "dependencies"), k.attempt_timeout,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [*self._fence(), self.source]

    def decode(self, reply: Any) -> OkResult:
        return OkResult(status=self.envelope(reply).status)
