"""SAQ: ``Queue.enqueue``, push-based ``Job.refresh(until_complete=…)``, ``Worker``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from saq import Queue, Worker
from saq.job import Status

from .base import RESULT_TIMEOUT, Peer, announce_ready, bump


async def noop(ctx: Any, **_: Any) -> int:
    await bump()
    return 1


async def flaky(ctx: Any, **_: Any) -> int:
    if ctx["job"].attempts <= 1:  # the worker counts the attempt before running it
        raise RuntimeError("first attempt fails")
    await bump()
    return 1


class SaqPeer(Peer):
    name = "saq"
    wait_method = ("job.refresh(until_complete=10): push (the queue's pub/sub "
                   "multiplexer, kept subscribed for the whole run)")
    worker_wakeup = "push (BLMOVE per concurrency slot)"
    retry_method = "enqueue(retries=2, retry_delay=0): re-queued at once"
    packages = ("saq", "redis", "hiredis")

    async def open(self, url: str) -> None:
        self.queue = Queue.from_url(url)
        await self.queue.connect()
        # Job.refresh subscribes through the queue's one pub/sub connection,
        # which SAQ closes when its last listener leaves and re-subscribes
        # (asynchronously, unconfirmed) on the next wait. An application with
        # waiters in flight keeps it subscribed; so does this listener, which
        # waits on a key no job has, so every trip measures the steady state
        # (as our result listener, opened once per client).
        self._keepalive = asyncio.create_task(self.queue.listen(
            ["bench-keepalive"], lambda _key, _status: False, timeout=None))
        await asyncio.sleep(0.2)  # let the PSUBSCRIBE reach the server

    async def close(self) -> None:
        self._keepalive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._keepalive
        await self.queue.disconnect()

    async def submit(self) -> None:
        await self.queue.enqueue("noop")

    async def submit_flaky(self) -> None:
        await self.queue.enqueue("flaky", retries=2, retry_delay=0.0)

    async def roundtrip(self) -> None:
        job = await self.queue.enqueue("noop")
        assert job is not None
        await job.refresh(until_complete=RESULT_TIMEOUT)
        if job.status != Status.COMPLETE:
            raise RuntimeError(f"saq job ended {job.status}")

    async def run_worker(self, url: str, concurrency: int) -> None:
        queue = Queue.from_url(url)
        worker = Worker(queue, functions=[("noop", noop), ("flaky", flaky)],
                        concurrency=concurrency)
        announce_ready()
        await worker.start()  # returns on SIGTERM (its own handler)
