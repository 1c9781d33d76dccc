"""The scanners' pacing (runner.LOOP_SHARE): after a pass, a scanner waits a
multiple of the CPU time *that pass* spent on the event loop, so scanners
stay within their share of the loop, and other work on the loop does not
push a scanner's next pass out (both backends)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.cpu_meter import Metered
from flowfabric_worker.engine.runner import Candidate, Scanner, ScanRunner
from flowfabric_worker.protocol.keys import PartitionKeys
from flowfabric_worker.protocol.partitions import tag

pytestmark = pytest.mark.anyio


def _burn(seconds: float) -> None:
    """Hold the event loop for ``seconds`` of this thread's CPU time (CPU, not
    wall time: a busy box stretches the wall time, not what is measured)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _idle(name: str, interval: float = 0.1) -> Scanner:
    async def never(b: Backend, found: Sequence[Candidate], now: int) -> int:
        return 0
    return Scanner(name, interval, 50,
                   lambda pk, _l: [f"ff:idx:{pk.tag}:pacing_test_{name}"], never)


async def _stays_due(backend: Backend, partition: int) -> None:
    """One lease_expiry entry due now that the handlers leave in place, so
    every pass of a scanner reading that index finds it."""
    pk = PartitionKeys(tag("fp", partition))
    await backend.redis.zadd(pk.lease_expiry, {"stays": await backend.server_time_ms() - 1})


async def _run_until(runner: ScanRunner, done: anyio.Event, limit: float) -> None:
    """Run ``runner``'s scanners until ``done`` is set (within ``limit`` s)."""
    stop = anyio.Event()
    with anyio.fail_after(limit):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, stop)
            await done.wait()
            stop.set()


async def test_other_work_on_the_loop_does_not_delay_the_next_pass(url: str) -> None:
    """Seen in CI: a worker starting on a busy box kept the loop busy while the
    0.1 s suspension-timeout scanner waited for a reply; its pass was charged
    that CPU, times a pace of 67 (17 scanners), and the timeout fired >10 s
    late. The pause must follow what the pass itself cost."""
    async with await Backend.open(url) as backend:
        seen = anyio.Event()

        async def handle(b: Backend, found: Sequence[Candidate], now: int) -> int:
            seen.set()
            await b.redis.zrem(found[0].index, *(c.member for c in found))
            return len(found)

        watched = Scanner("watched", 0.1, 50, lambda pk, _l: [pk.lease_expiry], handle)
        runner = ScanRunner(backend, [watched, *(_idle(f"idle{i}") for i in range(16))])
        assert runner.pace >= 60
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, stop)
            # Other tasks hold the loop while the passes wait for replies.
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
                _burn(0.2)
            await anyio.lowlevel.checkpoint()
            pk = PartitionKeys(tag("fp", 17))
            await backend.redis.zadd(pk.lease_expiry, {"due": await backend.server_time_ms()})
            with anyio.fail_after(5):  # interval 0.1 s; charged 0.2 s × 67 it was 13 s
                await seen.wait()
            stop.set()
        assert runner.pause["watched"] < 1.0, runner.pause


async def test_a_scanner_that_keeps_holding_the_loop_is_spaced_by_its_cost(url: str) -> None:
    """The pacing itself: a scanner whose passes burn 50 ms of CPU each waits
    at least pace × 50 ms after its second such pass (one heavy pass is an
    outlier, see below); a cheap scanner beside it keeps its interval."""
    async with await Backend.open(url) as backend:
        at: list[float] = []
        thrice = anyio.Event()

        async def heavy(b: Backend, found: Sequence[Candidate], now: int) -> int:
            at.append(anyio.current_time())
            _burn(0.05)  # the entry stays due: every pass finds it
            if len(at) >= 3:
                thrice.set()
            return len(found)

        await _stays_due(backend, 3)
        runner = ScanRunner(backend, [
            Scanner("heavy", 0.1, 50, lambda p, _l: [p.lease_expiry], heavy),
            *(_idle(f"idle{i}") for i in range(3))])
        assert runner.pace == 15  # 4 scanners, a quarter of the loop
        await _run_until(runner, thrice, 20)
        assert at[2] - at[1] >= 0.7  # 15 × 50 ms after the second pass
        assert runner.pause["heavy"] >= 0.7
        assert all(runner.pause[f"idle{i}"] < 0.5 for i in range(3)), runner.pause


async def test_one_costly_pass_does_not_pause_a_scanner(url: str) -> None:
    """A single outlier — a garbage collection that lands in a pass, the first
    pass building its key lists — is not the scanner's cost: charged alone,
    0.2 s × a pace of 67 was a 13 s pause (seen in CI on Valkey: 5.9 s)."""
    async with await Backend.open(url) as backend:
        at: list[float] = []
        again = anyio.Event()

        async def once_heavy(b: Backend, found: Sequence[Candidate], now: int) -> int:
            at.append(anyio.current_time())
            if len(at) == 1:
                _burn(0.2)
            else:
                again.set()
            return len(found)

        await _stays_due(backend, 5)
        runner = ScanRunner(backend, [
            Scanner("spike", 0.1, 50, lambda p, _l: [p.lease_expiry], once_heavy),
            *(_idle(f"idle{i}") for i in range(16))])
        await _run_until(runner, again, 5)
        assert at[1] - at[0] < 2.0


async def test_the_meter_counts_the_coroutines_own_steps_only() -> None:
    """Metered: the value and errors pass through, cancellation reaches the
    coroutine (its cleanup runs), and another task's turn while it waits is
    not its cost."""
    cleaned = False

    async def work() -> str:
        nonlocal cleaned
        _burn(0.03)
        try:
            await anyio.sleep(0.05)  # another task burns meanwhile
            _burn(0.03)
            await anyio.sleep(30)
        finally:
            cleaned = True
        return "never"

    async def other() -> None:
        await anyio.sleep(0.01)
        _burn(0.2)

    metered = Metered(work())
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        with anyio.move_on_after(1):
            await metered
    assert cleaned
    assert 0.06 <= metered.cpu < 0.15, metered.cpu

    async def fails() -> None:
        await anyio.lowlevel.checkpoint()
        raise KeyError("x")

    async def value() -> int:
        await anyio.lowlevel.checkpoint()
        return 7

    with pytest.raises(KeyError):
        await Metered(fails())
    assert await Metered(value()) == 7
