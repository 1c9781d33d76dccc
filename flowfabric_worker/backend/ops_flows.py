"""Typed backend methods for flows, dependencies, budgets and quotas (spec 04)."""

from __future__ import annotations

from ._caller import Caller


class FlowOps(Caller):
    pass
