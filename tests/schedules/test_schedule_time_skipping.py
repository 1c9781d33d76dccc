"""Schedules under the time-skipping test environment: a schedule declared in
code is registered when the worker starts, and a daily job runs once a day
through a simulated week, each run seeing its schedule and tick in ctx."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import anyio
import pytest

from flowfabric_worker import Cron, TaskContext, task
from flowfabric_worker.errors import FlowFabricError
from flowfabric_worker.tasks.schedule_specs import ScheduleTick
from flowfabric_worker.testing import TestEnvironment

pytestmark = pytest.mark.anyio

seen: list[tuple[str, ScheduleTick | None]] = []


@task(name="tests.daily_report", schedule=Cron("0 6 * * *", tz="Europe/Paris"),
      schedule_args=("eu",))
async def daily_report(ctx: TaskContext, region: str) -> str:
    seen.append((region, ctx.schedule))
    return region


async def test_a_daily_job_runs_seven_times_in_a_simulated_week() -> None:
    seen.clear()
    async with TestEnvironment.start(tasks=[daily_report]) as env:
        handle = env.client.schedule_handle("tests.daily_report")
        with anyio.fail_after(30):
            while True:  # the worker registers it as it starts
                try:
                    info = await handle.info()
                    break
                except FlowFabricError:
                    await anyio.sleep(0.01)
        assert info.source == "code" and info.state == "active"
        await env.sleep(7 * 86400)
        info = await handle.info()
    assert len(seen) == 7
    paris = ZoneInfo("Europe/Paris")
    days = set()
    for region, sched in seen:
        assert region == "eu" and sched is not None
        assert sched.schedule_id == "tests.daily_report"
        local = sched.tick.astimezone(paris)
        assert (local.hour, local.minute) == (6, 0)
        days.add(local.date())
    assert len(days) == 7
    assert info.fired == 7
    assert isinstance(info.next_run, datetime)
