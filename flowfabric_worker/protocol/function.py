"""The shape every library function takes on the Python side.

A function call is a frozen msgspec struct holding its typed arguments. It
knows its FCALL name, builds its ``KEYS`` and ``ARGV`` and decodes the reply
into a typed result (raising the contract error of a refusal). The backend
only needs this interface to run any function, alone or pipelined:

    result = await backend.call(ClaimExecution(...))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from flowfabric_worker.errors import ScriptError
from flowfabric_worker.protocol.errors import error_for

__all__ = ["Envelope", "FCall", "as_str", "decode_envelope"]

R = TypeVar("R")


def as_str(value: Any) -> str:
    """A reply element as text (bulk strings arrive as bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if value is None:
        return ""
    return str(value)


class Envelope(msgspec.Struct, frozen=True):
    """A successful ``[1, status, fields...]`` reply."""

    status: str
    fields: tuple[str, ...]

    def field(self, index: int, default: str = "") -> str:
        return self.fields[index] if index < len(self.fields) else default


def decode_envelope(reply: Any, *, function: str, execution_id: str | None = None) -> Envelope:
    """Split a reply into status and fields, raising the mapped contract error
    for ``[0, code, details...]`` and :class:`ScriptError` for anything else."""
    if not isinstance(reply, list | tuple) or len(reply) < 2:
        raise ScriptError(f"{function}: malformed reply {reply!r}")
    head = reply[0]
    code = as_str(reply[1])
    rest = tuple(as_str(v) for v in reply[2:])
    if head == 1:
        return Envelope(status=code, fields=rest)
    if head == 0:
        raise error_for(code, rest, function=function, execution_id=execution_id)
    raise ScriptError(f"{function}: malformed reply {reply!r}")


class FCall(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """Base of every function-call struct.

    Subclasses set ``NAME`` (and ``LIBRARY`` for our ``ffw_*`` extensions),
    declare their arguments as fields, and implement :meth:`keys`,
    :meth:`argv` and :meth:`decode`. ``IDEMPOTENT`` marks calls the contract
    makes safe to resend after a reply was lost in transport.
    """

    NAME: ClassVar[str] = ""
    LIBRARY: ClassVar[str] = "flowfabric"
    IDEMPOTENT: ClassVar[bool] = False

    def keys(self) -> Sequence[str]:
        raise NotImplementedError

    def argv(self) -> Sequence[str | bytes]:
        raise NotImplementedError

    def decode(self, reply: Any) -> R:
        raise NotImplementedError

    def execution_id(self) -> str | None:
        """The execution a call is about, used to enrich errors (if any)."""
        eid = getattr(self, "eid", None)
        return eid if isinstance(eid, str) else None

    def envelope(self, reply: Any) -> Envelope:
        """Decode the envelope of ``reply`` with this call's name and execution."""
        return decode_envelope(reply, function=self.NAME, execution_id=self.execution_id())
