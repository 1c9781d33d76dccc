"""What every peer provides, and the completion counter all of them share.

A peer is one task system measured by ``bench/throughput.py``. The parent
process uses the producer side (``open`` … ``close``); ``run_worker`` runs in
a child process started by the harness, one worker process per system.

Every task body (no-op and flaky alike) ends with :func:`bump`, one ``INCR``
of :data:`DONE_KEY` on a plain redis-py connection of the worker process: the
harness detects completion the same way for every system, and the counter
costs every system the same one command per task.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import redis.asyncio as aioredis

DONE_KEY = "bench:done"
#: Seconds a waiter may block for one result before the trip counts as an error.
RESULT_TIMEOUT = 10.0
#: Poll interval for the peers whose users can only poll for a result (arq,
#: taskiq): the smallest sensible one. Their documented defaults (0.5 s, 0.2 s)
#: would measure the interval alone.
POLL_INTERVAL = float(os.environ.get("BENCH_POLL_INTERVAL", "0.01"))

_counter: aioredis.Redis | None = None


async def bump() -> None:
    """Count one completed task (called at the end of every task body)."""
    global _counter
    if _counter is None:
        _counter = aioredis.Redis.from_url(os.environ["BENCH_URL"])
    await _counter.incr(DONE_KEY)


class Peer(ABC):
    """One system under test: its producer side and its worker."""

    #: Short name used on the command line and in the tables.
    name: str = ""
    #: How a caller waits for a result, for the report.
    wait_method: str = ""
    #: How the worker learns of new work, for the report.
    worker_wakeup: str = ""
    #: The retry mechanism used by the flaky task, for the report.
    retry_method: str = ""
    #: distributions whose versions the report prints
    packages: tuple[str, ...] = ()

    @abstractmethod
    async def open(self, url: str) -> None:
        """Connect the producer side (called once per repetition)."""

    @abstractmethod
    async def close(self) -> None:
        """Release everything ``open`` made."""

    @abstractmethod
    async def submit(self) -> None:
        """Enqueue one no-op task and return once the system accepted it."""

    @abstractmethod
    async def submit_flaky(self) -> None:
        """Enqueue one task that fails on its first attempt and then succeeds,
        retried by the system's own retry mechanism with no delay."""

    @abstractmethod
    async def roundtrip(self) -> None:
        """Submit one no-op task and wait for its result the way the system's
        users wait (push-based where the system has it)."""

    async def submit_batch(self, count: int) -> bool:
        """Enqueue ``count`` no-op tasks through a batch API; False when the
        system (or this version of it) has none."""
        return False

    @abstractmethod
    async def run_worker(self, url: str, concurrency: int) -> None:
        """Run one worker (in the child process) until SIGTERM; print
        ``ready`` on stdout, flushed, right before it starts consuming."""


def announce_ready() -> None:
    print("ready", flush=True)
