"""Typed backend methods for our ffw_* step journal."""

from __future__ import annotations

from flowfabric_worker.backend._caller import Caller
from flowfabric_worker.protocol.journal import (
    AppendResult,
    JournalAppend,
    JournalEntry,
    JournalRead,
)


class JournalOps(Caller):
    async def journal_append(self, args: JournalAppend) -> AppendResult:
        return await self.call(args)

    async def journal_read(self, args: JournalRead) -> tuple[JournalEntry, ...]:
        return await self.call(args)
