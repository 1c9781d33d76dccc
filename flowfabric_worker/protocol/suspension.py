"""Function calls that suspend an execution on waitpoints and end its
suspension: suspend, operator resume, timeout expiry, and the claim that
continues a resumed attempt (spec 03 §5.2–§5.4, §7; spec 02 §3.4)."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.checks import wire_int
from flowfabric_worker.protocol.function import Envelope, FCall
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.tokens import Token

__all__ = [
    "MAX_SUSPEND_DEDUP_TTL_MS",
    "SUSPEND_REASONS",
    "ClaimResumedExecution",
    "ClaimResumedResult",
    "ExpireSuspension",
    "ExpireSuspensionResult",
    "ResumeExecution",
    "ResumeExecutionResult",
    "SuspendExecution",
    "SuspendResult",
    "WaitpointBinding",
    "WaitpointGrant",
]

SUSPEND_REASONS = frozenset(
    {
        "waiting_for_signal", "waiting_for_approval", "waiting_for_callback",
        "waiting_for_tool_result", "waiting_for_operator_review", "paused_by_policy",
        "paused_by_budget", "step_boundary", "manual_pause",
    }
)
MAX_SUSPEND_DEDUP_TTL_MS = 604_800_000


class WaitpointBinding(msgspec.Struct, frozen=True):
    """An extra waitpoint of a multi-waitpoint suspension."""

    waitpoint_id: str
    waitpoint_key: str


class WaitpointGrant(msgspec.Struct, frozen=True):
    waitpoint_id: str
    waitpoint_key: str
    token: Token


class SuspendResult(msgspec.Struct, frozen=True):
    """``status`` is ``OK`` (suspended, lease released) or ``ALREADY_SATISFIED``
    (buffered signals met the condition; the caller keeps its lease)."""

    status: str
    suspension_id: str
    primary: WaitpointGrant
    extras: tuple[WaitpointGrant, ...] = ()

    @property
    def suspended(self) -> bool:
        return self.status == "OK"


def _suspend_result(env: Envelope) -> SuspendResult:
    f = env.fields
    n = int(f[4]) if len(f) > 4 and f[4] else 0
    extras = tuple(
        WaitpointGrant(f[5 + 3 * j], f[6 + 3 * j], Token(f[7 + 3 * j])) for j in range(n)
    )
    return SuspendResult(env.status, f[0], WaitpointGrant(f[1], f[2], Token(f[3])), extras)


class SuspendExecution(FCall[SuspendResult], frozen=True, kw_only=True):
    """Release the lease and park the execution on one or more waitpoints.

    ``lane`` and ``worker_instance_id`` are the values of the lease being
    released (they name index keys). ``use_pending_waitpoint`` activates a
    waitpoint made earlier by :class:`CreatePendingWaitpoint`.
    """

    NAME: ClassVar[str] = "ff_suspend_execution"
    eid: ExecutionId
    attempt_index: int
    attempt_id: str
    lease_id: str
    lease_epoch: int
    worker_instance_id: str
    lane: str
    suspension_id: str
    waitpoint_id: str
    waitpoint_key: str = ""
    reason_code: str = "waiting_for_signal"
    requested_by: str = "worker"
    timeout_at: int | None = None
    resume_condition_json: str
    resume_policy_json: str
    continuation_metadata_pointer: str = ""
    use_pending_waitpoint: bool = False
    timeout_behavior: str = "fail"
    lease_history_maxlen: int = 1000
    idempotency_key: str = ""
    dedup_ttl_ms: int | None = None
    extra_waitpoints: tuple[WaitpointBinding, ...] = ()
    now_ms: int | None = None
    """Local clock used only to derive the default dedup TTL (0.15's rule)."""

    @property
    def IDEMPOTENT(self) -> bool:  # type: ignore[override]
        return bool(self.idempotency_key)

    def __post_init__(self) -> None:
        wire_int(self.attempt_index, "attempt_index")
        wire_int(self.lease_epoch, "lease_epoch")
        wire_int(self.timeout_at, "timeout_at")
        wire_int(self.dedup_ttl_ms, "dedup_ttl_ms")
        wire_int(self.lease_history_maxlen, "lease_history_maxlen", minimum=1)
        if not self.use_pending_waitpoint and not self.waitpoint_key:
            raise InvalidInput("a fresh waitpoint needs a waitpoint_key")
        if self.use_pending_waitpoint and self.extra_waitpoints:
            raise InvalidInput("a pending waitpoint cannot be combined with extra waitpoints")
        for b in self.extra_waitpoints:
            if not b.waitpoint_id or not b.waitpoint_key:
                raise InvalidInput("extra waitpoint binding with empty id or key")
        try:
            doc = json.loads(self.resume_condition_json)
        except ValueError as exc:
            raise InvalidInput(f"resume_condition_json is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidInput("resume_condition_json must be a JSON object")

    def _dedup_ttl(self) -> int:
        if not self.idempotency_key:
            return 0
        if self.dedup_ttl_ms is not None:
            return self.dedup_ttl_ms
        if self.timeout_at is None:
            return MAX_SUSPEND_DEDUP_TTL_MS
        import time

        now = self.now_ms if self.now_ms is not None else int(time.time() * 1000)
        return min(max(self.timeout_at - now, 0) + 60_000, MAX_SUSPEND_DEDUP_TTL_MS)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        wp = self.waitpoint_id
        keys = [
            k.core, k.attempt(self.attempt_index), k.lease_current, k.lease_history,
            k.lease_expiry, k.worker_leases(self.worker_instance_id), k.suspension_current,
            k.waitpoint(wp), k.waitpoint_signals(wp), k.suspension_timeout,
            k.pending_waitpoint_expiry, k.lane_active(self.lane), k.lane_suspended(self.lane),
            k.waitpoints, k.waitpoint_condition(wp), k.attempt_timeout, k.hmac_keystore,
            k.suspend_dedup(self.eid, self.idempotency_key) if self.idempotency_key else k.noop,
        ]
        for b in self.extra_waitpoints:
            keys += [k.waitpoint(b.waitpoint_id), k.waitpoint_signals(b.waitpoint_id),
                     k.waitpoint_condition(b.waitpoint_id)]
        return keys

    def argv(self) -> list[str]:
        args = [
            self.eid, str(self.attempt_index), self.attempt_id, self.lease_id,
            str(self.lease_epoch), self.suspension_id, self.waitpoint_id,
            "" if self.use_pending_waitpoint else self.waitpoint_key,
            self.reason_code, self.requested_by, wire_int(self.timeout_at, "timeout_at"),
            self.resume_condition_json, self.resume_policy_json,
            self.continuation_metadata_pointer, "1" if self.use_pending_waitpoint else "",
            self.timeout_behavior, str(self.lease_history_maxlen), self.idempotency_key,
            str(self._dedup_ttl()), str(len(self.extra_waitpoints)),
        ]
        for b in self.extra_waitpoints:
            args += [b.waitpoint_id, b.waitpoint_key]
        return args

    def decode(self, reply: Any) -> SuspendResult:
        return _suspend_result(self.envelope(reply))


class ResumeExecutionResult(msgspec.Struct, frozen=True):
    public_state: Literal["waiting", "delayed"] | str


class ResumeExecution(FCall[ResumeExecutionResult], frozen=True, kw_only=True):
    """Operator resume of a suspended execution (condition ignored)."""

    NAME: ClassVar[str] = "ff_resume_execution"
    eid: ExecutionId
    lane: str
    current_waitpoint_id: str
    trigger_type: str = "operator"
    resume_delay_ms: int = 0

    def __post_init__(self) -> None:
        wire_int(self.resume_delay_ms, "resume_delay_ms")
        if not self.lane:
            raise InvalidInput("lane must be non-empty")
        if not self.current_waitpoint_id:
            raise InvalidInput("execution is not suspended (no current waitpoint)")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        wp = self.current_waitpoint_id
        return [k.core, k.suspension_current, k.waitpoint(wp), k.waitpoint_signals(wp),
                k.suspension_timeout, k.lane_eligible(self.lane), k.lane_delayed(self.lane),
                k.lane_suspended(self.lane)]

    def argv(self) -> list[str]:
        return [self.eid, self.trigger_type, str(self.resume_delay_ms)]

    def decode(self, reply: Any) -> ResumeExecutionResult:
        return ResumeExecutionResult(self.envelope(reply).field(0))


class ExpireSuspensionResult(msgspec.Struct, frozen=True):
    """``outcome`` is a behaviour (``fail``, ``auto_resume``, …) or one of
    ``not_found_cleaned``, ``not_suspended_cleaned``,
    ``no_active_suspension_cleaned``, ``not_yet_due``."""

    outcome: str
    public_state: str = ""


class ExpireSuspension(FCall[ExpireSuspensionResult], frozen=True, kw_only=True):
    NAME: ClassVar[str] = "ff_expire_suspension"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lane: str
    current_waitpoint_id: str
    current_attempt_index: int

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        wp = self.current_waitpoint_id
        i = self.current_attempt_index
        return [k.core, k.suspension_current, k.waitpoint(wp), k.waitpoint_condition(wp),
                k.attempt(i), k.stream_meta(i), k.suspension_timeout,
                k.lane_suspended(self.lane), k.lane_terminal(self.lane),
                k.lane_eligible(self.lane), k.lane_delayed(self.lane), k.lease_history]

    def argv(self) -> list[str]:
        return [self.eid]

    def decode(self, reply: Any) -> ExpireSuspensionResult:
        env = self.envelope(reply)
        return ExpireSuspensionResult(env.field(0), env.field(1))


class ClaimResumedResult(msgspec.Struct, frozen=True):
    lease_id: str
    lease_epoch: int
    lease_expires_at: int
    attempt_id: str
    attempt_index: int


class ClaimResumedExecution(FCall[ClaimResumedResult], frozen=True, kw_only=True):
    """Take a new lease on a resumed execution, continuing its attempt.

    ``attempt_index`` is ``exec_core.current_attempt_index`` (pre-read).
    """

    NAME: ClassVar[str] = "ff_claim_resumed_execution"
    eid: ExecutionId
    worker_id: str
    worker_instance_id: str
    lane: str
    lease_id: str
    lease_ttl_ms: int
    attempt_index: int
    remaining_attempt_timeout_ms: int | None = None
    capability_snapshot_hash: str = ""

    def __post_init__(self) -> None:
        wire_int(self.lease_ttl_ms, "lease_ttl_ms", minimum=1)
        wire_int(self.attempt_index, "attempt_index")
        wire_int(self.remaining_attempt_timeout_ms, "remaining_attempt_timeout_ms")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [
            k.core, k.claim_grant, k.lane_eligible(self.lane), k.lease_expiry,
            k.worker_leases(self.worker_instance_id), k.attempt(self.attempt_index),
            k.lease_current, k.lease_history, k.lane_active(self.lane), k.attempt_timeout,
            k.execution_deadline,
        ]

    def argv(self) -> list[str]:
        return [
            self.eid, self.worker_id, self.worker_instance_id, self.lane,
            self.capability_snapshot_hash, self.lease_id, str(self.lease_ttl_ms),
            wire_int(self.remaining_attempt_timeout_ms, "remaining_attempt_timeout_ms"),
        ]

    def decode(self, reply: Any) -> ClaimResumedResult:
        env = self.envelope(reply)
        return ClaimResumedResult(
            env.field(0), int(env.field(1)), int(env.field(2)), env.field(3), int(env.field(4))
        )
