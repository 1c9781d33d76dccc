"""Function-call structs for scanners, operator actions and the worker
registry (spec 02 §3.13–§3.25)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import msgspec

from ..errors import InvalidInput
from .function import FCall, as_str
from .ids import ExecutionId
from .keys import ExecKeys, worker_alive, worker_caps, workers_index
from .lifecycle import GrantCall, _claim_result
from .lifecycle_checks import ClaimResult, OkResult, check_eid, check_int, opt

__all__ = [
    "BlockExecutionForAdmission",
    "ChangePriority",
    "ChangePriorityResult",
    "ExpireExecution",
    "ExpireResult",
    "HeartbeatResult",
    "HeartbeatWorker",
    "IssueReclaimGrant",
    "MarkLeaseExpiredIfDue",
    "PromoteDelayed",
    "ReclaimExecution",
    "RegisterWorker",
    "ReplayExecution",
    "RevokeLease",
    "RevokeResult",
    "SetExecutionTags",
    "UnblockExecution",
    "Version",
]

BLOCK_TARGETS = {
    "waiting_for_budget": "budget",
    "waiting_for_quota": "quota",
    "waiting_for_capable_worker": "route",
    "paused_by_operator": "operator",
    "paused_by_policy": "operator",
}
_TAG_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[^.]")


class RevokeResult(msgspec.Struct, frozen=True):
    status: str  # OK / ALREADY_SATISFIED
    tag: str  # revoked / already_revoked / already_expired
    lease_id: str = ""
    lease_epoch: int | None = None


class ExpireResult(msgspec.Struct, frozen=True):
    tag: str  # expired / not_found_cleaned / already_terminal
    phase_before: str = ""


class ChangePriorityResult(msgspec.Struct, frozen=True):
    old_priority: int
    new_priority: int


class HeartbeatResult(msgspec.Struct, frozen=True):
    tag: str  # refreshed / not_registered
    ttl_ms: int | None = None


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


class RevokeLease(FCall[RevokeResult], frozen=True, kw_only=True):
    """``ff_revoke_lease`` (spec 02 §3.15); ``worker_instance_id`` = current owner."""

    NAME: ClassVar[str] = "ff_revoke_lease"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    worker_instance_id: str
    expected_lease_id: str = ""
    revoke_reason: str = ""

    def __post_init__(self) -> None:
        check_eid(self.eid)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [
            k.core, k.lease_current, k.lease_history, k.lease_expiry,
            k.worker_leases(self.worker_instance_id),
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [self.eid, self.expected_lease_id, self.revoke_reason]

    def decode(self, reply: Any) -> RevokeResult:
        env = self.envelope(reply)
        if env.status == "OK":
            return RevokeResult(
                status=env.status,
                tag=env.field(0),
                lease_id=env.field(1),
                lease_epoch=int(env.field(2)),
            )
        return RevokeResult(status=env.status, tag=env.field(0))


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


class ChangePriority(FCall[ChangePriorityResult], frozen=True, kw_only=True):
    """``ff_change_priority`` (spec 02 §3.19)."""

    NAME: ClassVar[str] = "ff_change_priority"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lane_id: str
    new_priority: int

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.new_priority, "new_priority")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.lane_eligible(self.lane_id)]

    def argv(self) -> list[str]:
        return [self.eid, str(self.new_priority)]

    def decode(self, reply: Any) -> ChangePriorityResult:
        env = self.envelope(reply)
        return ChangePriorityResult(
            old_priority=int(float(env.field(0))), new_priority=int(float(env.field(1)))
        )


class ReplayExecution(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_replay_execution`` (spec 02 §3.20), normal path (4 KEYS).

    Skipped flow members need the dep-edge keys of part 04: pass
    ``flow_edge_ids`` together with the flow's keys via ``extra_keys``.
    """

    NAME: ClassVar[str] = "ff_replay_execution"
    eid: ExecutionId
    lane_id: str
    now_ms: int = 0
    extra_keys: tuple[str, ...] = ()
    edge_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.now_ms, "now_ms", minimum=0)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        lane = self.lane_id
        base = [k.core, k.lane_terminal(lane), k.lane_eligible(lane), k.lease_history]
        return base + list(self.extra_keys)

    def argv(self) -> list[str]:
        return [self.eid, str(self.now_ms), *self.edge_ids]

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))


class SetExecutionTags(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_set_execution_tags`` (spec 02 §3.21); keys like ``ns.name``."""

    NAME: ClassVar[str] = "ff_set_execution_tags"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    tags: dict[str, str]

    def __post_init__(self) -> None:
        check_eid(self.eid)
        if not self.tags:
            raise InvalidInput("tags must be non-empty")
        for key in self.tags:
            if not _TAG_KEY.match(key):
                raise InvalidInput(f"invalid tag key {key!r}: expected <namespace>.<name>")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.tags]

    def argv(self) -> list[str]:
        out: list[str] = []
        for key, value in self.tags.items():
            out += [key, value]
        return out

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))


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


class RegisterWorker(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_register_worker`` (spec 02 §3.23); tag ``registered`` / ``refreshed``."""

    NAME: ClassVar[str] = "ff_register_worker"
    IDEMPOTENT: ClassVar[bool] = True
    namespace: str
    instance_id: str
    worker_id: str
    lanes: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    ttl_ms: int
    now_ms: int

    def __post_init__(self) -> None:
        check_int(self.ttl_ms, "ttl_ms", minimum=1)
        check_int(self.now_ms, "now_ms", minimum=0)
        if not self.instance_id or not self.worker_id:
            raise InvalidInput("instance_id and worker_id are required")

    def keys(self) -> list[str]:
        ns, wiid = self.namespace, self.instance_id
        return [worker_alive(ns, wiid), worker_caps(ns, wiid), workers_index(ns)]

    def argv(self) -> list[str]:
        return [
            self.instance_id, self.worker_id, ",".join(sorted(set(self.lanes))),
            ",".join(sorted(set(self.capabilities))), str(self.ttl_ms), str(self.now_ms),
        ]  # fmt: skip

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))


class HeartbeatWorker(FCall[HeartbeatResult], frozen=True, kw_only=True):
    """``ff_heartbeat_worker`` (spec 02 §3.24)."""

    NAME: ClassVar[str] = "ff_heartbeat_worker"
    IDEMPOTENT: ClassVar[bool] = True
    namespace: str
    instance_id: str
    now_ms: int

    def __post_init__(self) -> None:
        check_int(self.now_ms, "now_ms", minimum=0)

    def keys(self) -> list[str]:
        return [
            worker_alive(self.namespace, self.instance_id),
            worker_caps(self.namespace, self.instance_id),
        ]

    def argv(self) -> list[str]:
        return [str(self.now_ms)]

    def decode(self, reply: Any) -> HeartbeatResult:
        env = self.envelope(reply)
        ttl = env.field(1)
        return HeartbeatResult(tag=env.field(0), ttl_ms=int(ttl) if ttl else None)


class Version(FCall[str], frozen=True, kw_only=True):
    """``ff_version``: the bare library version string."""

    NAME: ClassVar[str] = "ff_version"
    IDEMPOTENT: ClassVar[bool] = True

    def keys(self) -> list[str]:
        return []

    def argv(self) -> list[str]:
        return []

    def decode(self, reply: Any) -> str:
        return as_str(reply)


_ = opt  # re-exported helper used by callers building ARGV by hand
