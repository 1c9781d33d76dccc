"""Scanning shared among processes (issue 18 item 7): range leases, the due
read that wakes a scanner when known work comes due, and what an idle
scanner set costs a real server."""

from __future__ import annotations

import functools
import math
import time
import uuid
from collections.abc import Sequence

import anyio
import pytest
import redis
from private_redis import private_redis

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.roles import default_scanners, run_scanners
from flowfabric_worker.engine.runner import Candidate, Scanner, ScanRunner
from flowfabric_worker.engine.scan_leases import RangeLeases, lease_group
from flowfabric_worker.protocol.keys import ExecKeys, PartitionKeys
from flowfabric_worker.protocol.partitions import tag

pytestmark = pytest.mark.anyio


class Recorder:
    """Records what it handled and removes it from the index, as the real
    library functions do."""

    def __init__(self) -> None:
        self.seen: list[Candidate] = []
        self.at: dict[str, float] = {}
        self.got = anyio.Event()

    async def __call__(self, backend: Backend, found: Sequence[Candidate], now: int) -> int:
        for c in found:
            self.seen.append(c)
            self.at[c.member] = time.monotonic()
            await backend.redis.zrem(c.index, c.member)
        self.got.set()
        return len(found)


def _lease_scanner(rec: Recorder, interval: float = 30.0) -> Scanner:
    return Scanner("test_lease", interval, 50, lambda pk, _l: [pk.lease_expiry], rec)


def _leased(backend: Backend, runner: ScanRunner, group: str) -> RangeLeases:
    runner.leases = RangeLeases(backend, runner.ranges(), group=group, ttl=30.0)
    return runner.leases


async def test_two_runners_split_the_ranges_and_handle_each_member_once(url: str) -> None:
    group = uuid.uuid4().hex[:12]
    async with await Backend.open(url) as b1, await Backend.open(url) as b2:
        now = await b1.server_time_ms()
        for i in range(0, 256, 5):
            await b1.redis.zadd(PartitionKeys(tag("fp", i)).lease_expiry,
                                {f"due-{i}": now - 1000, f"later-{i}": now + 600_000})
        r1, r2 = Recorder(), Recorder()
        run1, run2 = ScanRunner(b1, [_lease_scanner(r1)]), ScanRunner(b2, [_lease_scanner(r2)])
        l1, l2 = _leased(b1, run1, group), _leased(b2, run2, group)
        assert len(await l1.keep()) == 8  # alone: every range
        await l2.keep()  # joins: its share (4) is all held by the first
        await l1.keep()  # gives back what exceeds its share
        await l2.keep()  # takes the freed ranges
        assert len(l1.held) == len(l2.held) == 4
        assert l1.held.isdisjoint(l2.held) and l1.held | l2.held == set(run1.ranges())
        async with anyio.create_task_group() as tg:
            tg.start_soon(run1.tick, run1.scanners[0])
            tg.start_soon(run2.tick, run2.scanners[0])
        members = [c.member for c in r1.seen + r2.seen]
        assert sorted(members) == sorted(f"due-{i}" for i in range(0, 256, 5))
        assert r1.seen and r2.seen
        # Each handled only members of the partitions it holds.
        for rec, leases in ((r1, l1), (r2, l2)):
            for c in rec.seen:
                p = int(c.member.split("-")[1])
                assert f"fp:{p // 32 * 32}-{p // 32 * 32 + 31}" in leases.held


async def test_a_third_member_gets_its_share_and_a_leaver_hands_back(url: str) -> None:
    group = uuid.uuid4().hex[:12]
    names = [f"fp:{i}-{i + 31}" for i in range(0, 256, 32)]
    async with await Backend.open(url) as b:
        ls = [RangeLeases(b, names, group=group, ttl=30.0) for _ in range(3)]
        for _ in range(3):
            for leases in ls:
                await leases.keep()
        held = [len(x.held) for x in ls]
        assert sorted(held) == [2, 3, 3], held  # ceil(8 / 3) at most each
        assert set().union(*(x.held for x in ls)) == set(names)
        await ls[0].leave()
        for leases in ls[1:]:
            await leases.keep()
        assert sorted(len(x.held) for x in ls[1:]) == [4, 4]
        assert ls[1].held | ls[2].held == set(names)


async def test_a_dead_members_ranges_are_taken_after_its_ttl(url: str) -> None:
    group = uuid.uuid4().hex[:12]
    names = [f"fp:{i}-{i + 31}" for i in range(0, 256, 32)]
    async with await Backend.open(url) as b:
        dead = RangeLeases(b, names, group=group, ttl=0.5)
        alive = RangeLeases(b, names, group=group, ttl=0.5)
        await dead.keep()
        await alive.keep()
        await dead.keep()
        await alive.keep()
        assert len(alive.held) == 4
        # `dead` stops renewing (a SIGKILL): within its TTL plus one keeper
        # cycle the survivor holds everything.
        with anyio.fail_after(10):
            while len(await alive.keep()) < len(names):  # noqa: ASYNC110 - a keeper cycle
                await anyio.sleep(alive.ttl / 3)
        # The dead member's own view lapses with its TTL too.
        assert not any(dead.holds(n) for n in names)


async def test_known_work_is_handled_when_due_not_at_the_next_interval(url: str) -> None:
    """A scanner with a 30 s interval finds an entry due in 1 s on its first
    pass: it wakes when the entry comes due instead of 30 s later."""
    async with await Backend.open(url) as backend:
        rec = Recorder()
        pk = PartitionKeys(tag("fp", 77))
        now = await backend.server_time_ms()
        await backend.redis.zadd(pk.lease_expiry, {"soon": now + 1000})
        stop = anyio.Event()
        started = time.monotonic()
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: run_scanners(
                    backend, stop=stop, scanners=[_lease_scanner(rec, interval=30.0)],
                    lease_ttl=30.0))
                await rec.got.wait()
                stop.set()
        assert [c.member for c in rec.seen] == ["soon"]
        # Not before it was due (server clock and ours agree to a few ms here).
        assert rec.at["soon"] - started >= 0.9


async def test_a_delayed_execution_is_promoted_with_the_default_intervals(url: str) -> None:
    from flowfabric_worker.authoring.decorators import task
    from flowfabric_worker.client.client import Client

    @task(name="scan_sharing.later", lane="scan-sharing")
    async def later() -> None:
        return None

    async with Client.connect(url) as client:
        stop = anyio.Event()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: run_scanners(
                    client.backend, stop=stop, lanes=["scan-sharing"]))
                run = await later.submit(client, delay=1.5)
                keys = ExecKeys(run.id)
                r = client.backend.redis
                assert await r.zscore(keys.lane_delayed("scan-sharing"), run.id) is not None
                while await r.zscore(keys.lane_eligible("scan-sharing"),  # noqa: ASYNC110
                                     run.id) is None:
                    await anyio.sleep(0.05)
                stop.set()
        assert await r.zscore(keys.lane_delayed("scan-sharing"), run.id) is None


def _commands(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items()
               if k not in ("cmdstat_info", "cmdstat_config|resetstat"))


async def _idle_rate(url: str, processes: int, rates: dict[int, float]) -> None:
    """Commands per second ``processes`` idle scanner sets send to ``url``."""
    r = redis.Redis.from_url(url)
    backends = [await Backend.open(url) for _ in range(processes)]
    try:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            for b in backends:
                tg.start_soon(functools.partial(run_scanners, b, stop=stop,
                                                lanes=["default"]))
            await anyio.sleep(3)  # every process joined, shares settled
            r.config_resetstat()
            start, t0 = _commands(r), time.monotonic()
            await anyio.sleep(6)
            rates[processes] = (_commands(r) - start) / (time.monotonic() - t0)
            stop.set()
    finally:
        for b in backends:
            await b.close()
        r.close()


async def test_idle_scanners_send_few_commands() -> None:
    """Idle, the default scanner set of one process (or of four sharing the
    ranges) sends a few commands a second, counted as ``INFO commandstats``
    does (commands run by scripts included). Before range leases it was ~41/s
    per process (one EXISTS per range per scanner tick, an SMEMBERS of the
    lanes per lane-scoped tick), N times that for N processes (~164/s for 4).
    Measured after: ~7.5/s for one process, ~29/s for four (each holding
    some ranges probes them; each keeps its leases).

    The two fleets, each on a server of its own, are measured at the same
    time: the figures are the servers' own counts, which the other fleet
    cannot change, and the test waits its 9 s once instead of twice."""
    rates: dict[int, float] = {}
    with private_redis() as one, private_redis() as four:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_idle_rate, one.url, 1, rates)
            tg.start_soon(_idle_rate, four.url, 4, rates)
    for processes, rate in sorted(rates.items()):
        print(f"{processes} scanning processes, idle: {rate:.1f} commands/s")
    assert sorted(rates) == [1, 4]
    for processes, rate in rates.items():
        assert rate <= 10 + 8 * (processes - 1), (processes, rate)


def test_each_scanner_set_has_its_own_lease_scope() -> None:
    names = [s.name for s in default_scanners()]
    assert lease_group(names) == lease_group(list(reversed(names)))
    assert lease_group(names) != lease_group(names[1:])
    assert math.ceil(8 / 3) == 3
