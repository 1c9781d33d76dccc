"""The scanner runner: one loop per scanner, partitions walked in slices, each
slice claimed with a short lease so several processes share the work instead of
repeating it (spec 05 §7.1).

A slice lock ``ffw:scan:<scanner>:<first>-<last>`` is taken with SET NX PX for
one interval and not released: whoever takes it scans that slice for this tick,
every other process skips it. The total Redis load of N processes is therefore
that of one process plus N lock attempts per slice and tick.

Idle scanners cost (almost) nothing. On ``memory://`` every read is Python work
on the caller's own event loop, and walking 256 partitions × lanes × indexes
per tick at a small interval scale used to take most of a core and starve the
worker sharing that loop. So:

* each tick first asks, in one round trip, which slices have any index key at
  all: one multi-key ``EXISTS`` per slice (Redis deletes empty sorted sets and
  sets, so a missing key is an empty index). Only those slices are locked and
  read; an empty one would have yielded no candidate anyway. Multi-key
  ``EXISTS`` spans hash slots, as these pipelines already do: cluster URLs
  are refused by ``backend.connection``.
* the loop yields between slices, so a long pass interleaves with other work.
* a scanner whose pass used X s of the event loop's CPU waits at least
  ``(N / LOOP_SHARE - 1)·X`` before the next (N = scanners of the runner), so
  together they take at most about ``LOOP_SHARE`` of the loop however small
  their intervals and however many lanes they walk: the probe above still
  names every index key (a few µs each on ``memory://``), and a busy pass
  that finds nothing due (running leases in every partition) walks them all.
  CPU time, not wall time: on a real server a pass mostly waits for replies,
  costs the loop little and keeps its interval.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.lowlevel

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.transport import classify
from flowfabric_worker.errors import TransportError
from flowfabric_worker.protocol.keys import LANES_INDEX, PartitionKeys
from flowfabric_worker.protocol.partitions import tag as partition_tag

__all__ = [
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
    """One slice of a scanner's partitions: its lock and its index keys, each
    with the partition tag and lane it belongs to."""

    lock: str
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
    ) -> None:
        self.backend = backend
        self.scanners = list(scanners)
        self.configured_lanes = list(lanes or [])
        self.slice_size = max(1, slice_size)
        self.token = token or uuid.uuid4().hex
        self.processed: dict[str, int] = {s.name: 0 for s in self.scanners}
        self.slices_scanned: dict[str, int] = {s.name: 0 for s in self.scanners}
        # Per scanner: the lanes its key lists were built for, and those lists.
        # Building ~256 × lanes key names is itself a noticeable part of an
        # idle tick; lanes change rarely.
        self._keys: dict[str, tuple[list[str | None], list[_Slice]]] = {}
        #: Wait after a pass, as a multiple of the CPU time it took.
        self.pace = max(1, len(self.scanners)) / LOOP_SHARE - 1

    def slices(self, family: str = "fp") -> list[range]:
        parts = self.backend.partitions
        n = {"b": parts.num_budget_partitions,
             "q": parts.num_quota_partitions}.get(family, parts.num_flow_partitions)
        return [range(i, min(i + self.slice_size, n)) for i in range(0, n, self.slice_size)]

    async def lanes(self) -> list[str]:
        """Configured lanes ∪ ``ff:idx:lanes`` (spec 05 §7.1 Python extension)."""
        known = await self.backend.lane_members(LANES_INDEX)
        return sorted(set(self.configured_lanes) | set(known))

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
                lock=f"ffw:scan:{scanner.name}:{part.start}-{part.stop - 1}",
                where=where, keys=[k for _, _, k in where]))
        self._keys[scanner.name] = (lanes, slices)
        return slices

    async def tick(self, scanner: Scanner) -> int:
        """One cycle of ``scanner`` over every non-empty slice this process wins."""
        ttl_ms = max(int(max(scanner.interval, MIN_INTERVAL) * 1000), 100)
        lanes: list[str | None] = list(await self.lanes()) if scanner.per_lane else [None]
        slices = [s for s in self._slice_keys(scanner, lanes) if s.keys]
        if not slices:
            return 0  # a lane-scoped scanner before any lane is known
        # Which slices hold any index key: one round trip for the whole pass.
        occupied = await self.backend.read_many([["EXISTS", *s.keys] for s in slices])
        done = 0
        for piece, present in zip(slices, occupied, strict=True):
            if not int(present):
                continue  # every index of the slice is empty: nothing to lock or read
            if not await self.backend.try_scan_lock(piece.lock, self.token, ttl_ms):
                continue
            self.slices_scanned[scanner.name] += 1
            done += await self._scan_slice(scanner, piece)
            # Let the rest of the loop in between slices: a read that is
            # answered at once (memory://) need not have given it a turn.
            await anyio.lowlevel.checkpoint()
        self.processed[scanner.name] += done
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
        sooner than ``pace`` times this pass's CPU time after it ended.
        """
        interval = max(scanner.interval, MIN_INTERVAL)
        while not stop.is_set():
            started = anyio.current_time()
            # The loop thread's CPU time: an upper bound on what the pass cost
            # the loop (it also counts whatever ran in between its awaits,
            # which only spaces passes more when the loop is busy anyway).
            cpu = time.thread_time()
            try:
                n = await self.tick(scanner)
                if n:
                    log.debug("scanner %s processed %d", scanner.name, n)
                delay = max(interval - (anyio.current_time() - started),
                            self.pace * (time.thread_time() - cpu))
            except Exception as exc:
                if isinstance(exc, TransportError | OSError) or classify(exc) is not None:
                    # The server is away or dropped us: expected, retried.
                    log.warning("scanner %s cycle failed: %s", scanner.name, exc)
                else:
                    log.exception("scanner %s cycle failed", scanner.name)
                delay = 1.0
            if delay > 0:
                with anyio.move_on_after(delay):
                    await stop.wait()

    async def run(self, stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            for scanner in self.scanners:
                tg.start_soon(self.run_one, scanner, stop)
