"""Background lease renewal (spec 05 §3).

One :class:`Renewer` per held lease ticks every ``ttl / 3``, skipping the
first tick. Transport errors are retried until the last confirmed expiry has
passed; the first typed "lease gone" refusal (or local expiry) marks the
context's ``lease_lost`` and cancels the task's scope.

The confirmed expiry is kept on the context (``TaskContext.confirm_lease``)
in monotonic time: when the successful renewal was *sent* plus its TTL. The
server's clock started the new TTL after that, so this never overestimates
the lease, and a wall-clock step on the worker cannot stretch it.
"""

from __future__ import annotations

import heapq
import logging
import time
from typing import Any

import anyio

from flowfabric_worker.context.attempt import Claimed, is_lease_lost
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.errors import ContractError, TransportError
from flowfabric_worker.observability.metrics import Recorder, recorder
from flowfabric_worker.worker.port import Engine

log = logging.getLogger("flowfabric_worker.renewer")


class Renewer:
    """Keeps one lease alive while its task runs."""

    def __init__(
        self, engine: Engine, lease: Claimed, ctx: TaskContext,
        scope: anyio.CancelScope, lease_ttl_ms: int, metrics: Recorder | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics if metrics is not None else recorder()
        self.lease = lease
        self.ctx = ctx
        self.scope = scope
        self.lease_ttl_ms = lease_ttl_ms
        self.expires_at_ms = lease.lease_expires_at_ms
        self.consecutive_failures = 0
        self.renewals = 0
        #: Set when the attempt ended: no further renewal (see Renewals).
        self.stopped = False
        #: Key of this renewer's pending entry in :class:`Renewals` (0: none).
        self.entry = 0

    @property
    def healthy(self) -> bool:
        """0.15 polling semantics: healthy until 3 consecutive failures."""
        return self.consecutive_failures < 3 and not self.ctx.lease_lost.is_set()

    def _lose(self, reason: str) -> None:
        if self.stopped:  # the attempt already ended: a late answer means nothing
            return
        # The executor logs the loss as the attempt's lifecycle event.
        log.debug("lease lost for %s: %s", self.lease.execution_id, reason)
        self.ctx.mark_lease_lost(reason)
        self.scope.cancel()

    async def run(self) -> None:
        """Tick until cancelled by the owner or until the lease is lost."""
        interval = max(self.lease_ttl_ms / 3000.0, 0.01)
        while True:
            await anyio.sleep(interval)
            if not await self.tick():
                return

    async def tick(self) -> bool:
        """One renewal; ``False`` once there is nothing left to renew."""
        # No margin here (unlike ensure_lease): a renewal sent before the
        # confirmed expiry may still extend the lease.
        if self.ctx.lease_expired():
            self._lose("lease expired locally without a successful renewal")
            return False
        try:
            # The guard orders renewals with a suspend (which releases the
            # lease): a renewal after it would report a spurious loss.
            async with self.ctx.lease_guard:
                if self.ctx.lease_released or self.stopped:
                    return False
                sent = time.monotonic()
                self.expires_at_ms = await self.engine.renew(self.lease, self.lease_ttl_ms)
                self.ctx.confirm_lease(sent, self.lease_ttl_ms / 1000)
        except (TransportError, OSError) as exc:
            self.consecutive_failures += 1
            self.metrics.lease_renewal(False)
            log.info("renewal of %s failed (will retry): %s", self.lease.execution_id, exc)
            return True
        except ContractError as exc:
            self.consecutive_failures += 1
            self.metrics.lease_renewal(False)
            if is_lease_lost(exc):
                self._lose(exc.code)
                return False
            log.warning("unexpected renewal refusal for %s: %s",
                        self.lease.execution_id, exc)
            return True
        self.consecutive_failures = 0
        self.renewals += 1
        self.metrics.lease_renewal(True)
        return True


class Renewals:
    """One loop renewing every lease of a worker (instead of one task per
    attempt, whose task group costs more than a short task itself).

    Each registered :class:`Renewer` is renewed every ``ttl / 3`` as before;
    the loop sleeps until the earliest one is due and runs each due renewal in
    its own task, so a slow renewal never delays another.

    The heap holds only ``(due, key)``; the renewer itself sits in
    :attr:`_live` under that key and leaves it the moment its attempt ends
    (:meth:`remove`). A finished attempt's lease, context and cancel scope
    are then freed at once, not kept alive until its entry would have come
    due (``ttl / 3`` later: ~10 s, tens of thousands of attempts during a
    drain, which made the garbage collector a fifth of the worker's CPU).
    """

    def __init__(self) -> None:
        self._due: list[tuple[float, int]] = []
        #: The renewers still running, by the key of their pending entry.
        self._live: dict[int, Renewer] = {}
        self._seq = 0
        self._changed = anyio.Event()
        self._tg: Any = None

    def add(self, renewer: Renewer) -> None:
        interval = max(renewer.lease_ttl_ms / 3000.0, 0.01)
        self._seq += 1
        renewer.entry = self._seq
        self._live[self._seq] = renewer
        heapq.heappush(self._due, (time.monotonic() + interval, self._seq))
        if len(self._due) > 2 * len(self._live) + 64:
            # Mostly entries of ended attempts (two floats' worth each):
            # rebuild, so the heap stays the size of the attempts running.
            self._due = [e for e in self._due if e[1] in self._live]
            heapq.heapify(self._due)
        self._changed.set()

    def remove(self, renewer: Renewer) -> None:
        """Stop renewing and forget the renewer now (its heap entry, a bare
        key, is skipped when it comes due)."""
        renewer.stopped = True
        self._live.pop(renewer.entry, None)
        renewer.entry = 0

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                self._changed = anyio.Event()
                if not self._due:
                    await self._changed.wait()
                    continue
                when, key = self._due[0]
                delay = when - time.monotonic()
                if delay > 0:
                    # New entries are due later than existing ones (same
                    # interval, added later), so only an empty heap needs a wake.
                    await anyio.sleep(delay)
                    continue
                heapq.heappop(self._due)
                renewer = self._live.pop(key, None)
                if renewer is not None and not renewer.stopped:
                    renewer.entry = 0  # held by its tick until re-added
                    tg.start_soon(self._tick, renewer)

    async def _tick(self, renewer: Renewer) -> None:
        if await renewer.tick() and not renewer.stopped:
            self.add(renewer)
