"""The step journal as a running task sees it (design.md §3 "Suspend and resume").

A task function runs again from the top after a suspension, a retry or a
lost worker. Everything it must not redo — step results, received signals,
finished sleeps — is journaled under the execution (``ffw_journal_append``,
fenced by the current lease) in the order the task reached it. A run keeps a
cursor: a call at position *i* whose journal already holds entry *i* returns
the recorded result; the first call past the end does the work and appends.

Determinism rule: the sequence of journaled calls (their kinds and names)
must be the same on every run. A call that meets another kind or name at
its position raises :class:`~flowfabric_worker.errors.NonDeterminismError`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.attempt import Claimed, is_lease_lost
from flowfabric_worker.errors import ContractError, InvalidInput, LeaseLost, NonDeterminismError
from flowfabric_worker.protocol.errors import NondeterministicStep
from flowfabric_worker.protocol.journal import JournalAppend, JournalEntry, StepKind
from flowfabric_worker.protocol.records import Suspension
from flowfabric_worker.tasks import codec

__all__ = ["POINTER_PREFIX", "StepJournal", "result_type_of"]

#: ``continuation_metadata_pointer`` of our suspensions: ``ffw:<pos>:<name>``
#: names the journal position of the wait that suspended, so a later run can
#: tell which wait a closed suspension answers (spec 03 §7).
POINTER_PREFIX = "ffw:"


def pointer(pos: int, name: str) -> str:
    return f"{POINTER_PREFIX}{pos}:{name}"


def parse_pointer(text: str) -> tuple[int, str] | None:
    if not text.startswith(POINTER_PREFIX):
        return None
    pos, _, name = text[len(POINTER_PREFIX):].partition(":")
    return (int(pos), name) if pos.isdigit() else None


def result_type_of(fn: Callable[..., Any]) -> Any:
    """The declared return type of ``fn`` (``Any`` when unknown)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return Any
    return hints.get("return", Any)


class StepJournal:
    """One run's view of its execution's journal (loaded on first use)."""

    def __init__(self, backend: Backend, lease: Claimed) -> None:
        self.backend = backend
        self.lease = lease
        self.cursor = 0
        self._entries: list[JournalEntry] | None = None
        #: The execution's suspension record as it was when this run started.
        self.suspension: Suspension | None = None
        self._busy = False
        #: The first non-determinism detected in this run: the executor fails
        #: the execution with it even if the task caught the exception.
        self.violation: NonDeterminismError | None = None
        #: Journal position up to which a resumed run repeats what an
        #: earlier run of the same attempt already did (and streamed).
        self._replay_until = 0

    def _violated(self, pos: int, now: str, recorded: str) -> NonDeterminismError:
        if self.violation is None:
            self.violation = NonDeterminismError(self.eid, pos, now, recorded)
        return self.violation

    @property
    def eid(self) -> str:
        return self.lease.execution_id

    async def load(self) -> list[JournalEntry]:
        if self._entries is None:
            entries, self.suspension = await self.backend.journal_and_suspension(self.eid)
            self._entries = list(entries)
            self._replay_until = len(entries)
            parsed = (parse_pointer(self.suspension.continuation_metadata_pointer)
                      if self.suspension is not None and self.suspension.closed_at else None)
            if parsed is not None and parsed[0] == len(entries):
                self._replay_until += 1  # the wait it was resumed out of
        return self._entries

    async def check_finished(self) -> None:
        """Called when the task returned: a run that ends before reaching
        every call an earlier run recorded took another path. (A resumed run
        always has something recorded to reach, so it is checked even when
        it made no journaled call; other runs only when they made one.)"""
        if self._entries is None:
            if not self.lease.resumed:
                return
            await self.load()
        if self.cursor >= self._replay_until:
            return
        entries = self._entries or []
        recorded = (f"{entries[self.cursor].kind} {entries[self.cursor].name}"
                    if self.cursor < len(entries) else "the wait it was resumed out of")
        self._violated(self.cursor, "the end of the task", recorded)

    async def output_replayed(self) -> bool:
        """Whether output produced now was already produced into this
        attempt's stream by an earlier run (resumed claims keep the attempt
        and its stream; a retry or reclaim starts a new, empty one)."""
        if not self.lease.resumed:
            return False
        await self.load()
        return self.cursor < self._replay_until

    @property
    def replaying(self) -> bool:
        """True while this run is still inside what earlier runs recorded."""
        return self._entries is not None and self.cursor < len(self._entries)

    def resumed_for(self, pos: int) -> Suspension | None:
        """The closed suspension made by the wait at ``pos``, if this run was
        resumed out of it and has not journaled its outcome yet."""
        s = self.suspension
        if s is None or s.closed_at is None:
            return None
        parsed = parse_pointer(s.continuation_metadata_pointer)
        if parsed is None or parsed[0] != pos:
            return None
        return s

    async def replay(self, name: str, kind: StepKind) -> JournalEntry | None:
        """The recorded entry for the next call (cursor advanced), or ``None``
        when this call is new. Raises NonDeterminismError on a mismatch."""
        entries = await self.load()
        pos = self.cursor
        if pos < len(entries):
            e = entries[pos]
            if e.name != name or e.kind != kind:
                raise self._violated(pos, f"{kind} {name}", f"{e.kind} {e.name}")
            self.cursor += 1
            return e
        s = self.resumed_for(pos)
        if s is not None:
            _, waited = parse_pointer(s.continuation_metadata_pointer) or (pos, "")
            if kind != "signal" or waited != name:
                raise self._violated(pos, f"{kind} {name}", f"signal {waited}")
        return None

    async def record(self, name: str, kind: StepKind, result: bytes) -> bytes:
        """Append the next entry; returns the result that is now recorded (a
        resend keeps the first one)."""
        entries = await self.load()
        pos = self.cursor
        try:
            got = await self.backend.call(JournalAppend(
                eid=self.eid, lease_id=self.lease.lease_id, lease_epoch=self.lease.lease_epoch,
                step_index=pos, step_name=name, kind=kind, result=result))
        except NondeterministicStep as exc:
            raise self._violated(
                pos, f"{kind} {name}", f"{exc.recorded_kind} {exc.recorded_name}") from exc
        except ContractError as exc:
            if is_lease_lost(exc):
                raise LeaseLost(self.eid, exc.code) from exc
            raise
        recorded = got.result if got.existing else result
        entries.append(JournalEntry(pos, name, kind, recorded))
        self.cursor += 1
        return recorded

    async def step(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any], result_type: Any) -> Any:
        """Run ``fn`` once per execution; later runs get its recorded result."""
        if not name:
            raise InvalidInput("a step needs a non-empty name")
        if self._busy:
            raise InvalidInput(
                "journaled calls (ctx.step / wait_for_signal / sleep) must be awaited one "
                "at a time: their journal positions follow the order they finish in")
        self._busy = True
        try:
            if result_type is None:
                result_type = result_type_of(fn)
            entry = await self.replay(name, "step")
            if entry is not None:
                return codec.convert(codec.loads(entry.result), result_type,
                                     where=f"step {name!r} result")
            if inspect.iscoroutinefunction(fn):
                value = await fn(*args, **kwargs)
            else:
                value = await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
                if inspect.isawaitable(value):
                    value = await value
            data = codec.dumps(codec.to_builtins(value))
            recorded = await self.record(name, "step", data)
            # Decoded from the journal even on the first run, so a run and its
            # replays see exactly the same value (and type).
            return codec.convert(codec.loads(recorded), result_type,
                                 where=f"step {name!r} result")
        finally:
            self._busy = False

    def claim(self) -> None:
        """Mark a journaled call in progress (waits use it; see :meth:`step`)."""
        if self._busy:
            raise InvalidInput("journaled calls must be awaited one at a time")
        self._busy = True

    def release(self) -> None:
        self._busy = False
