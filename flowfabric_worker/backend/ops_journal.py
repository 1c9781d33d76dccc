"""Typed backend methods for our ffw_* step journal."""

from __future__ import annotations

from ..protocol.journal import AppendResult, JournalAppend, JournalEntry, JournalRead
from ._caller import Caller


class JournalOps(Caller):
    async def journal_append(self, args: JournalAppend) -> AppendResult:
        return await self.call(args)

    async def journal_read(self, args: JournalRead) -> tuple[JournalEntry, ...]:
        return await self.call(args)
