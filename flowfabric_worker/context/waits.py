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

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.attempt import Claimed, is_lease_lost
from flowfabric_worker.context.step_journal import StepJournal, pointer
from flowfabric_worker.context.wait_conditions import ON_TIMEOUT, OnTimeout, types_record
from flowfabric_worker.context.wait_conditions import satisfied_by as _satisfied_by
from flowfabric_worker.context.wait_conditions import signal_names as _names
from flowfabric_worker.context.wait_conditions import wait_condition as _condition
from flowfabric_worker.context.wait_values import (
    RecordedSignal,
    Signal,
    TaskSuspended,
    WaitOutcome,
    Waitpoint,
    WaitpointRecord,
    decode_signal,
    recorded_signal,
)
from flowfabric_worker.errors import (
    ContractError,
    InvalidInput,
    KeystoreNotInitialized,
    LeaseLost,
    SignalTimeout,
)
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.records import Suspension
from flowfabric_worker.protocol.signal_types import RecordSignalTypes
from flowfabric_worker.protocol.signals import (
    CloseWaitpoint,
    CreatePendingWaitpoint,
    SuspendExecution,
    Token,
)

__all__ = [
    "DEFAULT_WAITPOINT_TTL",
    "ON_TIMEOUT",
    "OnTimeout",
    "Signal",
    "TaskSuspended",
    "Waitpoint",
    "Waits",
]

log = logging.getLogger("flowfabric_worker.signals")

_KEYSTORE_CODES = frozenset(
    {"hmac_secret_not_initialized", "invalid_keys_missing_hmac", "invalid_secret"})
#: Default lifetime of a pending waitpoint nobody suspended on (1 day).
DEFAULT_WAITPOINT_TTL = 86_400.0

_ENC = msgspec.json.Encoder()


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
                rec = msgspec.json.decode(entry.result, type=WaitpointRecord)
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
            rec = WaitpointRecord(made.waitpoint_id, made.waitpoint_key)
            kept = msgspec.json.decode(
                await self.journal.record(label, "step", _ENC.encode(rec)), type=WaitpointRecord)
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
        signals = [decode_signal(s, payload_type) for s in outcome.signals]
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
    ) -> WaitOutcome:
        self.journal.claim()
        try:
            entry = await self.journal.replay(label, "signal")
            if entry is not None:
                return msgspec.json.decode(entry.result, type=WaitOutcome)
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
                       ) -> list[RecordedSignal]:
        ids = await self.backend.satisfier_signal_ids(self.tag, waitpoint_id, suspension)
        found = await self.backend.signals_with_payloads(self.tag, ids)
        return [recorded_signal(r, p) for r, p in found]

    async def _outcome_of(self, s: Suspension, needed: int) -> WaitOutcome:
        """Why the suspension made by this wait ended (spec 03 §7)."""
        signals = await self._signals(s.waitpoint_id or "", s) if s.waitpoint_id else []
        if s.close_reason == "resumed" and len(signals) >= needed:
            return WaitOutcome("signals", signals)
        if s.close_reason == "resumed":
            return WaitOutcome("operator_resume", signals)
        return WaitOutcome("timeout", signals)

    async def _suspend(self, pos: int, label: str, condition: str, needed: int,
                       timeout_s: float | None, behavior: str, waitpoint: Waitpoint | None,
                       reason: str, types: tuple[list[str], Any] = ([], None)
                       ) -> WaitOutcome:
        lease = self.lease
        now = await self.backend.server_time_ms()
        pending = waitpoint is not None and await self._usable(waitpoint, now)
        if waitpoint is not None and not pending:
            early = await self._carry_over(waitpoint, condition)
            if early is not None:
                return early
        wp_id = waitpoint.id if (waitpoint is not None and pending) else str(uuid.uuid4())
        record = types_record(*types)
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
        return WaitOutcome("signals", await self._signals(res.primary.waitpoint_id, None))

    async def _carry_over(self, wp: Waitpoint, condition: str) -> WaitOutcome | None:
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
        return WaitOutcome("signals", [recorded_signal(r, p) for r, p in found])

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
