"""arq: ``enqueue_job``, polled ``Job.result(poll_delay=…)``, ``Worker``.

arq has no push-based wait: its workers poll the queue (``poll_delay``,
default 0.5 s) and its callers poll for the result (``Job.result``,
``poll_delay`` default 0.5 s). Both run at :data:`~.base.POLL_INTERVAL`
(10 ms), the smallest sensible setting: with the defaults a round trip would
measure the intervals alone (~0.25–0.5 s).
"""

from __future__ import annotations

from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Retry, Worker, func

from .base import POLL_INTERVAL, RESULT_TIMEOUT, Peer, announce_ready, bump


async def noop(ctx: Any) -> int:
    await bump()
    return 1


async def flaky(ctx: Any) -> int:
    if ctx["job_try"] == 1:
        # arq retries only on Retry (any other exception fails the job for good)
        raise Retry(defer=0)
    await bump()
    return 1


class ArqPeer(Peer):
    name = "arq"
    wait_method = f"job.result(poll_delay={POLL_INTERVAL}): poll (arq has no push-based wait)"
    worker_wakeup = f"poll (Worker(poll_delay={POLL_INTERVAL}))"
    retry_method = "raise Retry(defer=0) on job_try 1, max_tries=2: re-run at the next poll"
    packages = ("arq", "redis", "hiredis")

    async def open(self, url: str) -> None:
        self.pool = await create_pool(RedisSettings.from_dsn(url))

    async def close(self) -> None:
        await self.pool.aclose()

    async def submit(self) -> None:
        await self.pool.enqueue_job("noop")

    async def submit_flaky(self) -> None:
        await self.pool.enqueue_job("flaky")

    async def roundtrip(self) -> None:
        job = await self.pool.enqueue_job("noop")
        assert job is not None
        await job.result(timeout=RESULT_TIMEOUT, poll_delay=POLL_INTERVAL)

    async def run_worker(self, url: str, concurrency: int) -> None:
        worker = Worker(functions=[noop, func(flaky, max_tries=2)],
                        redis_settings=RedisSettings.from_dsn(url), max_jobs=concurrency,
                        poll_delay=POLL_INTERVAL, handle_signals=True)
        announce_ready()
        await worker.async_run()
