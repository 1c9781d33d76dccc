"""Tick math, pure: cron in time zones across daylight-saving nights, Every
alignment, start/end, deterministic jitter, bounded catch-up walks."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.tasks.schedule_specs import Cron, Every, TimePlan
from flowfabric_worker.tasks.schedule_ticks import (
    due_ticks,
    fire_at,
    jitter_offset,
    tick_after,
    ticks_after,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def local(ticks: list[int], zone: ZoneInfo) -> list[str]:
    return [datetime.fromtimestamp(t / 1000, UTC).astimezone(zone).isoformat() for t in ticks]


def run(expr: str, zone: ZoneInfo, start: datetime, n: int) -> list[str]:
    plan = TimePlan(Cron(expr, tz=str(zone)))
    return local(list(islice(ticks_after(plan, ms(start)), n)), zone)


def test_paris_spring_forward_skipped_time_runs_once_after_the_jump() -> None:
    # 2026-03-29: 02:00 -> 03:00 in Paris; 02:30 does not exist that night.
    assert run("30 2 * * *", PARIS, datetime(2026, 3, 28, 12, tzinfo=PARIS), 3) == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00"]


def test_paris_fall_back_repeated_time_runs_once_on_its_first_pass() -> None:
    # 2026-10-25: 03:00 -> 02:00 in Paris; 02:30 happens twice.
    assert run("30 2 * * *", PARIS, datetime(2026, 10, 24, 12, tzinfo=PARIS), 3) == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00"]


def test_new_york_0130_on_the_repeated_night_runs_once() -> None:
    assert run("30 1 * * *", NEW_YORK, datetime(2026, 10, 31, 12, tzinfo=NEW_YORK), 3) == [
        "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00"]


def test_new_york_0230_on_the_spring_forward_night_runs_at_0300() -> None:
    assert run("30 2 * * *", NEW_YORK, datetime(2026, 3, 7, 12, tzinfo=NEW_YORK), 2) == [
        "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]


def test_stepped_hours_tick_at_every_real_instant_of_the_repeated_hour() -> None:
    got = run("*/30 * * * *", PARIS, datetime(2026, 10, 25, 1, 50, tzinfo=PARIS), 4)
    assert got == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
                   "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00"]


def test_weekday_cron_in_paris() -> None:
    # Friday 2026-12-04 10:00 Paris -> Monday 09:00, Tuesday 09:00.
    assert run("0 9 * * MON-FRI", PARIS, datetime(2026, 12, 4, 10, tzinfo=PARIS), 2) == [
        "2026-12-07T09:00:00+01:00", "2026-12-08T09:00:00+01:00"]


def test_due_walk_is_consistent_with_tick_after_across_dst() -> None:
    plan = TimePlan(Cron("30 2 * * *", tz="Europe/Paris"))
    first = tick_after(plan, ms(datetime(2026, 10, 20, tzinfo=PARIS)))
    assert first is not None
    due = due_ticks(plan, "s", first, ms(datetime(2026, 10, 30, tzinfo=PARIS)), 100)
    assert len(due.ticks) == 10 and len(set(due.ticks)) == 10
    assert due.ticks == list(islice(ticks_after(plan, first - 1), 10))


def test_every_aligns_on_the_epoch_or_start_at() -> None:
    plan = TimePlan(Every(minutes=5))
    assert tick_after(plan, 1_000) == 300_000
    assert tick_after(plan, 300_000) == 600_000
    started = TimePlan(Every(seconds=10), start_ms=1_234)
    assert tick_after(started, 0) == 1_234
    assert tick_after(started, 1_234) == 11_234


def test_end_at_ends_the_plan() -> None:
    plan = TimePlan(Every(seconds=10), start_ms=0, end_ms=25_000)
    assert list(ticks_after(plan, -1)) == [0, 10_000, 20_000]
    assert tick_after(plan, 20_000) is None


def test_jitter_is_deterministic_and_bounded() -> None:
    offsets = {jitter_offset("sched", t, 5_000) for t in range(0, 10_000_000, 60_000)}
    assert all(0 <= o < 5_000 for o in offsets) and len(offsets) > 50
    assert jitter_offset("sched", 60_000, 5_000) == jitter_offset("sched", 60_000, 5_000)
    plan = TimePlan(Every(minutes=1), jitter_ms=5_000)
    assert fire_at(plan, "a", 60_000) - 60_000 == jitter_offset("a", 60_000, 5_000)


def test_a_long_gap_is_walked_in_bounded_steps() -> None:
    every = TimePlan(Every(seconds=1))
    due = due_ticks(every, "s", 1_000, 10 ** 12, 3)  # ~31 years of seconds
    assert due.ticks == [10 ** 12 - 2_000, 10 ** 12 - 1_000, 10 ** 12]
    assert due.next == 10 ** 12 + 1_000 and due.dropped > 0
    cron = TimePlan(Cron("* * * * *"))
    now = ms(datetime(2026, 6, 1, tzinfo=UTC))
    due = due_ticks(cron, "s", ms(datetime(2020, 1, 1, tzinfo=UTC)), now, 2)
    assert due.ticks == [now - 60_000, now]


@pytest.mark.parametrize("bad", [
    lambda: Cron("not a cron"), lambda: Cron("61 * * * *"), lambda: Cron("* * * * *", tz="Mars/X"),
    lambda: Every(seconds=0.5), lambda: Every(), lambda: TimePlan(Every(seconds=5), jitter_ms=5000),
    lambda: TimePlan(Every(seconds=5), start_ms=10, end_ms=5),
])
def test_bad_plans_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput):
        bad()  # type: ignore[operator]


def test_declared_schedules_are_checked_when_declared() -> None:
    from flowfabric_worker import DeclaredSchedule, task

    with pytest.raises(InvalidInput):
        task(schedule=DeclaredSchedule(Every(seconds=10), jitter=10))
    with pytest.raises(InvalidInput):
        task(schedule=DeclaredSchedule(Every(seconds=10), overlap="never"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        task(schedule=Every(seconds=10), schedule_args=["no"])  # type: ignore[call-overload]
