"""What a recurring schedule is: :class:`Cron` and :class:`Every` (when it
ticks), the overlap and catch-up policies, and the declared form
``@task(schedule=..., schedule_args=...)`` attaches to a task.

Everything here is pure and checked at construction (:class:`InvalidInput`),
so a bad schedule is refused before anything is written. The tick math is in
:mod:`flowfabric_worker.tasks.schedule_ticks`; the stored record in
:mod:`flowfabric_worker.protocol.schedules`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from flowfabric_worker.errors import InvalidInput

__all__ = [
    "SCHEDULE_ATTR",
    "SCHEDULE_ID_RE",
    "SCHEDULE_TAG",
    "TICK_TAG",
    "Catchup",
    "Cron",
    "DeclaredSchedule",
    "Every",
    "Overlap",
    "ScheduleTick",
    "When",
    "check_schedule_id",
    "declared_schedule",
    "to_ms",
    "when_from_json",
]

#: Overlap policy: what a tick does while the schedule's previous run has not ended.
Overlap = Literal["allow", "skip", "buffer_one", "cancel_previous"]
#: Catch-up policy: what ticks missed while no scheduler ran become.
Catchup = Literal["skip", "all", "none"]

#: Execution tags carrying the schedule id and the nominal tick (epoch ms).
SCHEDULE_TAG = "ffw.schedule"
TICK_TAG = "ffw.schedule_tick"

#: Where ``@task(schedule=...)`` keeps the declaration on the task object.
SCHEDULE_ATTR = "ffw_schedule"

#: Ids go into key names and idempotency keys: printable, no separators that
#: would make two ids collide there.
SCHEDULE_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def check_schedule_id(schedule_id: str) -> str:
    if not isinstance(schedule_id, str) or not SCHEDULE_ID_RE.match(schedule_id):
        raise InvalidInput(
            f"schedule id must be 1-200 characters of letters, digits, '_', '.', '-': "
            f"{schedule_id!r}")
    return schedule_id


def to_ms(when: datetime | float | int | None, what: str) -> int | None:
    """An absolute time (aware datetime, or epoch seconds) as epoch ms."""
    if when is None:
        return None
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise InvalidInput(f"{what} must be timezone-aware (e.g. tzinfo=UTC)")
        return int(when.timestamp() * 1000)
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise InvalidInput(f"{what} must be a datetime or epoch seconds, not {when!r}")
    return int(when * 1000)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise InvalidInput(f"unknown time zone {tz!r}") from exc


@dataclass(frozen=True, slots=True)
class Cron:
    """Ticks at the times a 5-field cron expression names, in time zone
    ``tz`` (an IANA name; default UTC): ``Cron("0 9 * * MON-FRI",
    tz="Europe/Paris")``. Daylight saving follows the cron tradition
    (docs/schedules.md): a time the clock skips runs once, right after the
    jump; a fixed time in the repeated hour runs once, on its first pass."""

    expr: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str) or len(self.expr.split()) != 5:
            raise InvalidInput(f"a cron expression has 5 fields, not {self.expr!r}")
        zone = _zone(self.tz)
        try:
            CronSim(self.expr, datetime(2000, 1, 1, tzinfo=zone))
        except CronSimError as exc:
            raise InvalidInput(f"bad cron expression {self.expr!r}: {exc}") from exc

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.tz)

    def to_json(self) -> dict[str, Any]:
        return {"cron": self.expr, "tz": self.tz}


@dataclass(frozen=True, slots=True)
class Every:
    """Ticks at a fixed interval: ``Every(minutes=5)``. Ticks are aligned on
    multiples of the interval since the epoch (or since ``start_at`` when the
    schedule has one), so every process computes the same ones."""

    seconds: float = 0
    minutes: float = 0
    hours: float = 0
    days: float = 0
    interval_ms: int = field(init=False)

    def __post_init__(self) -> None:
        total = self.seconds + 60 * self.minutes + 3600 * self.hours + 86400 * self.days
        if not (math.isfinite(total) and total >= 1):
            raise InvalidInput(f"an Every interval must be at least 1 second, not {total!r} s")
        object.__setattr__(self, "interval_ms", round(total * 1000))

    def to_json(self) -> dict[str, Any]:
        return {"every_ms": self.interval_ms}


When = Cron | Every


def when_from_json(data: Mapping[str, Any]) -> When:
    """The :class:`Cron` / :class:`Every` of a stored spec."""
    if "cron" in data:
        return Cron(str(data["cron"]), tz=str(data.get("tz", "UTC")))
    if "every_ms" in data:
        return Every(seconds=int(data["every_ms"]) / 1000)
    raise InvalidInput(f"not a schedule spec: {dict(data)!r}")


@dataclass(frozen=True, slots=True)
class TimePlan:
    """When a schedule ticks, in full: what every process must agree on to
    compute the same ticks (stored as one JSON field, ``spec``)."""

    when: When
    start_ms: int | None = None
    end_ms: int | None = None
    jitter_ms: int = 0

    def __post_init__(self) -> None:
        if self.start_ms is not None and self.end_ms is not None and self.end_ms <= self.start_ms:
            raise InvalidInput("end_at must be after start_at")
        if not (0 <= self.jitter_ms <= 86_400_000):
            raise InvalidInput("jitter must be between 0 and 1 day")
        if isinstance(self.when, Every) and self.jitter_ms >= self.when.interval_ms:
            raise InvalidInput("jitter must be shorter than the interval")

    def to_json(self) -> str:
        data: dict[str, Any] = dict(self.when.to_json())
        if self.start_ms is not None:
            data["start_ms"] = self.start_ms
        if self.end_ms is not None:
            data["end_ms"] = self.end_ms
        if self.jitter_ms:
            data["jitter_ms"] = self.jitter_ms
        # Sorted: the library compares the stored text to tell a changed plan.
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TimePlan:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"not a schedule spec: {text!r}") from exc
        return cls(when_from_json(data), start_ms=data.get("start_ms"),
                   end_ms=data.get("end_ms"), jitter_ms=int(data.get("jitter_ms", 0)))


def check_policies(overlap: str, catchup: str, catchup_limit: int) -> None:
    if overlap not in get_args(Overlap):
        raise InvalidInput(f"overlap must be one of {get_args(Overlap)}, not {overlap!r}")
    if catchup not in get_args(Catchup):
        raise InvalidInput(f"catchup must be one of {get_args(Catchup)}, not {catchup!r}")
    if isinstance(catchup_limit, bool) or not isinstance(catchup_limit, int) \
            or not 1 <= catchup_limit <= 10_000:
        raise InvalidInput(f"catchup_limit must be an integer in 1..10000, not {catchup_limit!r}")


@dataclass(frozen=True, slots=True)
class DeclaredSchedule:
    """A schedule declared in code (``@task(schedule=..., schedule_args=...)``):
    registered (created, or updated in place) when a worker serving the task
    starts."""

    when: When
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    schedule_id: str | None = None
    overlap: Overlap = "allow"
    catchup: Catchup = "skip"
    catchup_limit: int = 100
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.when, Cron | Every):
            raise InvalidInput(f"schedule must be a Cron or an Every, not {self.when!r}")
        if self.schedule_id is not None:
            check_schedule_id(self.schedule_id)
        check_policies(self.overlap, self.catchup, self.catchup_limit)
        if not isinstance(self.args, tuple):
            raise InvalidInput("schedule_args must be a tuple of positional arguments")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, int | float) \
                or not self.jitter >= 0:
            raise InvalidInput(f"jitter must be >= 0 seconds, not {self.jitter!r}")
        TimePlan(self.when, jitter_ms=int(self.jitter * 1000))  # checks jitter < interval


def declared_schedule(task: Any) -> DeclaredSchedule | None:
    """The schedule ``@task(schedule=...)`` declared on ``task``, if any."""
    found = getattr(task, SCHEDULE_ATTR, None)
    return found if isinstance(found, DeclaredSchedule) else None


class ScheduleTick(NamedTuple):
    """What ``ctx.schedule`` gives a run a schedule started: the schedule's
    id and the nominal tick time it ran for (UTC; jitter not included)."""

    schedule_id: str
    tick: datetime

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> ScheduleTick | None:
        sid, tick = tags.get(SCHEDULE_TAG), tags.get(TICK_TAG)
        if not sid or not tick:
            return None
        try:
            return cls(sid, datetime.fromtimestamp(int(tick) / 1000, UTC))
        except ValueError:
            return None
