"""What a waiting task expects of a signal's payload (``ffw`` library,
``lua/ffw/50_signal_types.lua``).

``ctx.wait_for_signal(..., payload_type=T)`` records, beside the waitpoint
it suspends on, the signal names it waits for and a JSON Schema of ``T``;
``client.signal`` (and the CLI, and the dashboard through
``Client.validate_signal_payload``) reads it and refuses a payload the task
could not decode before anything is written. The record lives in one hash
per execution, on the execution's hash tag (one cluster slot with the rest
of its records), a field per waitpoint.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId, execution_tag
from flowfabric_worker.protocol.keys import ExecKeys

__all__ = ["MAX_RECORD_BYTES", "RecordSignalTypes", "SignalTypes", "signal_types_key"]

#: The library refuses a bigger record (a schema that large is not recorded).
MAX_RECORD_BYTES = 65536


def signal_types_key(eid: ExecutionId) -> str:
    """``ffw:sigtypes:{fp:N}:<eid>``: never collides with the contract's ``ff:*``."""
    return f"ffw:sigtypes:{execution_tag(eid)}:{eid}"


class SignalTypes(msgspec.Struct, frozen=True):
    """One waitpoint's record: ``names`` waited for (empty: any name), the
    payload type's ``type`` label and its JSON ``schema``."""

    names: list[str]
    type: str
    schema: dict[str, Any]


class RecordSignalTypes(FCall[None], frozen=True, kw_only=True):
    """Record what the wait on ``waitpoint_id`` expects; fenced by the lease
    (a stale worker cannot overwrite it). ``record`` is a :class:`SignalTypes`
    as JSON."""

    NAME: ClassVar[str] = "ffw_signal_types_set"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lease_id: str
    lease_epoch: int
    waitpoint_id: str
    record: bytes

    def __post_init__(self) -> None:
        if not self.waitpoint_id:
            raise InvalidInput("waitpoint_id must be non-empty")
        if len(self.record) > MAX_RECORD_BYTES:
            raise InvalidInput(f"signal types record over {MAX_RECORD_BYTES} bytes")

    def keys(self) -> list[str]:
        return [ExecKeys(self.eid).core, signal_types_key(self.eid)]

    def argv(self) -> list[str | bytes]:
        return [self.eid, self.lease_id, str(self.lease_epoch), self.waitpoint_id,
                self.record]

    def decode(self, reply: Any) -> None:
        self.envelope(reply)
