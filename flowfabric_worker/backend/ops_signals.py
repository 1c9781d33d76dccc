"""Typed backend methods for suspension, waitpoints and signals (spec 03 §5–§6)."""

from __future__ import annotations

from ._caller import Caller


class SignalOps(Caller):
    pass
