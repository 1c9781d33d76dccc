"""What a clock step runs: the time skipper reads which index keys exist and
their heads, and after moving the clock runs only the scanners with
something due then, each on the keys that hold it (not a pass of every
scanner over every partition, which made a simulated week take a second).
Pinned here: which scanner a key belongs to, that a retry and a schedule
due in the same step both fire from one kick, that a kick with nothing due
runs no scanner, and that a simulated week of a daily job runs the
scheduler and nothing it has no work for."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from flowfabric_worker import Every, Retry, task
from flowfabric_worker.engine.roles import default_scanners
from flowfabric_worker.errors import FlowFabricError
from flowfabric_worker.protocol.keys import PartitionKeys
from flowfabric_worker.testing import TestEnvironment
from flowfabric_worker.testing.scanned_keys import ScannedKeys
from flowfabric_worker.testing.skipper import Survey, TimeSkipper

pytestmark = pytest.mark.anyio

LANE = "kicks"
TRIED: list[int] = []


@task(name="kick.flaky_once", lane=LANE, retry=Retry(max_attempts=2, initial=60.0))
async def flaky_once(n: int) -> int:
    TRIED.append(n)
    if len(TRIED) == 1:
        raise RuntimeError("first attempt fails")
    return n * 2


@task(name="kick.hourly", lane=LANE, schedule=Every(hours=1))
async def hourly() -> str:
    return "tick"


@task(name="kick.daily", lane=LANE, schedule=Every(days=1))
async def daily() -> str:
    return "day"


def test_every_scanner_key_maps_back_to_its_scanners_tag_and_lane() -> None:
    scanners = default_scanners()
    keys = ScannedKeys(scanners)
    for scanner in scanners:
        for index in (0, 7, 255):
            tag = f"{{{scanner.family}:{index}}}"
            lane = "team:a" if scanner.per_lane else None  # a lane may hold colons
            for key in scanner.indexes(PartitionKeys(tag), lane):
                owner = keys.owner(key)
                assert owner is not None, key
                assert scanner in owner.scanners and owner.tag == tag and owner.lane == lane
    # Keys no scanner reads: the busy sets, the lane registry, a worker's leases.
    pk = PartitionKeys("{fp:3}")
    for key in (pk.lane_eligible("x"), pk.lane_active("x"), "ff:idx:lanes",
                pk.worker_leases("w1"), pk.all_executions):
        assert keys.owner(key) is None, key
    assert all(p.endswith("*") for p in keys.scan_patterns)


async def _registered(env: TestEnvironment, name: str) -> None:
    handle = env.client.schedule_handle(name)
    with anyio.fail_after(30):
        while True:  # the worker registers it as it starts
            try:
                await handle.info()
                return
            except FlowFabricError:
                await anyio.sleep(0.01)


def _timer(look: Survey, marker: str) -> int:
    (score,) = [s for k, s in look.heads.items() if marker in k]
    return score


async def test_a_retry_and_a_schedule_due_in_one_step_both_fire() -> None:
    TRIED.clear()
    async with TestEnvironment.start(tasks=[flaky_once, hourly]) as env:
        skipper = env.skipper
        assert isinstance(skipper, TimeSkipper)
        await _registered(env, "kick.hourly")
        run = await flaky_once.submit(env.client, 21)
        await run.wait_for("delayed", timeout=30)  # the retry's backoff
        look = await skipper.settle()
        before = Counter(skipper.passes)
        await skipper.kick(look)  # nothing is due yet
        assert skipper.passes == before
        # Step once to where both the retry and the next tick are due.
        target = max(_timer(look, f":lane:{LANE}:delayed"), _timer(look, "ffw:sched:"))
        await skipper.step_to(target, look)
        ran = skipper.passes - before
        assert ran == Counter({"delayed_promoter": 1, "schedules": 1})
        assert await env.result(run, timeout=30) == 42
        await env.assert_attempts(run, 2)
        handle = env.client.schedule_handle("kick.hourly")
        with anyio.fail_after(30):
            while True:  # the tick's run is created by the kick, read back here
                info = await handle.info()
                if info.fired >= 1:
                    break
                await anyio.sleep(0.01)
        assert info.last_execution_id is not None
        assert await env.result(env.client.run(info.last_execution_id), timeout=30) == "tick"


async def test_a_simulated_week_kicks_only_the_scanners_with_work() -> None:
    async with TestEnvironment.start(tasks=[daily]) as env:
        skipper = env.skipper
        assert isinstance(skipper, TimeSkipper)
        await _registered(env, "kick.daily")
        await env.sleep(7 * 86400)
        info = await env.client.schedule_handle("kick.daily").info()
    assert info.fired == 7
    assert skipper.passes["schedules"] >= 7
    # Each day's run ends before the next step; a day later its terminal
    # entry is due for the retention trimmer. Nothing else had work.
    assert set(skipper.passes) <= {"schedules", "retention_trimmer"}, skipper.passes
