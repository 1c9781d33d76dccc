"""The scanner runner: one loop per scanner, walking the partitions this
process holds (spec 05 §7.1; sharing: :mod:`.scan_leases`).

Partitions are grouped in ranges of ``slice_size`` (``fp:0-31`` …, ``b:0-31``,
``q:0-31``). With ``leases`` (what :func:`~flowfabric_worker.engine.roles.run_scanners`
passes) a scanner walks only the ranges this process holds, so N processes
scan each partition once per interval; without, every range (one process).

Idle scanners cost (almost) nothing:

* a tick first asks, in one command, whether any index key of the held
  ranges exists at all (one multi-key ``EXISTS``; Redis deletes empty sorted
  sets and sets, so a missing key is an empty index; a cluster backend splits
  it per slot). Nothing there: the tick is over, one command spent.
* the lanes of lane-scoped scanners are re-read at most every
  :data:`LANES_REFRESH` seconds, not every tick.
* sorted-set scanners read each range with one ``EVAL`` (:data:`_DUE`, one
  per partition on a cluster) that returns the server time, the due members
  of every key and the earliest score not yet due: no lock, no ``TIME``, no
  command per key. The scanner then sleeps until its interval ends or that
  earliest entry comes due, whichever is sooner, so known work is handled on
  time rather than up to an interval late; entries written later are found
  within one interval, as before.
* the loop yields between ranges, so a long pass interleaves with other work.
* a scanner whose pass used X s of the event loop's CPU waits at least
  ``(N / LOOP_SHARE - 1)·X`` before the next (N = scanners of the runner), so
  together they take at most about ``LOOP_SHARE`` of the loop however small
  their intervals and however many lanes they walk (``memory://`` runs every
  read on the caller's own loop). X is the CPU time of the pass's own steps
  (:class:`~flowfabric_worker.engine.cpu_meter.Metered`), not wall time nor
  the loop's CPU meanwhile: on a real server a pass mostly waits for replies,
  costs the loop little and keeps its interval however busy the loop is. It
  is the median of the scanner's last three passes, so one outlier (a garbage
  collection that landed in it) does not pause the scanner for seconds.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.lowlevel

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.transport import classify
from flowfabric_worker.engine.cpu_meter import Metered
from flowfabric_worker.engine.scan_leases import RangeLeases
from flowfabric_worker.errors import TransportError
from flowfabric_worker.observability.metrics import recorder
from flowfabric_worker.protocol.keys import LANES_INDEX, PartitionKeys
from flowfabric_worker.protocol.partitions import tag as partition_tag

__all__ = [
    "LANES_REFRESH",
    "LOOP_SHARE",
    "MIN_INTERVAL",
    "Candidate",
    "Handler",
    "IndexKeys",
    "ScanRunner",
    "Scanner",
    "log",
]


log = logging.getLogger("flowfabric_worker.scanners")


MIN_INTERVAL = 0.1  # spec 05 §7.1 interval floor

#: The most of the event loop's time a runner's scanners may take together;
#: enforced by spacing each scanner's passes by its last pass's CPU cost.
LOOP_SHARE = 0.25

#: Seconds between reads of the lane registry by lane-scoped scanners.
LANES_REFRESH = 5.0

#: Earliest wake for an entry about to come due (s): known work is handled
#: on time, but never in a tighter loop than this.
_MIN_WAKE = 0.01

# The due read of a sorted-set scanner over many keys of one range (one
# slot per partition on a cluster). ARGV: lag_ms, limit. Returns
# {now_ms, earliest not-yet-due score + lag (-1: none), {due members}…}.
# A key's head is read first (one call for an empty or not-yet-due key,
# the common idle case); only a key with a due head is read again.
_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lag, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local max = now - lag
local earliest = -1
local out = {}
for i, k in ipairs(KEYS) do
  local head = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
  if head[2] == nil then
    out[i] = {}
  else
    local score = math.floor(tonumber(head[2]))
    if score > max then
      out[i] = {}
      if earliest < 0 or score + lag < earliest then earliest = score + lag end
    else
      out[i] = redis.call('ZRANGEBYSCORE', k, '-inf', max, 'LIMIT', 0, limit)
    end
  end
end
return {now, earliest, out}
"""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One index member found due: its partition tag, lane (lane-scoped scanners
    only), the index it came from and the member itself."""

    tag: str
    lane: str | None
    index: str
    member: str


Handler = Callable[[Backend, Sequence[Candidate], int], Awaitable[int]]


IndexKeys = Callable[[PartitionKeys, str | None], list[str]]


@dataclass(frozen=True, slots=True)
class Scanner:
    """A maintenance scanner: which indexes to read and what to do with what is due.

    ``handle(backend, candidates, now_ms)`` returns how many items it processed.
    """

    name: str
    interval: float
    batch: int
    indexes: IndexKeys
    handle: Handler
    per_lane: bool = False
    due_only: bool = True  # False: every member (the blocked sets of `unblock`)
    #: Due means score ≤ now − lag_ms (the retention trimmer looks 24 h back).
    lag_ms: int = 0
    #: The indexes are plain sets: "sample" reads ``SRANDMEMBER batch`` (the
    #: sibling-cancel scanners), "scan" walks them with ``SSCAN`` (projector).
    set_read: Literal["", "sample", "scan"] = ""
    #: Partition family walked: execution/flow (``fp``), budget (``b``) or
    #: quota (``q``) partitions, each with its own count (spec 04 §2.1).
    family: Literal["fp", "b", "q"] = "fp"


@dataclass(frozen=True, slots=True)
class _Slice:
    """One range of a scanner's partitions: its name (``fp:0-31``, the unit
    of leasing) and its index keys, each with the partition tag and lane it
    belongs to."""

    range: str
    where: list[tuple[str, str | None, str]]
    keys: list[str]


@dataclass
class _Failures:
    """Per-item failure tracker (spec 05 §7.1): 3 strikes → skipped for 10 cycles."""

    strikes: dict[str, int] = field(default_factory=dict)
    skip_until: dict[str, int] = field(default_factory=dict)

    def skipped(self, item: str, cycle: int) -> bool:
        until = self.skip_until.get(item)
        if until is None:
            return False
        if cycle >= until:
            del self.skip_until[item]
            self.strikes.pop(item, None)
            return False
        return True

    def failed(self, item: str, cycle: int) -> None:
        n = self.strikes.get(item, 0) + 1
        self.strikes[item] = n
        if n >= 3:
            self.skip_until[item] = cycle + 10

    def succeeded(self, item: str) -> None:
        self.strikes.pop(item, None)


class ScanRunner:
    """Runs a set of scanners against one backend until stopped."""

    def __init__(
        self,
        backend: Backend,
        scanners: Sequence[Scanner],
        *,
        lanes: Sequence[str] | None = None,
        slice_size: int = 32,
        token: str | None = None,
        leases: RangeLeases | None = None,
    ) -> None:
        self.backend = backend
        self.scanners = list(scanners)
        self.configured_lanes = list(lanes or [])
        self.slice_size = max(1, slice_size)
        self.token = token or uuid.uuid4().hex
        #: This process's share of the ranges; None: every range.
        self.leases = leases
        #: Per scanner: seconds until the earliest known entry comes due, as
        #: of its last pass (None: nothing pending in the ranges it read).
        self.next_due: dict[str, float | None] = {s.name: None for s in self.scanners}
        self._lanes: tuple[float, list[str]] | None = None
        self.processed: dict[str, int] = {s.name: 0 for s in self.scanners}
        #: Per scanner: the pause (s) after its last pass, pacing included.
        self.pause: dict[str, float] = {}
        self.slices_scanned: dict[str, int] = {s.name: 0 for s in self.scanners}
        # Per scanner: the lanes its key lists were built for, and those lists.
        # Building ~256 × lanes key names is itself a noticeable part of an
        # idle tick; lanes change rarely.
        self._keys: dict[str, tuple[list[str | None], list[_Slice]]] = {}
        #: Wait after a pass, as a multiple of the CPU time it took.
        self.pace = max(1, len(self.scanners)) / LOOP_SHARE - 1

    def ranges(self) -> list[str]:
        """The names of every range the scanners walk (what is leased)."""
        families = dict.fromkeys(s.family for s in self.scanners)
        return [f"{family}:{part.start}-{part.stop - 1}"
                for family in families for part in self.slices(family)]

    def slices(self, family: str = "fp") -> list[range]:
        parts = self.backend.partitions
        n = {"b": parts.num_budget_partitions,
             "q": parts.num_quota_partitions}.get(family, parts.num_flow_partitions)
        return [range(i, min(i + self.slice_size, n)) for i in range(0, n, self.slice_size)]

    async def lanes(self) -> list[str]:
        """Configured lanes ∪ ``ff:idx:lanes`` (spec 05 §7.1 Python extension),
        re-read at most every :data:`LANES_REFRESH` s (lanes change rarely)."""
        now = anyio.current_time()
        if self._lanes is None or now - self._lanes[0] >= LANES_REFRESH:
            known = await self.backend.lane_members(LANES_INDEX)
            self._lanes = (now, sorted(set(self.configured_lanes) | set(known)))
        return self._lanes[1]

    def _slice_keys(self, scanner: Scanner, lanes: list[str | None]) -> list[_Slice]:
        cached = self._keys.get(scanner.name)
        if cached is not None and cached[0] == lanes:
            return cached[1]
        slices: list[_Slice] = []
        for part in self.slices(scanner.family):
            where: list[tuple[str, str | None, str]] = []
            for index in part:
                pk = PartitionKeys(partition_tag(scanner.family, index))
                for lane in lanes:
                    for key in scanner.indexes(pk, lane):
                        where.append((pk.tag, lane, key))
            slices.append(_Slice(
                range=f"{scanner.family}:{part.start}-{part.stop - 1}",
                where=where, keys=[k for _, _, k in where]))
        self._keys[scanner.name] = (lanes, slices)
        return slices

    async def tick(self, scanner: Scanner) -> int:
        """One cycle of ``scanner`` over every range this process holds."""
        self.next_due[scanner.name] = None
        lanes: list[str | None] = list(await self.lanes()) if scanner.per_lane else [None]
        slices = [s for s in self._slice_keys(scanner, lanes)
                  if s.keys and (self.leases is None or self.leases.holds(s.range))]
        if not slices:
            return 0  # nothing held, or a lane-scoped scanner before any lane is known
        # Does any index of the held ranges hold anything? One command.
        (present,) = await self.backend.read_many(
            [["EXISTS", *(k for s in slices for k in s.keys)]])
        if not int(present):
            return 0
        if scanner.due_only and not scanner.set_read:
            done = await self._scan_due(scanner, slices)
        else:
            done = 0
            # Which ranges hold any index key: one round trip for the pass.
            occupied = await self.backend.read_many([["EXISTS", *s.keys] for s in slices])
            for piece, there in zip(slices, occupied, strict=True):
                if not int(there):
                    continue
                self.slices_scanned[scanner.name] += 1
                done += await self._scan_slice(scanner, piece)
                # Let the rest of the loop in between ranges: a read that is
                # answered at once (memory://) need not have given it a turn.
                await anyio.lowlevel.checkpoint()
        self.processed[scanner.name] += done
        return done

    async def _scan_due(self, scanner: Scanner, slices: list[_Slice]) -> int:
        """Sorted-set scanners: every held range read in one round trip of
        :data:`_DUE` calls (one per range; one per partition on a cluster,
        where a call must stay in one slot), then handled range by range."""
        groups: list[tuple[_Slice, list[int]]] = []
        for piece in slices:
            if self.backend.cluster is None:
                groups.append((piece, list(range(len(piece.keys)))))
                continue
            by_tag: dict[str, list[int]] = {}
            for i, (t, _lane, _key) in enumerate(piece.where):
                by_tag.setdefault(t, []).append(i)
            groups += [(piece, idx) for idx in by_tag.values()]
        replies = await self.backend.read_many([
            ["EVAL", _DUE, len(idx), *(piece.keys[i] for i in idx),
             scanner.lag_ms, scanner.batch] for piece, idx in groups])
        earliest: float | None = None
        found: dict[str, tuple[_Slice, int, list[Candidate]]] = {}
        for (piece, idx), (now, first, members) in zip(groups, replies, strict=True):
            now, first = int(now), int(first)
            if first >= 0:
                wait = max(first - now, 0) / 1000
                earliest = wait if earliest is None else min(earliest, wait)
            entry = found.setdefault(piece.range, (piece, now, []))
            for i, due in zip(idx, members, strict=True):
                t, lane, key = piece.where[i]
                entry[2].extend(Candidate(tag=t, lane=lane, index=key, member=_text(m))
                                for m in due)
        self.next_due[scanner.name] = earliest
        done = 0
        for _piece, now, candidates in found.values():
            if not candidates:
                continue
            self.slices_scanned[scanner.name] += 1
            done += await scanner.handle(self.backend, candidates, now)
            await anyio.lowlevel.checkpoint()
        return done

    async def _scan_slice(self, scanner: Scanner, piece: _Slice) -> int:
        where, keys = piece.where, piece.keys
        now = await self.backend.server_time_ms()
        if scanner.set_read == "sample":
            found = await self.backend.sample_sets(keys, scanner.batch)
        elif scanner.set_read == "scan":
            found = await self.backend.scan_sets(keys, scanner.batch)
        elif scanner.due_only:
            found = await self.backend.due_members(keys, now - scanner.lag_ms, scanner.batch)
        else:
            found = await self.backend.all_members(keys, scanner.batch)
        candidates = [
            Candidate(tag=t, lane=lane, index=key, member=m)
            for (t, lane, key), members in zip(where, found, strict=True)
            for m in members
        ]
        if not candidates:
            return 0
        return await scanner.handle(self.backend, candidates, now)

    async def run_one(self, scanner: Scanner, stop: anyio.Event) -> None:
        """The loop of one scanner; a failed cycle is logged and retried after 1 s.

        The next pass starts one interval after this one started, but never
        sooner than ``pace`` times its recent passes' CPU time (the median of
        the last three, so one outlier — a garbage collection that landed in
        the pass, the first pass building its key lists — does not pause a
        scanner for seconds, while a scanner that keeps burning the loop is
        paced from its second such pass) after it ended.
        """
        interval = max(scanner.interval, MIN_INTERVAL)
        costs = deque([0.0] * 3, maxlen=3)
        gained = self.leases.gained if self.leases is not None else anyio.Event()
        while not stop.is_set():
            started = anyio.current_time()
            # The CPU time of the pass's own steps, not of the loop while it
            # ran: other tasks' turns while it waited for replies are not
            # its cost (charged them, a 0.1 s scanner once paused 13 s).
            metered = Metered(self.tick(scanner))
            try:
                n = await metered
                recorder().scanner_cycle(scanner.name, anyio.current_time() - started)
                if n:
                    log.debug("scanner %s processed %d", scanner.name, n)
                wait = interval - (anyio.current_time() - started)
                due = self.next_due[scanner.name]
                if due is not None:
                    # Known work comes due before the next tick: be there.
                    wait = min(wait, max(due, _MIN_WAKE))
                costs.append(metered.cpu)
                delay = max(wait, self.pace * sorted(costs)[1])
            except Exception as exc:
                if isinstance(exc, TransportError | OSError) or classify(exc) is not None:
                    # The server is away or dropped us: expected, retried.
                    log.warning("scanner %s cycle failed: %s", scanner.name, exc)
                else:
                    log.exception("scanner %s cycle failed", scanner.name)
                delay = 1.0
            self.pause[scanner.name] = delay
            if delay > 0:
                with anyio.move_on_after(delay):
                    await _first_of(stop, gained)
            if self.leases is not None and gained.is_set():
                gained = self.leases.gained  # ranges taken: scanned at once

    async def run(self, stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            for scanner in self.scanners:
                tg.start_soon(self.run_one, scanner, stop)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _first_of(*events: anyio.Event) -> None:
    """Return once any of ``events`` is set."""
    async with anyio.create_task_group() as tg:
        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()
        for event in events:
            tg.start_soon(wait, event)
