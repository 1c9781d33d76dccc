"""Time skipping: move the virtual clock to the next timer whenever nothing
can run until it fires.

The environment is *idle* when no execution is eligible in a lane its
worker serves and none is active (leased), and it stays so over a few
looks in a row (a completion may still be on its way to a waiting parent).
Then the earliest *timer* of the library's indexes says when the next thing
happens: a delayed execution or a retry becomes eligible (the lane's
``delayed`` set), a suspension or signal wait times out
(``suspension_timeout``; ``ctx.sleep`` is one), a pending waitpoint expires,
a deadline, an attempt timeout or a lease runs out. The skipper moves the
clock there and runs one pass of every scanner at once — so what came due
is handled now, not at the scanners' next real-time tick — then wakes the
worker's lanes.

Skipping is *unlocked* only while someone waits for time to pass (a test
awaiting a result, :meth:`TimeSkipper.sleep`): between two steps of a test
(a run suspends, the test sends it a signal) the clock moves only with real
time, so a wait the test is about to answer does not time out under it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.roles import default_scanners
from flowfabric_worker.engine.runner import ScanRunner
from flowfabric_worker.protocol.keys import WAKE_CHANNEL
from flowfabric_worker.testing.clock import VirtualClock

__all__ = ["Survey", "TimeSkipper"]

log = logging.getLogger("flowfabric_worker.testing")

#: Index suffixes whose scores are times at which something happens.
TIMER_INDEXES = ("delayed", "suspension_timeout", "pending_waitpoint_expiry",
                 "execution_deadline", "attempt_timeout", "lease_expiry")

#: Looks in a row that must find the environment idle before the clock moves,
#: and the real time between two looks.
QUIET_LOOKS = 3
LOOK_INTERVAL = 0.005


@dataclass(frozen=True, slots=True)
class Survey:
    """One look at the indexes: whether anything can run now, whether a
    timer is already due (the scanners have not handled it yet) and when
    the earliest future timer fires (epoch ms; None: no timer)."""

    busy: bool
    due_now: bool
    next_due_ms: int | None


def _lane_of(key: str) -> str | None:
    """``ff:idx:{fp:N}:lane:LANE:eligible`` -> ``LANE``."""
    head, sep, rest = key.partition(":lane:")
    return rest.rsplit(":", 1)[0] if sep and head.startswith("ff:idx:") else None


class TimeSkipper:
    """Moves ``clock`` ahead when the environment on ``backend`` is idle."""

    def __init__(self, backend: Backend, clock: VirtualClock, lanes: Sequence[str]) -> None:
        self.backend = backend
        self.clock = clock
        self.lanes = list(lanes)
        self._served = set(self.lanes)
        self._waiters = 0
        self._runner = ScanRunner(backend, default_scanners(), lanes=self.lanes)
        #: Seconds the clock was moved, in total (what tests and docs report).
        self.skipped = 0.0

    @asynccontextmanager
    async def unlocked(self) -> AsyncIterator[None]:
        """Skip time while inside (a test waiting for a result)."""
        self._waiters += 1
        try:
            yield
        finally:
            self._waiters -= 1

    async def survey(self) -> Survey:
        """Read the lane and timer indexes once."""
        redis = self.backend.redis
        busy_keys: list[str] = []
        timer_keys: list[str] = []
        async for raw in redis.scan_iter(match="ff:idx:*", count=1000):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            suffix = key.rsplit(":", 1)[-1]
            if suffix in ("eligible", "active"):
                if suffix == "active" or _lane_of(key) in self._served:
                    busy_keys.append(key)
            elif suffix in TIMER_INDEXES:
                timer_keys.append(key)
        pipe = redis.pipeline(transaction=False)
        for key in busy_keys:
            pipe.zcard(key)
        for key in timer_keys:
            pipe.zrange(key, 0, 0, withscores=True)
        replies = await pipe.execute() if busy_keys or timer_keys else []
        busy = any(int(n) for n in replies[:len(busy_keys)])
        now = self.clock.now_ms()
        due_now, next_due = False, None
        for head in replies[len(busy_keys):]:
            if not head:
                continue
            score = int(head[0][1])
            if score <= now:
                due_now = True
            elif next_due is None or score < next_due:
                next_due = score
        return Survey(busy=busy, due_now=due_now, next_due_ms=next_due)

    async def kick(self) -> None:
        """One pass of every scanner now, then wake the worker's lanes."""
        for scanner in self._runner.scanners:
            try:
                await self._runner.tick(scanner)
            except Exception as exc:  # a scanner's own loop logs and retries too
                log.warning("time skipping: scanner %s failed: %s", scanner.name, exc)
        for lane in self.lanes:
            await self.backend.redis.publish(WAKE_CHANNEL.format(lane=lane), b"1")

    async def settle(self) -> Survey:
        """Wait until the environment is idle, handling timers already due
        (one scanner pass; an entry still due after it is stale and left to
        the scanners), and return the idle survey."""
        quiet = 0
        kicked = False
        while True:
            look = await self.survey()
            if look.busy:
                quiet, kicked = 0, False
            elif look.due_now and not kicked:
                await self.kick()
                quiet, kicked = 0, True
                continue
            else:
                quiet += 1
                if quiet >= QUIET_LOOKS:
                    return look
            await anyio.sleep(LOOK_INTERVAL)

    async def step_to(self, when_ms: int) -> None:
        """Move the clock to ``when_ms`` (if ahead) and handle what came due."""
        self.skipped += self.clock.advance_to_ms(when_ms)
        await self.kick()

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, timer by timer: every timer
        within them fires at its own time, in order, and what it starts runs
        before the clock moves on."""
        target = self.clock.now_ms() + int(seconds * 1000)
        async with self.unlocked():
            while True:
                look = await self.settle()
                if look.next_due_ms is None or look.next_due_ms > target:
                    break
                await self.step_to(look.next_due_ms)
            await self.step_to(target)
            await self.settle()

    async def run(self) -> None:
        """Skip while unlocked, until cancelled."""
        while True:
            if not self._waiters:
                await anyio.sleep(0.01)
                continue
            look = await self.settle()
            if self._waiters and look.next_due_ms is not None:
                await self.step_to(look.next_due_ms)
            else:
                await anyio.sleep(0.01)
