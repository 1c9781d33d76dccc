"""Typed backend methods for execution lifecycle (spec 02)."""

from __future__ import annotations

from ._caller import Caller


class LifecycleOps(Caller):
    pass
