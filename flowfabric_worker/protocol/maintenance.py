"""Function-call structs the scanners and the claim path use to keep
executions moving: promotion, lease expiry, reclaim, expiry, admission
blocks (spec 02 §3.13–§3.25)."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.checks import check_eid, check_int, opt
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import GrantCall, _claim_result
from flowfabric_worker.protocol.lifecycle_results import ClaimResult, OkResult

__all__ = [
    "BLOCK_TARGETS",
    "BlockExecutionForAdmission",
    "ExpireExecution",
    "ExpireResult",
    "IssueReclaimGrant",
    "MarkLeaseExpiredIfDue",
    "PromoteDelayed",
    "ReclaimExecution",
    "UnblockExecution",
]


BLOCK_TARGETS = {
    "waiting_for_budget": "budget",
    "waiting_for_quota": "quota",
    "waiting_for_capable_worker": "route",
    "paused_by_operator": "operator",
    "paused_by_policy": "operator",
}


class ExpireResult(msgspec.Struct, frozen=True):
    tag: str  # expired / not_found_cleaned / already_terminal
    phase_before: str = ""


class PromoteDelayed(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_promote_delayed`` (spec 02 §3.13); tag says what happened."""

    NAME: ClassVar[str] = "ff_promote_delayed"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lane_id: str
    now_ms: int

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.now_ms, "now_ms", minimum=0)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.lane_delayed(self.lane_id), k.lane_eligible(self.lane_id)]

    def argv(self) -> list[str]:
        return [self.eid, str(self.now_ms)]

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))


class MarkLeaseExpiredIfDue(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_mark_lease_expired_if_due`` (spec 02 §3.14)."""

    NAME: ClassVar[str] = "ff_mark_lease_expired_if_due"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId

    def __post_init__(self) -> None:
        check_eid(self.eid)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.lease_current, k.lease_expiry, k.lease_history]

    def argv(self) -> list[str]:
        return [self.eid]

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))


class IssueReclaimGrant(GrantCall, frozen=True, kw_only=True):
    """``ff_issue_reclaim_grant`` (spec 02 §3.16)."""

    NAME: ClassVar[str] = "ff_issue_reclaim_grant"

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.claim_grant, k.lease_expiry]


class ReclaimExecution(FCall[ClaimResult], frozen=True, kw_only=True):
    """``ff_reclaim_execution`` (spec 02 §3.17).

    ``old_attempt_index`` is the pre-read ``current_attempt_index``;
    ``new_attempt_index`` (``total_attempt_count``) only names placeholders.
    """

    NAME: ClassVar[str] = "ff_reclaim_execution"
    eid: ExecutionId
    lane_id: str
    worker_id: str
    worker_instance_id: str
    lease_id: str
    attempt_id: str
    lease_ttl_ms: int
    old_attempt_index: int
    new_attempt_index: int | None = None
    attempt_policy_json: str = "{}"
    default_max_reclaim_count: int | None = 1000

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.lease_ttl_ms, "lease_ttl_ms", minimum=1)
        check_int(self.old_attempt_index, "old_attempt_index", minimum=0)
        check_int(self.new_attempt_index, "new_attempt_index", minimum=0)
        check_int(self.default_max_reclaim_count, "default_max_reclaim_count", minimum=0)
        if not self.lease_id or not self.attempt_id or not self.worker_id:
            raise InvalidInput("lease_id, attempt_id and worker_id are required")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i = self.old_attempt_index
        j = self.new_attempt_index if self.new_attempt_index is not None else i + 1
        return [
            k.core, k.claim_grant, k.attempt(i), k.stream_meta(i), k.attempt(j),
            k.attempt_usage(j), k.attempts, k.lease_current, k.lease_history,
            k.lease_expiry, k.worker_leases(self.worker_instance_id),
            k.lane_active(self.lane_id), k.attempt_timeout, k.execution_deadline,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [
            self.eid, self.worker_id, self.worker_instance_id, self.lane_id, self.lease_id,
            str(self.lease_ttl_ms), self.attempt_id, self.attempt_policy_json,
            opt(self.default_max_reclaim_count),
        ]  # fmt: skip

    def decode(self, reply: Any) -> ClaimResult:
        return _claim_result(self.envelope(reply).fields)


class ExpireExecution(FCall[ExpireResult], frozen=True, kw_only=True):
    """``ff_expire_execution`` (spec 02 §3.18); indexes are pre-read values."""

    NAME: ClassVar[str] = "ff_expire_execution"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lane_id: str
    attempt_index: int = 0
    worker_instance_id: str = ""
    expire_reason: str = "attempt_timeout"

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.attempt_index, "attempt_index", minimum=0)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i, lane = self.attempt_index, self.lane_id
        return [
            k.core, k.attempt(i), k.stream_meta(i), k.lease_current, k.lease_history,
            k.lease_expiry, k.worker_leases(self.worker_instance_id), k.lane_active(lane),
            k.lane_terminal(lane), k.attempt_timeout, k.execution_deadline,
            k.lane_suspended(lane), k.suspension_timeout, k.suspension_current,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [self.eid, self.expire_reason]

    def decode(self, reply: Any) -> ExpireResult:
        env = self.envelope(reply)
        return ExpireResult(tag=env.field(0), phase_before=env.field(1))


class BlockExecutionForAdmission(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_block_execution_for_admission`` (spec 02 §3.22)."""

    NAME: ClassVar[str] = "ff_block_execution_for_admission"
    eid: ExecutionId
    lane_id: str
    blocking_reason: str
    blocking_detail: str = ""
    now_ms: int

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.now_ms, "now_ms", minimum=0)
        if self.blocking_reason not in BLOCK_TARGETS:
            raise InvalidInput(f"unknown blocking reason {self.blocking_reason!r}")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        target = BLOCK_TARGETS[self.blocking_reason]
        return [k.core, k.lane_eligible(self.lane_id), k.lane_blocked(self.lane_id, target)]

    def argv(self) -> list[str]:
        return [self.eid, self.blocking_reason, self.blocking_detail, str(self.now_ms)]

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))


class UnblockExecution(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_unblock_execution`` (spec 02 §3.22); ``source`` ∈ budget/quota/route/operator."""

    NAME: ClassVar[str] = "ff_unblock_execution"
    eid: ExecutionId
    lane_id: str
    source: str
    now_ms: int
    expected_blocking_reason: str = ""

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.now_ms, "now_ms", minimum=0)
        if self.source not in ("budget", "quota", "route", "operator"):
            raise InvalidInput(f"unknown blocked set {self.source!r}")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.lane_blocked(self.lane_id, self.source), k.lane_eligible(self.lane_id)]

    def argv(self) -> list[str]:
        return [self.eid, str(self.now_ms), self.expected_blocking_reason]

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))
