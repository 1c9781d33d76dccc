"""taskiq with taskiq-redis: ``RedisStreamBroker`` (consumer group on a Redis
stream, acknowledged), ``RedisAsyncResultBackend``, ``SimpleRetryMiddleware``.

taskiq's result backends are polled: ``task.wait_result(check_interval=…)``
(default 0.2 s) checks ``EXISTS`` on the result key, so it runs at
:data:`~.base.POLL_INTERVAL` (10 ms). The worker blocks in ``XREADGROUP``.
The worker is taskiq's own receiver run in-process
(``taskiq.api.run_receiver_task``, what ``taskiq worker`` runs in each of
its worker processes) so that one process does all the work.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, Context, TaskiqDepends
from taskiq.api import run_receiver_task
from taskiq.middlewares import SimpleRetryMiddleware
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from .base import POLL_INTERVAL, RESULT_TIMEOUT, Peer, announce_ready, bump


async def _noop() -> int:
    await bump()
    return 1


async def _flaky(context: Annotated[Context, TaskiqDepends()]) -> int:
    if int(context.message.labels.get("_retries", 0)) == 0:
        raise RuntimeError("first attempt fails")
    await bump()
    return 1


def build(url: str) -> tuple[AsyncBroker, AsyncTaskiqDecoratedTask[Any, Any],
                             AsyncTaskiqDecoratedTask[Any, Any]]:
    broker = (RedisStreamBroker(url)
              .with_result_backend(RedisAsyncResultBackend(url))
              .with_middlewares(SimpleRetryMiddleware(default_retry_count=2)))
    noop = broker.register_task(_noop, task_name="noop")
    flaky = broker.register_task(_flaky, task_name="flaky", retry_on_error=True,
                                 max_retries=2)
    return broker, noop, flaky


class TaskiqPeer(Peer):
    name = "taskiq"
    wait_method = (f"task.wait_result(check_interval={POLL_INTERVAL}): poll "
                   "(taskiq's result backends have no push-based wait)")
    worker_wakeup = "push (XREADGROUP BLOCK on the stream)"
    retry_method = ("SimpleRetryMiddleware, retry_on_error=True, max_retries=2: "
                    "re-kicked at once")
    packages = ("taskiq", "taskiq-redis", "redis", "hiredis")

    async def open(self, url: str) -> None:
        self.broker, self.noop, self.flaky = build(url)
        # startup() creates the stream's consumer group (at "$"): it must
        # exist before the first submission or the worker would skip it.
        await self.broker.startup()

    async def close(self) -> None:
        await self.broker.shutdown()

    async def submit(self) -> None:
        await self.noop.kiq()

    async def submit_flaky(self) -> None:
        await self.flaky.kiq()

    async def roundtrip(self) -> None:
        handle = await self.noop.kiq()
        result = await handle.wait_result(check_interval=POLL_INTERVAL, timeout=RESULT_TIMEOUT)
        if result.is_err:
            raise RuntimeError(f"taskiq task failed: {result.error}")

    async def run_worker(self, url: str, concurrency: int) -> None:
        broker, _, _ = build(url)
        broker.is_worker_process = True
        await broker.startup()
        receiver = asyncio.ensure_future(
            run_receiver_task(broker, max_async_tasks=concurrency, run_startup=False))
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, receiver.cancel)
        announce_ready()
        try:
            await receiver
        except asyncio.CancelledError:
            pass
        finally:
            await broker.shutdown()
