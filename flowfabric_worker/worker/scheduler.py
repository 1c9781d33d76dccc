"""Embedded scheduler: which execution this worker claims next (spec 05 §2, §6).

Order per call: a permit is taken first (never consume a grant without one);
lanes are served round-robin, one lane per call; for the lane, its solo
partition (where every non-flow execution of the lane lives) is probed first,
then a rotating window of ``min(32, N)`` other partitions starting at a
per-worker offset. Expired leases of the lane are looked for first on a
timer (so crashed work is not queued behind a backlog that may never drain)
and, on the idle schedule (:data:`IDLE_RECLAIM_EVERY`), when a round finds no
fresh work; either look first asks whether its partitions hold any lease.

A round reads the solo partition's heads for every slot of the worker, not
only the free ones; while that partition alone has a backlog, what the round
could not claim is kept for the next rounds (:mod:`.candidate_cache`), which
then claim without an index read.

An idle worker is woken by a push (the lane's wake channel): a direct wake
names the execution, which the next round claims without reading the index
(:meth:`Scheduler.offer`); a plain one makes the next round read it. Rounds
nobody announced work for (the fallback poll) first ask, in one command,
whether the partitions they would read hold anything eligible (issue 18: an
idle worker used to read 33 partitions twice a second).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.partitions import solo_partition
from flowfabric_worker.protocol.wake import DirectWake
from flowfabric_worker.worker.candidate_cache import CandidateCache
from flowfabric_worker.worker.port import SKIPPABLE_CLAIM_CODES, Engine
from flowfabric_worker.worker.unknown_kinds import ForeignKinds

log = logging.getLogger("flowfabric_worker.scheduler")

WINDOW = 32
GRANT_TTL_MS = 5_000
#: Eligible heads read per partition (a few, so racing workers can spread).
HEADS = 4
#: Shortest gap between looks for expired leases when idle.
RECLAIM_EVERY = 0.25
#: Longest gap between looks for expired leases when idle: an eighth of the
#: lease TTL, between RECLAIM_EVERY and this. Each look at the lane's solo
#: partition and a window of the others first asks whether they hold any
#: lease at all (one command); only then does it read them. A crashed worker's execution
#: on the solo partition is thus reclaimed within this of its lease expiring
#: (flow members, on other partitions, as the window comes round).
IDLE_RECLAIM_EVERY = 2.0
#: Longest gap between looks for expired leases while fresh work keeps every
#: round busy (shorter with a short lease: half its TTL, not under
#: RECLAIM_EVERY). A crashed execution is then reclaimed about one lease TTL
#: plus this after the crash, whatever the backlog; a look that finds nothing
#: costs two reads (server time, one pipelined index read) per lane.
BUSY_RECLAIM_EVERY = 1.0


def fnv1a_64(data: bytes) -> int:
    """FNV-1a 64-bit: the per-worker partition offset seed (spec 05 §6.2)."""
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class Permits:
    """The worker's single in-flight pool, with a non-blocking acquire (§2.6)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("concurrency must be at least 1")
        self.size = size
        self.in_use = 0

    def try_acquire(self) -> bool:
        if self.in_use >= self.size:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        if self.in_use <= 0:
            raise RuntimeError("permit released twice")
        self.in_use -= 1


class Backoff:
    """Idle backoff: 50 ms, ×2 per empty poll, capped at 1 s, reset on work (§2.5)."""

    def __init__(self, initial: float = 0.05, cap: float = 1.0) -> None:
        self.initial = initial
        self.cap = cap
        self.current = initial

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.initial


class PartitionWindow:
    """Rotating window of partitions; covers all N every ``ceil(N/32)`` calls."""

    def __init__(self, num_partitions: int, instance_id: str) -> None:
        if num_partitions <= 0:
            raise ValueError("num_flow_partitions must be positive")
        self.n = num_partitions
        self.cursor = (fnv1a_64(instance_id.encode()) & 0xFFFF) % num_partitions

    def next_window(self) -> list[int]:
        chunk = min(WINDOW, self.n)
        start = self.cursor % self.n
        self.cursor = (self.cursor + chunk) % self.n
        return [(start + i) % self.n for i in range(chunk)]


@dataclass
class ClaimIdentity:
    worker_id: str
    instance_id: str
    capabilities: frozenset[str]
    lease_ttl_ms: int
    #: Attempt timeout (ms) per execution kind, passed at claim so the
    #: attempt-timeout scanner can expire hung attempts (spec 05 §2.4 note).
    attempt_timeouts: Mapping[str, int] = field(default_factory=dict)


class Scheduler:
    """Finds and claims the next execution for this worker."""

    def __init__(self, engine: Engine, lanes: list[str], ident: ClaimIdentity,
                 permits: Permits, *, reclaim: bool = True,
                 known_kinds: Container[str] | None = None) -> None:
        if not lanes:
            raise ValueError("a worker needs at least one lane")
        self.engine = engine
        self.lanes = list(lanes)
        self.ident = ident
        self.permits = permits
        self.reclaim_enabled = reclaim
        self.window = PartitionWindow(engine.num_partitions, ident.instance_id)
        #: One window per lane and purpose: lanes take turns, so one shared
        #: cursor would show each of L lanes only every L-th window, and
        #: with L dividing the window count a lane never saw some partitions
        #: (a flow member there was never claimed).
        self._windows: dict[tuple[str, bool], PartitionWindow] = {}
        self._lane_rr = 0
        #: Per lane, so with several lanes each one is looked at on time.
        self._last_reclaim: dict[str, float] = {}
        self._busy_reclaim_every = max(
            RECLAIM_EVERY, min(BUSY_RECLAIM_EVERY, ident.lease_ttl_ms / 2000))
        self._spread = fnv1a_64(ident.instance_id.encode()) % 97
        #: Batch claim (``BackendEngine.claim_many``) when the engine has one;
        #: otherwise one candidate at a time through ``Engine.claim``.
        self._claim_many: Any = getattr(engine, "claim_many", None)
        #: Candidates with their pre-read (``BackendEngine.candidate_reads``),
        #: used with the batch claim only.
        self._candidate_reads: Any = (getattr(engine, "candidate_reads", None)
                                      if self._claim_many is not None else None)
        self._solo_backlog: set[str] = set()
        #: Heads read but not claimed yet, claimed by the next rounds.
        self._kept = CandidateCache()
        #: Kinds this worker has no task for are left to the workers that
        #: have them, for a while (unknown_kinds.py).
        self._foreign = ForeignKinds(known_kinds)
        #: Executions direct wake-ups named (protocol/wake.py), claimed by
        #: the next round without a candidate read (``engine.claim_direct``).
        self._claim_direct: Any = getattr(engine, "claim_direct", None)
        self._direct: deque[DirectWake] = deque(maxlen=permits.size)
        #: Set by a round whose candidate read found fewer heads than it had
        #: permits for: probing again at once would read the same empty
        #: partitions (33 reads), so the claim loop waits for a wake first.
        self.window_drained = False
        #: The last round claimed nothing: the next one, unless work was
        #: announced meanwhile, is a poll and asks first whether anything is
        #: there; and crashed work is looked for on the idle schedule only.
        self.idle = False
        self._announced = False
        self._after_named = False
        self._round_permits = 0
        self._idle_reclaim_every = max(
            RECLAIM_EVERY, min(IDLE_RECLAIM_EVERY, ident.lease_ttl_ms / 8000))

    def announced(self) -> None:
        """Work was announced (a wake-up, or the wake subscription was made
        again and may have missed one): the next round reads the index."""
        self._announced = True

    async def _probe(self, name: str, *args: Any) -> bool:
        """``engine.<name>(*args)``: does any of these partitions hold
        anything (one command)? True when the engine cannot tell."""
        probe = getattr(self.engine, name, None)
        return True if probe is None else bool(await probe(*args))

    async def _look_for_crashed(self, lane: str) -> Claimed | None:
        """One look for an expired lease of ``lane`` on its solo partition and
        the next window of the others, skipped (one command) when none of
        them holds a lease at all."""
        parts = self._reclaim_partitions(lane)
        if not await self._probe("leases_in", parts):
            return None
        return await self._try_reclaim(lane, parts)

    def offer(self, wake: DirectWake) -> bool:
        """Take a direct wake-up for the next round; ``False`` (ignored) when
        this worker does not serve its lane or has no task for its kind,
        cannot take it now or is working through a backlog (whose index
        reads keep the lane's order)."""
        # The permits a round in flight holds come back when it ends.
        busy = self.permits.in_use - self._round_permits
        if (self._claim_direct is None or wake.lane not in self.lanes
                or busy >= self.permits.size or wake.lane in self._solo_backlog
                or not self._foreign.knows(wake.kind)):
            return False
        self._direct.append(wake)
        self._announced = True
        return True

    async def claim_batch(self) -> list[Claimed]:
        """One scheduling round filling as many free permits as it can (all
        from one lane); empty means nothing claimable here right now.

        Permits are taken before any grant is issued and the unused ones are
        given back (spec 05 §2.3: never consume a grant without a permit).
        """
        if self._claim_many is None:
            got = await self.claim_next()
            return [] if got is None else [got]
        self.window_drained = False
        taken = 0
        while self.permits.try_acquire():
            taken += 1
        if not taken:
            return []
        self._round_permits = taken
        claimed: list[Claimed] = []
        # An idle round nobody announced work for (the fallback poll) first
        # asks, in one command, whether anything is there at all.
        quiet, self._announced = self.idle and not self._announced, False
        named = False
        try:
            if self._direct:
                claimed = await self._claim_named(taken)
                if claimed:
                    # Anything else queued is found by the next round, after
                    # a wake or a short wait (as after a drained window); it
                    # asks first, as the work it was woken for is taken.
                    self.window_drained = named = self._after_named = True
                    return claimed
            lane = self.lanes[self._lane_rr % len(self.lanes)]
            self._lane_rr += 1
            # A busy worker — direct claims included — looks for crashed work
            # at least every busy interval.
            busy = not self.idle or self._after_named
            self._after_named = False
            if busy and self._reclaim_due(lane, self._busy_reclaim_every):
                # Crashed work first: it has waited a lease TTL already.
                got = await self._look_for_crashed(lane)
                if got is not None:
                    claimed.append(got)
            parts = self._scan_partitions(lane) if len(claimed) < taken else []
            if parts and not (quiet and not await self._probe("eligible_in", lane, parts)):
                try:
                    claimed += await self._scan_many(lane, taken - len(claimed), parts)
                except Exception as exc:
                    if not claimed:
                        raise
                    # The reclaimed lease must still run: report, don't raise.
                    log.warning("claim failed after a reclaim: %s", exc)
            if not claimed and self._reclaim_due(lane, self._idle_reclaim_every):
                got = await self._look_for_crashed(lane)
                if got is not None:
                    claimed = [got]
        finally:
            self._round_permits = 0
            if self._direct and claimed:
                # Named while this round was in flight, and claimed by it.
                ours = {c.execution_id for c in claimed}
                kept = [w for w in self._direct if w.eid not in ours]
                self._direct.clear()
                self._direct.extend(kept)
            for _ in range(taken - len(claimed)):
                self.permits.release()
            self.idle = named or not claimed
        return claimed

    async def _claim_named(self, want: int) -> list[Claimed]:
        """Claim what direct wake-ups named (at most ``want``), one round trip."""
        wakes: list[DirectWake] = []
        seen: set[str] = set()
        while self._direct and len(wakes) < want:
            wake = self._direct.popleft()
            if wake.eid not in seen:
                seen.add(wake.eid)
                wakes.append(wake)
        try:
            replies = await self._claim_direct(
                wakes, self.ident.worker_id, self.ident.instance_id, self.ident.capabilities,
                self.ident.lease_ttl_ms, GRANT_TTL_MS, self.ident.attempt_timeouts)
        except Exception as exc:  # a hint only: the index read finds the work
            log.info("direct claim failed: %s", exc)
            return []
        claimed = [r for r in replies if isinstance(r, Claimed)]
        for reply in replies:
            if isinstance(reply, Exception):
                log.warning("direct claim refused: %s", reply)
        return claimed

    def _scan_partitions(self, lane: str) -> list[int]:
        """What the next scan reads: the solo partition, and (unless it alone
        has a backlog) the next window of the others."""
        solo = solo_partition(lane) % self.window.n
        parts = [solo]
        if lane not in self._solo_backlog:
            parts += [p for p in self._window(lane).next_window() if p != solo]
        return parts

    async def _scan_many(self, lane: str, want: int, parts: list[int]) -> list[Claimed]:
        # A few more heads than wanted, so racing workers spread over them.
        pre_read: Any = None
        if self._candidate_reads is not None:
            if lane in self._solo_backlog:
                kept = self._kept.take(lane, want)
                if kept is not None:  # no index read this round (candidate_cache.py)
                    return await self._claim_picked(lane, *kept)
            # The solo partition's heads come with their pre-read (one round
            # trip fewer per claim, issue 18): as many as the worker has
            # slots, so the next rounds can claim the rest without a read.
            heads, pre_read = await self._candidate_reads(
                lane, parts, max(want, self.permits.size) + HEADS)
            if pre_read:  # the solo partition's heads: their kinds are known
                heads = [self._foreign.claimable(heads[0], pre_read), *heads[1:]]
        else:
            heads = await self.engine.candidates(lane, parts, want + HEADS)
        self.window_drained = sum(len(h) for h in heads) < want
        # The solo partition is probed first anyway (§2.2): while it alone
        # could fill a round, the next round reads nothing else (the window
        # is 32 reads per round otherwise, the main cost of a busy claim loop).
        if len(heads[0]) >= want + HEADS:
            self._solo_backlog.add(lane)
        else:
            self._solo_backlog.discard(lane)
        picked: list[str] = []
        for eids in heads:
            if len(eids) > 1:
                k = self._spread % len(eids)
                eids = eids[k:] + eids[:k]
            picked.extend(eids[: want - len(picked)])
            if len(picked) >= want:
                break
        if not picked:
            return []
        if pre_read and lane in self._solo_backlog:
            chosen = set(picked)
            self._kept.keep(lane, [e for e in heads[0] if e not in chosen], pre_read)
        return await self._claim_picked(lane, picked, pre_read)

    async def _claim_picked(self, lane: str, picked: list[str], pre_read: Any) -> list[Claimed]:
        assert self._claim_many is not None
        replies = await self._claim_many(
            lane, picked, self.ident.worker_id, self.ident.instance_id,
            self.ident.capabilities, self.ident.lease_ttl_ms, GRANT_TTL_MS,
            self.ident.attempt_timeouts, **({"pre_read": pre_read} if pre_read else {}))
        if not all(isinstance(reply, Claimed) for reply in replies):
            self._kept.drop(lane)  # raced, moved or refused: read the index again
        claimed: list[Claimed] = []
        failure: Exception | None = None
        for reply in replies:
            if isinstance(reply, Claimed):
                claimed.append(reply)
            elif isinstance(reply, ContractError) and (
                    reply.code in SKIPPABLE_CLAIM_CODES or reply.retryable
                    or reply.code == "capability_mismatch"):
                continue
            elif isinstance(reply, Exception):
                failure = failure or reply
        if failure is not None:
            if not claimed:
                raise failure
            # The leases won must still run: report the refusal, don't raise it.
            log.warning("claim refused: %s", failure)
        return claimed

    async def claim_next(self) -> Claimed | None:
        """One scheduling round; ``None`` means nothing claimable here right now."""
        if not self.permits.try_acquire():
            return None
        try:
            lane = self.lanes[self._lane_rr % len(self.lanes)]
            self._lane_rr += 1
            got = None
            if self._reclaim_due(lane, self._busy_reclaim_every):
                # Crashed work first, as in claim_batch.
                got = await self._try_reclaim(lane, self._reclaim_partitions(lane))
            if got is None:
                got = await self._scan(lane)
            if got is None and self._reclaim_due(lane, RECLAIM_EVERY):
                got = await self._try_reclaim(lane, self._reclaim_partitions(lane))
        except BaseException:
            self.permits.release()
            raise
        if got is None:
            self.permits.release()
        return got

    def _reclaim_due(self, lane: str, every: float) -> bool:
        """Expired leases are rare: look for the lane's at most every ``every``
        s (RECLAIM_EVERY when a round found nothing, the busy interval before
        fresh work); either look restarts the clock."""
        if not self.reclaim_enabled:
            return False
        now = time.monotonic()
        if now - self._last_reclaim.get(lane, float("-inf")) < every:
            return False
        self._last_reclaim[lane] = now
        return True

    async def _scan(self, lane: str) -> Claimed | None:
        solo = solo_partition(lane) % self.window.n
        parts = [solo] + [p for p in self._window(lane).next_window() if p != solo]
        heads = await self.engine.candidates(lane, parts, HEADS)
        for eids in heads:
            # Several workers read the same heads; each starts at its own offset
            # among them so they rarely race for one grant.
            if len(eids) > 1:
                k = self._spread % len(eids)
                eids = eids[k:] + eids[:k]
            for eid in eids:
                got = await self._try_candidate(lane, eid)
                if got is not None:
                    return got
        return None

    async def _try_candidate(self, lane: str, eid: str) -> Claimed | None:
        needed = await self.engine.required_capabilities(eid)
        if needed and not needed <= self.ident.capabilities:
            try:
                await self.engine.block_for_capability(eid, lane)
            except Exception as exc:
                log.info("could not block %s for capabilities: %s", eid, exc)
            return None
        try:
            return await self.engine.claim(
                eid, lane, self.ident.worker_id, self.ident.instance_id,
                self.ident.capabilities, self.ident.lease_ttl_ms, GRANT_TTL_MS)
        except ContractError as exc:
            if exc.code in SKIPPABLE_CLAIM_CODES or exc.retryable:
                return None
            if exc.code == "capability_mismatch":
                return None
            raise

    def _reclaim_partitions(self, lane: str) -> list[int]:
        """The lane's solo partition and a rotating window of the others: flow
        members live on their flow's partition, and a crashed worker's flow
        members must be found there too."""
        solo = solo_partition(lane) % self.window.n
        return [solo, *(p for p in self._window(lane, reclaim=True).next_window() if p != solo)]

    def _window(self, lane: str, *, reclaim: bool = False) -> PartitionWindow:
        window = self._windows.get((lane, reclaim))
        if window is None:
            window = PartitionWindow(self.window.n, self.ident.instance_id)
            self._windows[(lane, reclaim)] = window
        return window

    async def _try_reclaim(self, lane: str, partitions: list[int]) -> Claimed | None:
        many = getattr(self.engine, "list_reclaimable_many", None)
        if callable(many):
            found: list[str] = await many(lane, partitions, 8)
        else:
            found = await self.engine.list_reclaimable(lane, partitions[0], 8)
        for eid in found:
            try:
                return await self.engine.reclaim(
                    eid, lane, self.ident.worker_id, self.ident.instance_id,
                    self.ident.capabilities, self.ident.lease_ttl_ms, GRANT_TTL_MS)
            except ContractError as exc:
                log.info("reclaim of %s refused: %s", eid, exc)
        return None
