"""Promoting this worker's own retries when they come due.

``ff_fail_execution`` puts a retried execution in its lane's delayed index,
even with a zero backoff; in 0.15 only the ``delayed_promoter`` scanner moves
it back to eligible (50 executions every 0.75 s per lane), which caps retries
at ~45/s and adds up to a scan interval to every short backoff. The worker
that scheduled the retry knows when it is due, so it promotes it itself at
that time with the same contract call the scanner makes
(``ff_promote_delayed``, idempotent and a no-op for an execution already
promoted or cancelled), then wakes the lane's claimers. The scanner stays the
safety net for retries whose worker died before their due time, and for
delays far enough ahead that holding them in memory is not worth it.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.maintenance import PromoteDelayed

__all__ = ["HORIZON_MS", "RetryPromoter"]

log = logging.getLogger("flowfabric_worker.worker")

#: Retries due further ahead than this are left to the scanner (its interval
#: is small against such a delay, and a long heap would be memory for nothing).
HORIZON_MS = 60_000
#: Promotions sent in one round trip.
BATCH = 64

#: A late look when the server still finds a retry early (clocks met halfway).
RECHECK_S = 0.02

#: Sends the calls and wakes the lanes; returns each call's result or error.
Promote = Callable[[Sequence[PromoteDelayed], Sequence[str]], Awaitable[list[Any]]]


class RetryPromoter:
    """A heap of (due, execution) this worker scheduled, emptied on time.

    ``schedule`` is called right after a ``ff_fail_execution`` answered
    ``retry_scheduled``; ``run`` (one task of the worker's group) sleeps until
    the earliest due time. The wait is the backoff the worker itself sent
    with the failure, on the local monotonic clock: no server-time read per
    retry and no clock skew between hosts; a promotion the server still
    finds early (``not_yet_due``) is looked at again shortly.
    """

    def __init__(self, promote: Promote, server_time_ms: Callable[[], Awaitable[int]]) -> None:
        self._promote = promote
        self._server_time_ms = server_time_ms
        self._heap: list[tuple[float, int, ExecutionId, str]] = []
        self._seq = 0
        self._changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, eid: ExecutionId, lane: str, wait_ms: int) -> bool:
        """Promote ``eid`` in ``wait_ms`` (the backoff the failure asked for,
        counted from its reply). False when it is beyond the horizon."""
        wait_ms = max(0, wait_ms)
        if wait_ms > HORIZON_MS:
            return False
        self._seq += 1
        heapq.heappush(self._heap, (time.monotonic() + wait_ms / 1000, self._seq, eid, lane))
        self._changed.set()
        return True

    async def run(self) -> None:
        while True:
            if not self._heap:
                self._changed = anyio.Event()
                await self._changed.wait()
                continue
            delay = self._heap[0][0] - time.monotonic()
            if delay > 0:
                self._changed = anyio.Event()
                with anyio.move_on_after(delay):
                    await self._changed.wait()
                continue
            due: list[tuple[ExecutionId, str]] = []
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now and len(due) < BATCH:
                _, _, eid, lane = heapq.heappop(self._heap)
                due.append((eid, lane))
            await self._send(due)

    async def _send(self, due: list[tuple[ExecutionId, str]]) -> None:
        try:
            # The library compares the delayed score with now_ms: the server's
            # clock, read after the local due time passed, is never early.
            now_ms = await self._server_time_ms()
            calls = [PromoteDelayed(eid=eid, lane_id=lane, now_ms=now_ms) for eid, lane in due]
            results = await self._promote(calls, sorted({lane for _, lane in due}))
        except Exception as exc:  # the scanner promotes them later: nothing is lost
            log.warning("promoting %d due retries failed (%s); the delayed_promoter "
                        "scanner will promote them", len(due), exc)
            return
        for (eid, lane), result in zip(due, results, strict=True):
            if getattr(result, "tag", "") == "not_yet_due":
                self._seq += 1
                heapq.heappush(self._heap, (time.monotonic() + RECHECK_S, self._seq, eid, lane))
