"""Suspend, signal, resume — the in-task side (design.md §3, spec 03 §5–§7).

``ctx.wait_for_signal`` journals its position, flushes the attempt's frames,
and calls ``ff_suspend_execution``: the lease and the worker slot are
released and the task body is abandoned with :class:`TaskSuspended` (a
``BaseException``, so ``except Exception`` in task code cannot swallow it).
When the condition is met the execution becomes runnable, a worker claims it
again (resumed claim, same attempt) and the function runs from the top:
journaled steps return their recorded results, and the wait at the same
journal position reads the signals that satisfied its waitpoint (spec 03 §7),
journals them and returns them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

import anyio
import msgspec

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.attempt import Claimed, is_lease_lost
from flowfabric_worker.context.step_journal import StepJournal, pointer
from flowfabric_worker.errors import (
    ContractError,
    InvalidInput,
    KeystoreNotInitialized,
    LeaseLost,
    PayloadError,
    SignalTimeout,
)
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.records import SignalRecord, Suspension
from flowfabric_worker.protocol.signal_types import (
    MAX_RECORD_BYTES,
    RecordSignalTypes,
    SignalTypes,
)
from flowfabric_worker.protocol.signals import (
    CloseWaitpoint,
    CreatePendingWaitpoint,
    SuspendExecution,
    Token,
)
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.payload_schema import schema_of, type_label

__all__ = ["ON_TIMEOUT", "Signal", "TaskSuspended", "Waitpoint", "Waits"]

log = logging.getLogger("flowfabric_worker.signals")

T = TypeVar("T")

OnTimeout = Literal["fail", "cancel", "expire", "auto_resume"]
#: ``on_timeout`` → the suspension's wire ``timeout_behavior`` (spec 03 §3.5).
ON_TIMEOUT: dict[str, str] = {
    "fail": "fail", "cancel": "cancel", "expire": "expire",
    "auto_resume": "auto_resume_with_timeout_signal",
}
_KEYSTORE_CODES = frozenset(
    {"hmac_secret_not_initialized", "invalid_keys_missing_hmac", "invalid_secret"})
#: Default lifetime of a pending waitpoint nobody suspended on (1 day).
DEFAULT_WAITPOINT_TTL = 86_400.0


class TaskSuspended(BaseException):
    """Internal: unwinds a task body whose execution was just suspended. The
    executor turns it into the outcome ``suspended``; task code must let it
    pass (do not catch ``BaseException``)."""

    def __init__(self, execution_id: str, waitpoint_id: str) -> None:
        super().__init__(f"execution {execution_id} suspended on waitpoint {waitpoint_id}")
        self.execution_id = execution_id
        self.waitpoint_id = waitpoint_id


@dataclass(frozen=True)
class Signal(Generic[T]):
    """A signal received by ``ctx.wait_for_signal``.

    ``payload`` is decoded to the ``payload_type`` asked for, else it is the
    JSON value (or the raw bytes when the payload is not JSON; ``None`` when
    the signal had none). ``received_at`` is when the server accepted it.
    """

    name: str
    payload: T
    id: str
    source_type: str = ""
    source_identity: str = ""
    received_at: datetime = field(default_factory=lambda: datetime.fromtimestamp(0, UTC))
    category: str = ""
    correlation_id: str = ""
    raw: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Waitpoint:
    """A waitpoint made by ``ctx.waitpoint()`` before the task waits on it.

    Hand ``execution_id``, ``id`` and ``token`` to the outside system that
    will signal it; signals sent before the task suspends are buffered, not
    lost. ``token`` is a bearer secret: it prints redacted (``str()``,
    ``repr()``, f-strings, logs); ``token.secret()`` gives the wire text.
    """

    execution_id: str
    id: str
    key: str
    token: Token

    def __repr__(self) -> str:
        return (f"Waitpoint(execution_id={self.execution_id!r}, id={self.id!r}, "
                f"key={self.key!r}, token={self.token.redacted()!r})")


class _RecordedSignal(msgspec.Struct, frozen=True):
    id: str
    name: str
    category: str = ""
    source_type: str = ""
    source_identity: str = ""
    correlation_id: str = ""
    accepted_at: int = 0
    encoding: str = ""
    payload: bytes | None = None


class _WaitOutcome(msgspec.Struct, frozen=True):
    """What a wait journals: ``outcome`` is ``signals``, ``timeout`` or
    ``operator_resume`` (resumed by hand without enough signals)."""

    outcome: str
    signals: list[_RecordedSignal] = []


class _WaitpointRecord(msgspec.Struct, frozen=True):
    id: str
    key: str


_ENC = msgspec.json.Encoder()


def _names(names: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if names is None:
        return []
    out = [names] if isinstance(names, str) else list(names)
    for n in out:
        if not isinstance(n, str) or not n:
            raise InvalidInput("signal names must be non-empty strings")
        if n.startswith("__"):
            raise InvalidInput(f"signal names beginning with '__' are reserved: {n!r}")
    return out


def _condition(names: list[str], mode: str | int, behavior: str) -> tuple[str, int, bool]:
    """(condition JSON, signals needed, returns a single Signal?)."""
    if mode == "any":
        return C.signal_set(names, mode="any", timeout_behavior=behavior), 1, True
    if mode == "all":
        if not names:
            raise InvalidInput('mode="all" needs signal names')
        return C.signal_set(names, mode="all", timeout_behavior=behavior), len(names), False
    if isinstance(mode, bool) or not isinstance(mode, int) or mode < 1:
        raise InvalidInput(f'mode must be "any", "all" or a count >= 1, not {mode!r}')
    # Each signal satisfies at most one matcher (spec 03 §3.1): one matcher
    # per name per needed signal, so any `mode` signals of those names resume.
    matchers = (names or [""]) * mode
    return C.signal_set(matchers, mode="any", minimum=mode, timeout_behavior=behavior), mode, False


def _satisfied_by(condition: str, entries: list[tuple[str, str]]) -> list[str] | None:
    """Evaluate a signal-set condition over ``(signal_id, name)`` entries the
    way the library does (spec 03 §3.1): each signal satisfies the first
    unsatisfied matcher with its name (or a wildcard). The satisfying ids in
    matcher order, or ``None`` when the condition is not met."""
    doc = json.loads(condition)
    names: list[str] = list(doc.get("required_signal_names") or [""])
    got: list[str | None] = [None] * len(names)
    for sid, name in entries:
        for j, want in enumerate(names):
            if got[j] is None and want in ("", name):
                got[j] = sid
                break
    done = [g for g in got if g is not None]
    if doc.get("signal_match_mode") == "all":
        return done if len(done) == len(names) else None
    return done if len(done) >= int(doc.get("minimum_signal_count") or 1) else None


def _recorded(record: SignalRecord, payload: bytes | None) -> _RecordedSignal:
    return _RecordedSignal(
        id=record.signal_id, name=record.signal_name, category=record.signal_category,
        source_type=record.source_type, source_identity=record.source_identity,
        correlation_id=record.correlation_id, accepted_at=record.accepted_at or 0,
        encoding=record.payload_encoding, payload=payload)


def _decode(rec: _RecordedSignal, payload_type: Any) -> Signal[Any]:
    raw = rec.payload or b""
    value: Any = None
    if raw:
        if payload_type is not None:
            value = codec.convert(codec.loads(raw), payload_type,
                                  where=f"payload of signal {rec.name!r}")
        elif rec.encoding in ("", "json"):
            try:
                value = codec.loads(raw)
            except PayloadError:
                value = raw
        else:
            value = raw
    return Signal(name=rec.name, payload=value, id=rec.id, source_type=rec.source_type,
                  source_identity=rec.source_identity,
                  received_at=datetime.fromtimestamp(rec.accepted_at / 1000, UTC),
                  category=rec.category, correlation_id=rec.correlation_id, raw=raw)


def _types_record(names: list[str], payload_type: Any) -> bytes | None:
    """What a typed wait records for senders to check payloads against
    (protocol/signal_types.py), or None: no type, no schema for it, or one too
    big to store (then senders do not check; the task still decodes)."""
    if payload_type is None:
        return None
    schema = schema_of(payload_type)
    if schema is None:
        return None
    record = _ENC.encode(SignalTypes(names=names, type=type_label(payload_type),
                                     schema=schema))
    if len(record) > MAX_RECORD_BYTES:
        log.warning("the JSON Schema of %s is over %d bytes: signals are not checked "
                    "against it when sent", type_label(payload_type), MAX_RECORD_BYTES)
        return None
    return record


class Waits:
    """Waitpoints, waits and sleeps of one run of a task (``ctx`` delegates)."""

    def __init__(self, backend: Backend, lease: Claimed, journal: StepJournal,
                 flush: Callable[[], Awaitable[None]], guard: anyio.Lock,
                 on_released: Callable[[], None]) -> None:
        self.backend = backend
        self.lease = lease
        self.journal = journal
        self._flush = flush
        self._guard = guard
        self._on_released = on_released

    @property
    def tag(self) -> str:
        return self.backend.tag_of(self.lease.execution_id)

    def _refusal(self, exc: ContractError) -> BaseException:
        if exc.code in _KEYSTORE_CODES:
            return KeystoreNotInitialized(
                f"cannot mint a waitpoint for {self.lease.execution_id}: the server's waitpoint "
                f"HMAC keystore is not initialised ({exc.code}). Install a secret first "
                "(`flowfabric-worker secrets init`, spec 03 §2.1); tasks that wait for "
                "signals or sleep cannot run until then.")
        if is_lease_lost(exc):
            return LeaseLost(self.lease.execution_id, exc.code)
        return exc

    # -- waitpoints ----------------------------------------------------------
    async def waitpoint(self, name: str = "", expires_in: float = DEFAULT_WAITPOINT_TTL
                        ) -> Waitpoint:
        if expires_in <= 0:
            raise InvalidInput("expires_in must be > 0 seconds")
        label = f"waitpoint:{name}"
        self.journal.claim()
        try:
            entry = await self.journal.replay(label, "step")
            if entry is not None:
                rec = msgspec.json.decode(entry.result, type=_WaitpointRecord)
                token = await self.backend.waitpoint_token(self.tag, rec.id)
                return Waitpoint(self.lease.execution_id, rec.id, rec.key, Token(token))
            wp_id = str(uuid.uuid4())
            now = await self.backend.server_time_ms()
            try:
                made = await self.backend.create_pending_waitpoint(CreatePendingWaitpoint(
                    eid=self.lease.execution_id, attempt_index=self.lease.attempt_index,
                    waitpoint_id=wp_id, waitpoint_key=f"wpk:{wp_id}",
                    expires_at=now + int(expires_in * 1000)))
            except ContractError as exc:
                raise self._refusal(exc) from exc
            rec = _WaitpointRecord(made.waitpoint_id, made.waitpoint_key)
            kept = msgspec.json.decode(
                await self.journal.record(label, "step", _ENC.encode(rec)), type=_WaitpointRecord)
            token = made.token if kept.id == made.waitpoint_id else Token(
                await self.backend.waitpoint_token(self.tag, kept.id))
            return Waitpoint(self.lease.execution_id, kept.id, kept.key, token)
        finally:
            self.journal.release()

    # -- waits -----------------------------------------------------------------
    async def wait(self, names: str | list[str] | tuple[str, ...] | None, *,
                   mode: str | int = "any", timeout: float | None = None,  # noqa: ASYNC109
                   on_timeout: str = "fail", payload_type: Any = None,
                   waitpoint: Waitpoint | None = None,
                   reason: str = "waiting_for_signal") -> Any:
        """See :meth:`TaskContext.wait_for_signal`."""
        wanted = _names(names)
        if on_timeout not in ON_TIMEOUT:
            raise InvalidInput(
                f"on_timeout must be one of {', '.join(ON_TIMEOUT)}, not {on_timeout!r}")
        if timeout is not None and timeout <= 0:
            raise InvalidInput("timeout must be > 0 seconds (or None to wait forever)")
        condition, needed, single = _condition(wanted, mode, ON_TIMEOUT[on_timeout])
        label = f"wait:{'|'.join(wanted) or '*'}"
        outcome = await self._suspend_or_replay(
            label, condition, needed, timeout, ON_TIMEOUT[on_timeout], waitpoint, reason,
            types=(wanted, payload_type))
        signals = [_decode(s, payload_type) for s in outcome.signals]
        if outcome.outcome != "signals":
            what = ("the timeout passed" if outcome.outcome == "timeout"
                    else "an operator resumed the execution")
            raise SignalTimeout(
                f"wait for {label[5:]} on {self.lease.execution_id} ended without its "
                f"signal(s): {what}", reason=outcome.outcome, signals=tuple(signals))
        return signals[0] if single else signals

    async def sleep(self, seconds: float) -> None:
        """Durable sleep: suspend with a timeout that resumes automatically."""
        if seconds < 0:
            raise InvalidInput("sleep seconds must be >= 0")
        await self._suspend_or_replay(
            "sleep", C.timeout_only(), 1, max(seconds, 0.001),
            "auto_resume_with_timeout_signal", None, "step_boundary")

    async def _suspend_or_replay(
        self, label: str, condition: str, needed: int, timeout_s: float | None,
        behavior: str, waitpoint: Waitpoint | None, reason: str,
        types: tuple[list[str], Any] = ([], None),
    ) -> _WaitOutcome:
        self.journal.claim()
        try:
            entry = await self.journal.replay(label, "signal")
            if entry is not None:
                return msgspec.json.decode(entry.result, type=_WaitOutcome)
            pos = self.journal.cursor
            resumed = self.journal.resumed_for(pos)
            if resumed is not None:
                outcome = await self._outcome_of(resumed, needed)
            else:
                outcome = await self._suspend(pos, label, condition, needed, timeout_s, behavior,
                                              waitpoint, reason, types)
            await self.journal.record(label, "signal", _ENC.encode(outcome))
            return outcome
        finally:
            self.journal.release()

    async def _signals(self, waitpoint_id: str, suspension: Suspension | None
                       ) -> list[_RecordedSignal]:
        ids = await self.backend.satisfier_signal_ids(self.tag, waitpoint_id, suspension)
        found = await self.backend.signals_with_payloads(self.tag, ids)
        return [_recorded(r, p) for r, p in found]

    async def _outcome_of(self, s: Suspension, needed: int) -> _WaitOutcome:
        """Why the suspension made by this wait ended (spec 03 §7)."""
        signals = await self._signals(s.waitpoint_id or "", s) if s.waitpoint_id else []
        if s.close_reason == "resumed" and len(signals) >= needed:
            return _WaitOutcome("signals", signals)
        if s.close_reason == "resumed":
            return _WaitOutcome("operator_resume", signals)
        return _WaitOutcome("timeout", signals)

    async def _suspend(self, pos: int, label: str, condition: str, needed: int,
                       timeout_s: float | None, behavior: str, waitpoint: Waitpoint | None,
                       reason: str, types: tuple[list[str], Any] = ([], None)
                       ) -> _WaitOutcome:
        lease = self.lease
        now = await self.backend.server_time_ms()
        pending = waitpoint is not None and await self._usable(waitpoint, now)
        if waitpoint is not None and not pending:
            early = await self._carry_over(waitpoint, condition)
            if early is not None:
                return early
        wp_id = waitpoint.id if (waitpoint is not None and pending) else str(uuid.uuid4())
        record = _types_record(*types)
        if record is not None:
            # Before the suspension: a signal that can resume it is checked.
            try:
                await self.backend.call(RecordSignalTypes(
                    eid=lease.execution_id, lease_id=lease.lease_id,
                    lease_epoch=lease.lease_epoch, waitpoint_id=wp_id, record=record))
            except ContractError as exc:
                raise self._refusal(exc) from exc
        # Frames first: appends are refused once the execution is suspended.
        await self._flush()
        call = SuspendExecution(
            eid=lease.execution_id, attempt_index=lease.attempt_index,
            attempt_id=lease.attempt_id, lease_id=lease.lease_id,
            lease_epoch=lease.lease_epoch, worker_instance_id=lease.worker_instance_id,
            lane=lease.lane, suspension_id=str(uuid.uuid4()), waitpoint_id=wp_id,
            waitpoint_key="" if pending else f"wpk:{wp_id}", reason_code=reason,
            timeout_at=None if timeout_s is None else now + max(int(timeout_s * 1000), 1),
            resume_condition_json=condition, resume_policy_json=C.resume_policy_json(),
            continuation_metadata_pointer=pointer(pos, label),
            use_pending_waitpoint=pending, timeout_behavior=behavior,
            # Same key for a resend after a lost reply: the library replays
            # the first outcome instead of refusing (spec 03 §5.2).
            idempotency_key=f"ffw:{lease.lease_id}:{pos}", now_ms=now)
        async with self._guard:
            with anyio.CancelScope(shield=True):
                try:
                    res = await self.backend.suspend_execution(call)
                except ContractError as exc:
                    raise self._refusal(exc) from exc
                if res.suspended:
                    self._on_released()
        if res.suspended:
            raise TaskSuspended(lease.execution_id, res.primary.waitpoint_id)
        # ALREADY_SATISFIED: buffered signals met the condition; the lease is
        # still ours and the task goes on (spec 03 §5.2, §7).
        return _WaitOutcome("signals", await self._signals(res.primary.waitpoint_id, None))

    async def _carry_over(self, wp: Waitpoint, condition: str) -> _WaitOutcome | None:
        """An unusable waitpoint may hold signals buffered for it before the
        attempt that made it was lost. If they satisfy the wait, they answer
        it (no suspension); either way the old waitpoint is closed, so no
        sender keeps buffering into it."""
        entries = await self.backend.waitpoint_signal_entries(self.tag, wp.id)
        rec = await self.backend.get_waitpoint(self.tag, wp.id)
        if rec is not None and rec.state == "pending":
            await self.backend.close_waitpoint(CloseWaitpoint(
                eid=self.lease.execution_id, waitpoint_id=wp.id, reason="superseded"))
        ids = _satisfied_by(condition, entries)
        if ids is None:
            if entries:
                log.warning("%d signal(s) buffered on superseded waitpoint %s of %s do not "
                            "satisfy the wait and are not carried over", len(entries), wp.id,
                            self.lease.execution_id)
            return None
        found = await self.backend.signals_with_payloads(self.tag, ids)
        return _WaitOutcome("signals", [_recorded(r, p) for r, p in found])

    async def _usable(self, wp: Waitpoint, now: int) -> bool:
        """A pending waitpoint can be activated only by the attempt that made
        it, while pending and unexpired; after a retry or a lost worker the wait
        uses what was buffered on it (:meth:`_carry_over`) or falls back to a
        fresh waitpoint (signals addressed to the execution still reach it)."""
        rec = await self.backend.get_waitpoint(self.tag, wp.id)
        ok = (rec is not None and rec.state == "pending"
              and rec.attempt_index == self.lease.attempt_index
              and rec.execution_id == self.lease.execution_id
              and (rec.expires_at or 0) > now)
        if not ok:
            log.warning("waitpoint %s of %s is no longer usable (%s); waiting on a fresh one",
                        wp.id, self.lease.execution_id, rec.state if rec else "missing")
        return ok
