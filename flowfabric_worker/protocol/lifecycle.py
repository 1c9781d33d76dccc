"""Function-call structs for execution creation, claiming, leases and the
terminal / self-parking operations (spec 02 §3.1–§3.12).

Scanner calls live in :mod:`.maintenance`, operator actions in
:mod:`.operator`, the worker registry in :mod:`.worker_registry`; the
terminal and parking calls in :mod:`.terminal` (re-exported here).
Every struct validates client-side the inputs spec 02 §9 lists as crashing
or misbehaving in the reference library, so they never reach Redis.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.checks import check_eid, check_int, check_json_object, opt
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle_results import (
    AttemptResult,
    CancelResult,
    ClaimResult,
    CompleteResult,
    CreateResult,
    DelayResult,
    FailResult,
    GrantAndClaimResult,
    GrantResult,
    OkResult,
    RenewLeaseResult,
)
from flowfabric_worker.protocol.terminal import (
    CancelExecution,
    CompleteExecution,
    DelayExecution,
    FailExecution,
    MoveToWaitingChildren,
)

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


class GrantCall(FCall[GrantResult], frozen=True, kw_only=True):
    """What a claim grant and a reclaim grant share: the same ARGV, checks and
    reply (spec 02 §3.2, §3.16); they differ in name and KEYS."""

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

    def argv(self) -> list[str]:
        return [
            self.eid, self.worker_id, self.worker_instance_id, self.lane_id,
            self.capability_hash, str(self.grant_ttl_ms), self.route_snapshot_json,
            self.admission_summary, self.worker_capabilities_csv,
        ]  # fmt: skip

    def decode(self, reply: Any) -> GrantResult:
        env = self.envelope(reply)
        # Only a reclaim grant reports its expiry.
        expires = env.field(1) if len(env.fields) > 1 else ""
        return GrantResult(execution_id=env.field(0),
                           grant_expires_at=int(expires) if expires else None)


class IssueClaimGrant(GrantCall, frozen=True, kw_only=True):
    """``ff_issue_claim_grant`` (spec 02 §3.2)."""

    NAME: ClassVar[str] = "ff_issue_claim_grant"

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.claim_grant, k.lane_eligible(self.lane_id)]


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
