"""Function calls for pending waitpoints (spec 03 §5.1, §6): made before
the task waits so a caller can be handed the id and token early, and closed
proactively or when superseded.

Waitpoint tokens are bearer credentials; they travel as :class:`Token`, whose
``repr``/``str`` show only the kid so they never reach a log by accident.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.checks import wire_int
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.tokens import Token

__all__ = ["CloseWaitpoint", "CloseWaitpointResult", "CreatePendingWaitpoint", "PendingWaitpoint"]


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
        wire_int(self.attempt_index, "attempt_index")
        wire_int(self.expires_at, "expires_at")
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
        return PendingWaitpoint(env.field(0), env.field(1), Token(env.field(2)))


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
