"""Typed backend methods for attempt streams (spec 03 §8)."""

from __future__ import annotations

from ._caller import Caller


class StreamOps(Caller):
    pass
