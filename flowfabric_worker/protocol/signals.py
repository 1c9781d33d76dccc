"""Function calls for waitpoints, suspension, signals, HMAC keys and the
resume claim (spec 03 §5–§6, spec 02 §3.4).

Waitpoint tokens are bearer credentials; they travel as :class:`Token`, whose
``repr``/``str`` show only the kid so they never reach a log by accident.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.function import Envelope, FCall
from flowfabric_worker.protocol.ids import ExecutionId, execution_tag
from flowfabric_worker.protocol.keys import ExecKeys, PartitionKeys
from flowfabric_worker.protocol.tokens import Token

__all__ = [
    "SUSPEND_REASONS",
    "BufferSignal",
    "ClaimResumedExecution",
    "ClaimResumedResult",
    "CloseWaitpoint",
    "CloseWaitpointResult",
    "CreatePendingWaitpoint",
    "DeliverSignal",
    "ExpireSuspension",
    "ExpireSuspensionResult",
    "HmacKids",
    "ListHmacKids",
    "PendingWaitpoint",
    "ResumeExecution",
    "ResumeExecutionResult",
    "RotateHmacResult",
    "RotateHmacSecret",
    "SignalResult",
    "SuspendExecution",
    "SuspendResult",
    "Token",
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
DEFAULT_DEDUP_TTL_MS = 86_400_000
MAX_SUSPEND_DEDUP_TTL_MS = 604_800_000


def _tok(text: str) -> Token:
    return Token(text)


def _noop(tag: str) -> str:
    return f"ff:noop:{tag}"


def _num(value: int | None, what: str, *, minimum: int = 0) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{what} must be an integer >= {minimum}")
    return str(value)


# -- pending waitpoints ------------------------------------------------------


class PendingWaitpoint(msgspec.Struct, frozen=True):
    waitpoint_id: str
    waitpoint_key: str
    token: Token


class CreatePendingWaitpoint(FCall[PendingWaitpoint], frozen=True, kw_only=True):
    NAME: ClassVar[str] = "ff_create_pending_waitpoint"
    eid: ExecutionId
    attempt_index: int
    waitpoint_id: str
    waitpoint_key: str
    expires_at: int

    def __post_init__(self) -> None:
        _num(self.attempt_index, "attempt_index")
        _num(self.expires_at, "expires_at")
        if not self.waitpoint_key:
            raise InvalidInput("waitpoint_key must be non-empty")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.waitpoint(self.waitpoint_id), k.pending_waitpoint_expiry,
                k.hmac_keystore]

    def argv(self) -> list[str]:
        return [self.eid, str(self.attempt_index), self.waitpoint_id, self.waitpoint_key,
                str(self.expires_at)]

    def decode(self, reply: Any) -> PendingWaitpoint:
        env = self.envelope(reply)
        return PendingWaitpoint(env.field(0), env.field(1), _tok(env.field(2)))


# -- suspension ------------------------------------------------------------------


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
        WaitpointGrant(f[5 + 3 * j], f[6 + 3 * j], _tok(f[7 + 3 * j])) for j in range(n)
    )
    return SuspendResult(env.status, f[0], WaitpointGrant(f[1], f[2], _tok(f[3])), extras)


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
        _num(self.attempt_index, "attempt_index")
        _num(self.lease_epoch, "lease_epoch")
        _num(self.timeout_at, "timeout_at")
        _num(self.dedup_ttl_ms, "dedup_ttl_ms")
        _num(self.lease_history_maxlen, "lease_history_maxlen", minimum=1)
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
            self.reason_code, self.requested_by, _num(self.timeout_at, "timeout_at"),
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
        _num(self.resume_delay_ms, "resume_delay_ms")
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


class CloseWaitpointResult(msgspec.Struct, frozen=True):
    already_closed: bool


class CloseWaitpoint(FCall[CloseWaitpointResult], frozen=True, kw_only=True):
    NAME: ClassVar[str] = "ff_close_waitpoint"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    waitpoint_id: str
    reason: str = "proactive_close"

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.waitpoint(self.waitpoint_id), k.pending_waitpoint_expiry]

    def argv(self) -> list[str]:
        return [self.waitpoint_id, self.reason]

    def decode(self, reply: Any) -> CloseWaitpointResult:
        return CloseWaitpointResult(self.envelope(reply).field(0) == "already_closed")


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


# -- HMAC keystore ------------------------------------------------------------------


class RotateHmacResult(msgspec.Struct, frozen=True):
    outcome: Literal["rotated", "noop"] | str
    previous_kid: str
    current_kid: str
    gc_count: int


class RotateHmacSecret(FCall[RotateHmacResult], frozen=True, kw_only=True):
    """Install ``new_kid`` on one partition (call once per ``fp`` partition)."""

    NAME: ClassVar[str] = "ff_rotate_waitpoint_hmac_secret"
    IDEMPOTENT: ClassVar[bool] = True
    tag: str
    new_kid: str
    new_secret_hex: str = msgspec.field(default="")
    grace_ms: int = 86_400_000

    def __post_init__(self) -> None:
        if not self.new_kid or ":" in self.new_kid:
            raise InvalidInput("kid must be non-empty and contain no ':'")
        s = self.new_secret_hex
        if not s or len(s) % 2 or any(c not in "0123456789abcdefABCDEF" for c in s):
            raise InvalidInput("secret must be non-empty even-length hex")
        if isinstance(self.grace_ms, bool) or not 0 <= self.grace_ms <= 2**53 - 1:
            raise InvalidInput("grace_ms must be an integer in [0, 2^53-1]")

    def __repr__(self) -> str:
        return (f"RotateHmacSecret(tag={self.tag!r}, new_kid={self.new_kid!r}, "
                f"grace_ms={self.grace_ms})")

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("tag", self.tag), ("new_kid", self.new_kid), ("grace_ms", self.grace_ms)]

    def keys(self) -> list[str]:
        return [PartitionKeys(self.tag).hmac_keystore]

    def argv(self) -> list[str]:
        return [self.new_kid, self.new_secret_hex, str(self.grace_ms)]

    def decode(self, reply: Any) -> RotateHmacResult:
        env = self.envelope(reply)
        if env.field(0) == "noop":
            return RotateHmacResult("noop", "", env.field(1), 0)
        return RotateHmacResult(env.field(0), env.field(1), env.field(2), int(env.field(3, "0")))


class HmacKids(msgspec.Struct, frozen=True):
    current_kid: str
    in_grace: tuple[tuple[str, int], ...]
    """Non-current kids still accepted, with their expiry (ms), sorted by expiry."""


class ListHmacKids(FCall[HmacKids], frozen=True, kw_only=True):
    NAME: ClassVar[str] = "ff_list_waitpoint_hmac_kids"
    IDEMPOTENT: ClassVar[bool] = True
    tag: str

    def keys(self) -> list[str]:
        return [PartitionKeys(self.tag).hmac_keystore]

    def argv(self) -> list[str]:
        return []

    def decode(self, reply: Any) -> HmacKids:
        env = self.envelope(reply)
        n = int(env.field(1, "0"))
        pairs = [(env.field(2 + 2 * i), int(env.field(3 + 2 * i))) for i in range(n)]
        return HmacKids(env.field(0), tuple(sorted(pairs, key=lambda p: p[1])))


# -- signals ----------------------------------------------------------------------


class SignalResult(msgspec.Struct, frozen=True):
    """``duplicate`` is set when an idempotency key matched an earlier signal;
    ``signal_id`` is then the first signal's id and ``effect`` is empty."""

    signal_id: str
    effect: str
    duplicate: bool = False


class _SignalBase(FCall[SignalResult], frozen=True, kw_only=True):
    eid: ExecutionId
    signal_id: str
    waitpoint_id: str
    signal_name: str
    token: Token
    signal_category: str = "callback"
    source_type: str = "external_api"
    source_identity: str = ""
    payload: bytes = b""
    payload_encoding: str = "json"
    idempotency_key: str = ""
    correlation_id: str = ""
    target_scope: str = "waitpoint"
    created_at: int | None = None
    dedup_ttl_ms: int = DEFAULT_DEDUP_TTL_MS
    resume_delay_ms: int = 0
    signal_maxlen: int = 1000
    max_signals_per_execution: int = 10_000

    @property
    def IDEMPOTENT(self) -> bool:  # type: ignore[override]
        return bool(self.idempotency_key)

    def __post_init__(self) -> None:
        for what in ("dedup_ttl_ms", "resume_delay_ms", "max_signals_per_execution"):
            _num(getattr(self, what), what)
        _num(self.signal_maxlen, "signal_maxlen", minimum=1)
        _num(self.created_at, "created_at")

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("eid", self.eid), ("signal_id", self.signal_id),
                ("waitpoint_id", self.waitpoint_id), ("signal_name", self.signal_name),
                ("token", Token(self.token))]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eid={self.eid!r}, signal_id={self.signal_id!r}, "
                f"waitpoint_id={self.waitpoint_id!r}, signal_name={self.signal_name!r}, "
                f"token={Token(self.token).redacted()!r})")

    def argv(self) -> list[str | bytes]:
        return [
            self.signal_id, self.eid, self.waitpoint_id, self.signal_name, self.signal_category,
            self.source_type, self.source_identity, self.payload, self.payload_encoding,
            self.idempotency_key, self.correlation_id, self.target_scope,
            _num(self.created_at, "created_at"), str(self.dedup_ttl_ms),
            str(self.resume_delay_ms), str(self.signal_maxlen),
            str(self.max_signals_per_execution), str.__str__(self.token),
        ]

    def _dedup_key(self, k: ExecKeys) -> str:
        if self.idempotency_key:
            return k.signal_dedup(self.waitpoint_id, self.idempotency_key)
        return k.noop

    def decode(self, reply: Any) -> SignalResult:
        env = self.envelope(reply)
        if env.status == "DUPLICATE":
            return SignalResult(env.field(0), "", True)
        return SignalResult(env.field(0), env.field(1))


class DeliverSignal(_SignalBase, frozen=True, kw_only=True):
    """Deliver a signal to an active waitpoint (``lane`` = ``exec_core.lane_id``)."""

    NAME: ClassVar[str] = "ff_deliver_signal"
    lane: str

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        wp = self.waitpoint_id
        return [
            k.core, k.waitpoint_condition(wp), k.waitpoint_signals(wp), k.signals,
            k.signal(self.signal_id), k.signal_payload(self.signal_id), self._dedup_key(k),
            k.waitpoint(wp), k.suspension_current, k.lane_eligible(self.lane),
            k.lane_suspended(self.lane), k.lane_delayed(self.lane), k.suspension_timeout,
            k.hmac_keystore, k.signal_delivery,
        ]


class BufferSignal(_SignalBase, frozen=True, kw_only=True):
    """Buffer a signal for a waitpoint that is still pending."""

    NAME: ClassVar[str] = "ff_buffer_signal_for_pending_waitpoint"

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        wp = self.waitpoint_id
        return [
            k.core, k.waitpoint_condition(wp), k.waitpoint_signals(wp), k.signals,
            k.signal(self.signal_id), k.signal_payload(self.signal_id), self._dedup_key(k),
            k.waitpoint(wp), k.hmac_keystore,
        ]


# -- resume claim --------------------------------------------------------------------


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
        _num(self.lease_ttl_ms, "lease_ttl_ms", minimum=1)
        _num(self.attempt_index, "attempt_index")
        _num(self.remaining_attempt_timeout_ms, "remaining_attempt_timeout_ms")

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
            _num(self.remaining_attempt_timeout_ms, "remaining_attempt_timeout_ms"),
        ]

    def decode(self, reply: Any) -> ClaimResumedResult:
        env = self.envelope(reply)
        return ClaimResumedResult(
            env.field(0), int(env.field(1)), int(env.field(2)), env.field(3), int(env.field(4))
        )


def partition_tag(eid: ExecutionId) -> str:
    """The tag whose keystore signs this execution's waitpoints."""
    return execution_tag(eid)
