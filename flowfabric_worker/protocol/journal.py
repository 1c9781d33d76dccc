"""Function calls of our step journal (``ffw`` library).

A task records each completed step (or received signal, or spawned child)
under its execution, fenced by the current lease. On a replay the task reads
the journal and returns recorded results; appending a step whose name or kind
differs from the one recorded at that index raises
``nondeterministic_step`` — the task code changed or is not deterministic.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.function import FCall, as_str
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys

__all__ = ["AppendResult", "JournalAppend", "JournalEntry", "JournalRead", "StepKind",
           "entries_from_hash"]

StepKind = Literal["step", "signal", "child"]


class JournalEntry(msgspec.Struct, frozen=True):
    index: int
    name: str
    kind: str
    result: bytes


class AppendResult(msgspec.Struct, frozen=True):
    """``existing`` is set when the step was already recorded (a resend); then
    ``result`` is the first recorded result, which wins."""

    index: int
    existing: bool
    result: bytes = b""


class JournalAppend(FCall[AppendResult], frozen=True, kw_only=True):
    NAME: ClassVar[str] = "ffw_journal_append"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lease_id: str
    lease_epoch: int
    step_index: int
    step_name: str
    kind: StepKind = "step"
    result: bytes = b""

    def __post_init__(self) -> None:
        if self.step_index < 0:
            raise InvalidInput("step_index must be >= 0")
        if not self.step_name:
            raise InvalidInput("step_name must be non-empty")
        if self.kind not in ("step", "signal", "child"):
            raise InvalidInput("kind must be step, signal or child")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.journal]

    def argv(self) -> list[str | bytes]:
        return [self.eid, self.lease_id, str(self.lease_epoch), str(self.step_index),
                self.step_name, self.kind, self.result]

    def decode(self, reply: Any) -> AppendResult:
        env = self.envelope(reply)
        if env.status == "EXISTS":
            raw = reply[3] if len(reply) > 3 else b""
            return AppendResult(int(env.field(0)), True,
                                raw if isinstance(raw, bytes) else as_str(raw).encode())
        return AppendResult(int(env.field(0)), False)


class JournalRead(FCall[tuple[JournalEntry, ...]], frozen=True, kw_only=True):
    NAME: ClassVar[str] = "ffw_journal_read"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId

    def keys(self) -> list[str]:
        return [ExecKeys(self.eid).journal]

    def argv(self) -> list[str]:
        return []

    def decode(self, reply: Any) -> tuple[JournalEntry, ...]:
        env = self.envelope(reply)
        n = int(env.field(0, "0"))
        out = []
        for i in range(n):
            raw = reply[3 + 3 * i + 2]
            out.append(JournalEntry(i, env.field(1 + 3 * i), env.field(2 + 3 * i),
                                    raw if isinstance(raw, bytes) else as_str(raw).encode()))
        return tuple(out)


def entries_from_hash(raw: dict[bytes, bytes]) -> tuple[JournalEntry, ...]:
    """The entries of a journal hash read with a plain ``HGETALL`` (the same
    layout ``ffw_journal_read`` walks: ``count`` and ``s:<i>:name|kind|result``),
    for callers that batch the read with others in one pipeline."""
    def get(field: str) -> bytes:
        return raw.get(field.encode(), b"")

    count = int(get("count") or b"0")
    return tuple(
        JournalEntry(i, get(f"s:{i}:name").decode(), get(f"s:{i}:kind").decode(),
                     get(f"s:{i}:result"))
        for i in range(count))
