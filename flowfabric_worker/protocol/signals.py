"""Function calls that deliver signals to waitpoints (spec 03 §6), and the
home of the whole signal family's names.

The other calls of that family live in modules of their own and stay
importable from here: pending waitpoints (``protocol.waitpoints``),
suspension and resumption (``protocol.suspension``), the HMAC keystore
(``protocol.hmac_keys``).

Waitpoint tokens are bearer credentials; they travel as :class:`Token`, whose
``repr``/``str`` show only the kid so they never reach a log by accident.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from flowfabric_worker.protocol.checks import wire_int
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.hmac_keys import (
    HmacKids,
    ListHmacKids,
    RotateHmacResult,
    RotateHmacSecret,
    partition_tag,
)
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.suspension import (
    MAX_SUSPEND_DEDUP_TTL_MS,
    SUSPEND_REASONS,
    ClaimResumedExecution,
    ClaimResumedResult,
    ExpireSuspension,
    ExpireSuspensionResult,
    ResumeExecution,
    ResumeExecutionResult,
    SuspendExecution,
    SuspendResult,
    WaitpointBinding,
    WaitpointGrant,
)
from flowfabric_worker.protocol.tokens import Token
from flowfabric_worker.protocol.waitpoints import (
    CloseWaitpoint,
    CloseWaitpointResult,
    CreatePendingWaitpoint,
    PendingWaitpoint,
)

__all__ = [
    "DEFAULT_DEDUP_TTL_MS",
    "MAX_SUSPEND_DEDUP_TTL_MS",
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
    "partition_tag",
]

DEFAULT_DEDUP_TTL_MS = 86_400_000


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
            wire_int(getattr(self, what), what)
        wire_int(self.signal_maxlen, "signal_maxlen", minimum=1)
        wire_int(self.created_at, "created_at")

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
            wire_int(self.created_at, "created_at"), str(self.dedup_ttl_ms),
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
