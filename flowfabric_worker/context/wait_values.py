"""What a wait hands a task and what it journals: :class:`Signal`,
:class:`Waitpoint`, the :class:`TaskSuspended` unwinding, and the records a
wait's outcome is journaled as (then decoded from, on every later run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec

from flowfabric_worker.errors import PayloadError
from flowfabric_worker.protocol.records import SignalRecord
from flowfabric_worker.protocol.tokens import Token
from flowfabric_worker.tasks import codec

__all__ = [
    "RecordedSignal",
    "Signal",
    "TaskSuspended",
    "WaitOutcome",
    "Waitpoint",
    "WaitpointRecord",
    "decode_signal",
    "recorded_signal",
]

T = TypeVar("T")


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


class RecordedSignal(msgspec.Struct, frozen=True):
    id: str
    name: str
    category: str = ""
    source_type: str = ""
    source_identity: str = ""
    correlation_id: str = ""
    accepted_at: int = 0
    encoding: str = ""
    payload: bytes | None = None


class WaitOutcome(msgspec.Struct, frozen=True):
    """What a wait journals: ``outcome`` is ``signals``, ``timeout`` or
    ``operator_resume`` (resumed by hand without enough signals)."""

    outcome: str
    signals: list[RecordedSignal] = []


class WaitpointRecord(msgspec.Struct, frozen=True):
    id: str
    key: str



def recorded_signal(record: SignalRecord, payload: bytes | None) -> RecordedSignal:
    return RecordedSignal(
        id=record.signal_id, name=record.signal_name, category=record.signal_category,
        source_type=record.source_type, source_identity=record.source_identity,
        correlation_id=record.correlation_id, accepted_at=record.accepted_at or 0,
        encoding=record.payload_encoding, payload=payload)


def decode_signal(rec: RecordedSignal, payload_type: Any) -> Signal[Any]:
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
