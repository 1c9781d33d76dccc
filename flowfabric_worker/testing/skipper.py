"""Time skipping: move the virtual clock to the next timer whenever nothing
can run until it fires.

The environment is *idle* when no execution is eligible in a lane its
worker serves and none is active (leased), and it stays so over a few
looks in a row (a completion may still be on its way to a waiting parent).
Then the earliest *timer* of the library's indexes says when the next thing
happens: a delayed execution or a retry becomes eligible (the lane's
``delayed`` set), a recurring schedule's next tick fires, a suspension or signal wait times out
(``suspension_timeout``; ``ctx.sleep`` is one), a pending waitpoint expires,
a deadline, an attempt timeout or a lease runs out. The skipper moves the
clock there and handles at once what came due — not at the scanners' next
real-time tick — then wakes the worker's lanes.

Handling it is cheap: the look that found the next timer read the head of
every index key that exists (:mod:`.scanned_keys` says which scanner reads
which key), so after the step the skipper runs only the scanners with
something due at the new time, each on the keys that hold it, plus those
whose (unscored) sets exist — not a pass of every scanner over every
partition and lane. The worker's own scanners keep running meanwhile, on
real time, and catch anything written after the look.

Skipping is *unlocked* only while someone waits for time to pass (a test
awaiting a result, :meth:`TimeSkipper.sleep`): between two steps of a test
(a run suspends, the test sends it a signal) the clock moves only with real
time, so a wait the test is about to answer does not time out under it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.roles import default_scanners
from flowfabric_worker.engine.runner import Candidate, Scanner, ScanRunner
from flowfabric_worker.protocol.keys import WAKE_CHANNEL
from flowfabric_worker.testing.clock import VirtualClock
from flowfabric_worker.testing.scanned_keys import KeyOwner, ScannedKeys

__all__ = ["Survey", "TimeSkipper"]

log = logging.getLogger("flowfabric_worker.testing")

#: Scanners whose index scores are times at which something happens: the
#: timers the clock moves to. (The retention trimmer's scores are 24 h
#: early, the budget and cancel ones are not waited for: the skipper
#: handles them when due but does not move the clock for them.)
TIMER_SCANNERS = frozenset({
    "delayed_promoter", "suspension_timeout", "pending_wp_expiry", "execution_deadline",
    "attempt_timeout", "lease_expiry", "schedules"})

#: Looks in a row that must find the environment idle before the clock moves,
#: and the real time between two looks.
QUIET_LOOKS = 3
LOOK_INTERVAL = 0.005


@dataclass(frozen=True, slots=True)
class Survey:
    """One look at the indexes: whether anything can run now, whether a
    timer is already due (the scanners have not handled it yet) and when
    the earliest future timer fires (epoch ms; None: no timer); with the
    head score of every scored index key a scanner reads (``heads``) and
    the unscored ones that exist (``sets``), what :meth:`TimeSkipper.kick`
    runs the scanners on."""

    busy: bool
    due_now: bool
    next_due_ms: int | None
    heads: Mapping[str, int] = field(default_factory=dict)
    sets: tuple[str, ...] = ()


def _lane_of(key: str) -> str | None:
    """``ff:idx:{fp:N}:lane:LANE:eligible`` -> ``LANE``."""
    head, sep, rest = key.partition(":lane:")
    return rest.rsplit(":", 1)[0] if sep and head.startswith("ff:idx:") else None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class TimeSkipper:
    """Moves ``clock`` ahead when the environment on ``backend`` is idle."""

    def __init__(self, backend: Backend, clock: VirtualClock, lanes: Sequence[str]) -> None:
        self.backend = backend
        self.clock = clock
        self.lanes = list(lanes)
        self._served = set(self.lanes)
        self._waiters = 0
        # sleep() steps the clock itself, bounded by its target: run() must
        # not step past it meanwhile (a recurring schedule is always a timer).
        self._sleeping = 0
        self._runner = ScanRunner(backend, default_scanners(), lanes=self.lanes)
        self._keys = ScannedKeys(self._runner.scanners)
        #: Seconds the clock was moved, in total (what tests and docs report).
        self.skipped = 0.0
        #: Passes each scanner made in kicks, by name (what a kick ran).
        self.passes: Counter[str] = Counter()

    @asynccontextmanager
    async def unlocked(self) -> AsyncIterator[None]:
        """Skip time while inside (a test waiting for a result)."""
        self._waiters += 1
        try:
            yield
        finally:
            self._waiters -= 1

    async def survey(self) -> Survey:
        """Read the lane and scanner indexes once: the keys that exist (one
        ``SCAN`` pass), then every busy set's size and every scored index's
        head in one round trip."""
        redis = self.backend.redis
        busy_keys: list[str] = []
        head_keys: list[str] = []
        set_keys: list[str] = []
        for pattern in self._keys.scan_patterns:
            async for raw in redis.scan_iter(match=pattern, count=1000):
                key = _text(raw)
                suffix = key.rsplit(":", 1)[-1]
                if suffix in ("eligible", "active"):
                    if suffix == "active" or _lane_of(key) in self._served:
                        busy_keys.append(key)
                    continue
                owner = self._keys.owner(key)
                if owner is not None:
                    (head_keys if owner.sorted else set_keys).append(key)
        pipe = redis.pipeline(transaction=False)
        for key in busy_keys:
            pipe.zcard(key)
        for key in head_keys:
            pipe.zrange(key, 0, 0, withscores=True)
        replies = await pipe.execute() if busy_keys or head_keys else []
        busy = any(int(n) for n in replies[:len(busy_keys)])
        now = self.clock.now_ms()
        due_now, next_due = False, None
        heads: dict[str, int] = {}
        for key, head in zip(head_keys, replies[len(busy_keys):], strict=True):
            if not head:
                continue  # emptied since the SCAN
            score = heads[key] = int(head[0][1])
            owner = self._keys.owner(key)
            if owner is None or not any(s.name in TIMER_SCANNERS for s in owner.scanners):
                continue
            if score <= now:
                due_now = True
            elif next_due is None or score < next_due:
                next_due = score
        return Survey(busy=busy, due_now=due_now, next_due_ms=next_due, heads=heads,
                      sets=tuple(set_keys))

    async def kick(self, look: Survey) -> None:
        """Handle what is due now by ``look``'s reading: each scanner with a
        scored key whose head is due, on those keys, and each scanner of the
        unscored sets that exist (one pass); then wake the worker's lanes."""
        now = self.clock.now_ms()
        due: dict[str, list[tuple[str, KeyOwner]]] = {}
        whole: set[str] = set()
        for key, score in look.heads.items():
            owner = self._keys.owner(key)
            for scanner in owner.scanners if owner is not None else ():
                if owner is not None and score <= now - scanner.lag_ms:
                    due.setdefault(scanner.name, []).append((key, owner))
        for key in look.sets:
            owner = self._keys.owner(key)
            whole.update(s.name for s in (owner.scanners if owner is not None else ()))
        # In catalogue order, as a full pass would run them.
        for scanner in self._runner.scanners:
            if scanner.name not in due and scanner.name not in whole:
                continue
            self.passes[scanner.name] += 1
            try:
                if scanner.name in due:
                    await self._handle_due(scanner, due[scanner.name])
                else:
                    await self._runner.tick(scanner)
            except Exception as exc:  # a scanner's own loop logs and retries too
                log.warning("time skipping: scanner %s failed: %s", scanner.name, exc)
        for lane in self.lanes:
            await self.backend.redis.publish(WAKE_CHANNEL.format(lane=lane), b"1")

    async def _handle_due(self, scanner: Scanner, keys: list[tuple[str, KeyOwner]]) -> int:
        """What the scanner's pass would do with these keys: read their due
        members (up to its batch each) at the server's time and handle them."""
        now = self.clock.now_ms()
        found = await self.backend.read_many([
            ["ZRANGEBYSCORE", key, "-inf", now - scanner.lag_ms, "LIMIT", 0, scanner.batch]
            for key, _owner in keys])
        candidates = [Candidate(tag=owner.tag, lane=owner.lane, index=key, member=_text(m))
                      for (key, owner), members in zip(keys, found, strict=True)
                      for m in members]
        if not candidates:
            return 0  # handled since the look (the worker's own scanner)
        return await scanner.handle(self.backend, candidates, now)

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
                await self.kick(look)
                quiet, kicked = 0, True
                continue
            else:
                quiet += 1
                if quiet >= QUIET_LOOKS:
                    return look
            await anyio.sleep(LOOK_INTERVAL)

    async def step_to(self, when_ms: int, look: Survey) -> None:
        """Move the clock to ``when_ms`` (if ahead) and handle what came due
        by ``look``, the idle survey just taken."""
        self.skipped += self.clock.advance_to_ms(when_ms)
        await self.kick(look)

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, timer by timer: every timer
        within them fires at its own time, in order, and what it starts runs
        before the clock moves on."""
        target = self.clock.now_ms() + int(seconds * 1000)
        self._sleeping += 1
        try:
            await self._sleep_to(target)
        finally:
            self._sleeping -= 1

    async def _sleep_to(self, target: int) -> None:
        async with self.unlocked():
            while True:
                look = await self.settle()
                if look.next_due_ms is None or look.next_due_ms > target:
                    break
                await self.step_to(look.next_due_ms, look)
            await self.step_to(target, look)
            await self.settle()

    async def run(self) -> None:
        """Skip while unlocked, until cancelled."""
        while True:
            if not self._waiters or self._sleeping:
                await anyio.sleep(0.01)
                continue
            look = await self.settle()
            if self._waiters and not self._sleeping and look.next_due_ms is not None:
                await self.step_to(look.next_due_ms, look)
            else:
                await anyio.sleep(0.01)
