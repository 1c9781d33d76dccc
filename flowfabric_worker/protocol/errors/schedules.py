"""The error codes of recurring schedules (``ffw`` library)."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import CodedContractError, T, _code

__all__ = [
    "ScheduleExists",
    "ScheduleNotFound",
]


@_code("schedule_not_found", T, "not_found")
class ScheduleNotFound(CodedContractError):
    """No schedule has this id (detail: the id)."""


@_code("schedule_exists", T, "conflict")
class ScheduleExists(CodedContractError):
    """A schedule with this id exists already and the call asked for a new
    one (detail: the id)."""
