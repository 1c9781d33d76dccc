"""The scanner runner on both backends: due reads, slice leasing between
concurrent runners, and the run loop's stop handling."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.roles import run_scanners
from flowfabric_worker.engine.runner import Candidate, Scanner, ScanRunner
from flowfabric_worker.errors import ConfigurationError, TransportError
from flowfabric_worker.protocol.keys import LANES_INDEX, PartitionKeys
from flowfabric_worker.protocol.partitions import tag

pytestmark = pytest.mark.anyio


class Recorder:
    """A handler that records what it saw and removes it from the index, as
    the real library functions do for handled entries."""

    def __init__(self) -> None:
        self.seen: list[Candidate] = []
        self.got = anyio.Event()

    async def __call__(self, backend: Backend, found: Sequence[Candidate], now: int) -> int:
        self.seen.extend(found)
        self.got.set()
        for c in found:
            await backend.redis.zrem(c.index, c.member)
        return len(found)


def _scanner(rec: Recorder, *, per_lane: bool = False, interval: float = 0.2) -> Scanner:
    if per_lane:
        return Scanner("test_delayed", interval, 50,
                       lambda pk, lane: [pk.lane_delayed(lane or "")], rec, per_lane=True)
    return Scanner("test_lease", interval, 50, lambda pk, _l: [pk.lease_expiry], rec)


async def _seed(backend: Backend, now: int) -> None:
    for i in range(0, 256, 5):
        pk = PartitionKeys(tag("fp", i))
        await backend.redis.zadd(
            pk.lease_expiry, {f"due-{i}": now - 1000, f"later-{i}": now + 60_000}
        )


async def test_tick_reads_only_due_members_of_every_partition(url: str) -> None:
    async with await Backend.open(url) as backend:
        now = await backend.server_time_ms()
        await _seed(backend, now)
        rec = Recorder()
        runner = ScanRunner(backend, [_scanner(rec)])
        assert await runner.tick(runner.scanners[0]) == len(range(0, 256, 5))
        assert {c.member for c in rec.seen} == {f"due-{i}" for i in range(0, 256, 5)}
        assert all(c.tag == tag("fp", int(c.member.split("-")[1])) for c in rec.seen)
        # Not-yet-due members stay for a later tick.
        assert await backend.redis.zcard(PartitionKeys(tag("fp", 0)).lease_expiry) == 1


async def test_batch_bounds_one_tick(url: str) -> None:
    async with await Backend.open(url) as backend:
        now = await backend.server_time_ms()
        pk = PartitionKeys(tag("fp", 3))
        await backend.redis.zadd(pk.lease_expiry, {f"e{i}": now - 10 for i in range(120)})
        rec = Recorder()
        runner = ScanRunner(backend, [_scanner(rec)])
        assert await runner.tick(runner.scanners[0]) == 50


async def test_lane_scoped_scanner_visits_configured_and_registered_lanes(url: str) -> None:
    async with await Backend.open(url) as backend:
        now = await backend.server_time_ms()
        await backend.redis.sadd(LANES_INDEX, "registered")
        pk = PartitionKeys(tag("fp", 9))
        for lane in ("configured", "registered", "unknown"):
            await backend.redis.zadd(pk.lane_delayed(lane), {f"x-{lane}": now - 1})
        rec = Recorder()
        runner = ScanRunner(backend, [_scanner(rec, per_lane=True)], lanes=["configured"])
        await runner.tick(runner.scanners[0])
        assert sorted((c.lane, c.member) for c in rec.seen) == [
            ("configured", "x-configured"), ("registered", "x-registered")]


async def test_back_to_back_ticks_each_find_what_became_due(url: str) -> None:
    """No per-tick slice lock any more (it held a slice for one interval, so
    a slice was scanned about every second interval): sharing is by range
    leases (test_scan_sharing.py), and a holder scans its ranges every tick."""
    async with await Backend.open(url) as backend:
        rec = Recorder()
        runner = ScanRunner(backend, [_scanner(rec, interval=30)])
        pk = PartitionKeys(tag("fp", 40))
        for round_ in range(3):
            now = await backend.server_time_ms()
            await backend.redis.zadd(pk.lease_expiry, {f"r{round_}": now - 1})
            assert await runner.tick(runner.scanners[0]) == 1
        assert [c.member for c in rec.seen] == ["r0", "r1", "r2"]


async def test_run_scanners_processes_new_work_and_stops(url: str) -> None:
    async with await Backend.open(url) as backend:
        rec = Recorder()
        stop = anyio.Event()
        pk = PartitionKeys(tag("fp", 200))
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: run_scanners(
                    backend, stop=stop, scanners=[_scanner(rec, interval=0.1)]))
                now = await backend.server_time_ms()
                await backend.redis.zadd(pk.lease_expiry, {"late": now - 1})
                await rec.got.wait()
                stop.set()
        assert [c.member for c in rec.seen] == ["late"]


async def test_a_failing_cycle_does_not_kill_the_loop(url: str) -> None:
    async with await Backend.open(url) as backend:
        calls = 0
        twice = anyio.Event()

        async def flaky(b: Backend, found: Sequence[Candidate], now: int) -> int:
            nonlocal calls
            calls += 1
            if calls >= 2:
                twice.set()
            raise RuntimeError("boom")

        pk = PartitionKeys(tag("fp", 1))
        now = await backend.server_time_ms()
        await backend.redis.zadd(pk.lease_expiry, {"x": now - 1})
        flaky_scanner = Scanner("flaky", 0.1, 10, lambda p, _l: [p.lease_expiry], flaky)
        runner = ScanRunner(backend, [flaky_scanner])
        stop = anyio.Event()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner.run, stop)
                await twice.wait()
                stop.set()
        assert calls >= 2


async def test_a_disabled_scanner_does_not_run_and_unknown_names_are_refused(url: str) -> None:
    async with await Backend.open(url) as backend:
        kept, dropped = Recorder(), Recorder()
        pk = PartitionKeys(tag("fp", 7))
        now = await backend.server_time_ms()
        await backend.redis.zadd(pk.lease_expiry, {"due": now - 1})
        await backend.redis.zadd(pk.lane_delayed("default"), {"due": now - 1})
        stop = anyio.Event()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: run_scanners(
                    backend, stop=stop, lanes=["default"], disabled=["test_delayed"],
                    scanners=[_scanner(kept, interval=0.1),
                              _scanner(dropped, per_lane=True, interval=0.1)]))
                await kept.got.wait()
                await anyio.sleep(0.3)
                stop.set()
        assert [c.member for c in kept.seen] == ["due"]
        assert dropped.seen == []
        with pytest.raises(ConfigurationError, match="no_such_scanner"):
            await run_scanners(backend, stop=stop, disabled=["no_such_scanner"])


@pytest.mark.parametrize("failure", ["transport", "bug"])
async def test_a_lost_server_is_one_warning_line_and_a_bug_a_traceback(
        url: str, failure: str, caplog: pytest.LogCaptureFixture) -> None:
    async with await Backend.open(url) as backend:
        failed = anyio.Event()

        async def handle(b: Backend, found: Sequence[Candidate], now: int) -> int:
            failed.set()
            if failure == "transport":
                raise TransportError("pipeline on redis://x: Connection closed by server.",
                                     sent=True)
            raise RuntimeError("boom")

        pk = PartitionKeys(tag("fp", 1))
        await backend.redis.zadd(pk.lease_expiry, {"x": await backend.server_time_ms() - 1})
        runner = ScanRunner(backend, [Scanner("failing", 0.1, 10,
                                              lambda p, _l: [p.lease_expiry], handle)])
        stop = anyio.Event()
        with caplog.at_level("INFO", logger="flowfabric_worker.scanners"), anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner.run, stop)
                await failed.wait()
                stop.set()
    (record,) = [r for r in caplog.records if "cycle failed" in r.getMessage()]
    if failure == "transport":
        assert record.levelname == "WARNING" and record.exc_info is None
        assert "Connection closed by server" in record.getMessage()
    else:
        assert record.levelname == "ERROR" and record.exc_info is not None
