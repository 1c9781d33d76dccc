"""Submit announces new work on ``ffw:wake:<lane>``; an idle worker wakes on it."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio
from worker_support import run_until, state

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.worker.scheduler import Backoff
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@task(lane="wakes")
async def ping() -> str:
    return "pong"


async def next_message(pubsub: redis.asyncio.client.PubSub, wait: float) -> object:
    with anyio.move_on_after(wait):
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if msg is not None:
                return msg
    return None


async def test_submit_publishes_on_lane_wake_channel_unless_delayed(
        url: str, raw: redis.asyncio.Redis) -> None:
    pubsub = raw.pubsub()
    await pubsub.subscribe("ffw:wake:wakes")
    async with Client.connect(url) as client:
        await client.submit(ping)
        msg = await next_message(pubsub, 2.0)
        assert isinstance(msg, dict) and msg["channel"] == b"ffw:wake:wakes"
        await client.submit(ping, delay=60)  # not claimable now: nobody to wake
        assert await next_message(pubsub, 0.2) is None
    await pubsub.aclose()


async def test_idle_worker_claims_announced_work_without_polling(url: str) -> None:
    async with Client.connect(url) as client:
        worker = Worker(client, [ping], concurrency=2, scanners=False)
        # The fallback poll would only look again after a minute: only the
        # wake-up can get the task done within run_until's limit.
        worker.idle_backoff = Backoff(60.0, 60.0)
        handle = None

        async def done() -> bool:
            nonlocal handle
            if handle is None:
                await anyio.sleep(0.3)  # the worker has polled once and sleeps
                handle = await client.submit(ping)
            return await state(client.backend, handle.id) == "completed"

        await run_until(worker, done, limit=8.0)
        assert handle is not None and await handle.result(timeout=1) == "pong"
