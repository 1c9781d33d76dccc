"""Typed backend methods for our ffw_* step journal."""

from __future__ import annotations

from ._caller import Caller


class JournalOps(Caller):
    pass
