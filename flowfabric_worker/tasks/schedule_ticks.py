"""Tick math: when a schedule's ticks fall, in epoch milliseconds.

Pure functions of a :class:`~flowfabric_worker.tasks.schedule_specs.TimePlan`
and a time, so every process (worker, ``scan``, client) computes the same
ticks. Cron ticks come from ``cronsim`` in the schedule's time zone; its
daylight-saving behaviour is the cron tradition (see docs/schedules.md):

* a time the clock skips (02:30 on the spring-forward night in Europe/Paris)
  runs once, at the first instant after the jump (03:00);
* a fixed time in the hour that repeats (01:30 in America/New_York on the
  fall-back night) runs once, on its first pass; expressions with a wildcard
  or stepped hour (``*/30 * * * *``) tick at every real instant they name,
  in both passes.

Jitter is a deterministic offset per schedule and tick (a hash of both), so
every process agrees on when a tick fires without talking to the others.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime

from cronsim import CronSim

from flowfabric_worker.tasks.schedule_specs import Cron, Every, TimePlan

__all__ = ["Due", "due_ticks", "fire_at", "jitter_offset", "tick_after", "ticks_after"]


def _dt(ms: int, plan: Cron) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(plan.zone)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _raw_after(plan: TimePlan, after_ms: int) -> Iterator[int]:
    """Ticks strictly after ``after_ms``, ignoring start and end."""
    when = plan.when
    if isinstance(when, Every):
        anchor = plan.start_ms or 0
        step = when.interval_ms
        k = (after_ms - anchor) // step + 1 if after_ms >= anchor else 0
        tick = anchor + k * step
        while True:
            yield tick
            tick += step
    assert isinstance(when, Cron)
    for dt in CronSim(when.expr, _dt(after_ms, when)):
        yield _ms(dt)


def ticks_after(plan: TimePlan, after_ms: int) -> Iterator[int]:
    """The plan's ticks strictly after ``after_ms``, from ``start_at`` on
    and up to ``end_at`` (inclusive)."""
    if plan.start_ms is not None:
        after_ms = max(after_ms, plan.start_ms - 1)
    for tick in _raw_after(plan, after_ms):
        if plan.end_ms is not None and tick > plan.end_ms:
            return
        yield tick


def tick_after(plan: TimePlan, after_ms: int) -> int | None:
    """The first tick strictly after ``after_ms`` (None: the plan has ended)."""
    return next(ticks_after(plan, after_ms), None)


def jitter_offset(schedule_id: str, tick_ms: int, jitter_ms: int) -> int:
    """A deterministic delay in ``[0, jitter_ms)`` for this schedule's tick."""
    if jitter_ms <= 0:
        return 0
    digest = hashlib.blake2b(f"{schedule_id}:{tick_ms}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % jitter_ms


def fire_at(plan: TimePlan, schedule_id: str, tick_ms: int) -> int:
    """When the tick fires: its nominal time plus its jitter."""
    return tick_ms + jitter_offset(schedule_id, tick_ms, plan.jitter_ms)


class Due:
    """The ticks due at ``now``: ``ticks`` (oldest first, at most the
    ``limit`` newest), how many older ones were dropped by the limit, and
    ``next`` — the first tick not yet due (None: the plan has ended)."""

    __slots__ = ("dropped", "next", "ticks")

    def __init__(self, ticks: list[int], dropped: int, nxt: int | None) -> None:
        self.ticks = ticks
        self.dropped = dropped
        self.next = nxt


def due_ticks(plan: TimePlan, schedule_id: str, next_tick: int, now_ms: int,
              limit: int) -> Due:
    """The ticks from ``next_tick`` on that have fired by ``now_ms``.

    Bounded work however long nothing ran: for a gap of more than ``limit``
    ticks the walk starts near ``now`` (an ``Every`` by arithmetic, a cron
    by stepping back ``limit + 1`` ticks), then walks forward — forward, so
    daylight-saving nights give exactly the ticks :func:`tick_after` gives."""
    start = next_tick - 1
    skipped_from: int | None = None
    if now_ms - next_tick > 0:
        back = _back(plan, now_ms, limit + 1)
        if back is not None and back > start:
            skipped_from, start = start, back
    found: deque[int] = deque(maxlen=limit)
    total = 0
    nxt: int | None = None
    for tick in ticks_after(plan, start):
        if fire_at(plan, schedule_id, tick) > now_ms:
            nxt = tick
            break
        found.append(tick)
        total += 1
    dropped = max(0, total - limit)
    if skipped_from is not None:
        dropped += 1  # at least one (the exact count is not worth computing)
    return Due(list(found), dropped, nxt)


def _back(plan: TimePlan, now_ms: int, count: int) -> int | None:
    """A time at least ``count`` ticks before ``now_ms`` (None: unknown)."""
    when = plan.when
    if isinstance(when, Every):
        return now_ms - count * when.interval_ms - plan.jitter_ms
    assert isinstance(when, Cron)
    it = CronSim(when.expr, _dt(now_ms - plan.jitter_ms + 60_000, when), reverse=True)
    last: datetime | None = None
    for _ in range(count + 1):
        last = next(it, None)
        if last is None:
            return None
    return _ms(last) - 1 if last is not None else None
