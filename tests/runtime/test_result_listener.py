"""RunHandle.result() waiters of one client share one pub/sub connection."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@task(lane="listen")
async def echo(n: int) -> int:
    await anyio.sleep(0.2)
    return n


async def pubsub_connections(raw: redis.asyncio.Redis) -> int:
    return len(await raw.client_list(_type="pubsub"))


async def test_concurrent_waiters_share_one_connection_and_all_get_results(
        url: str, raw: redis.asyncio.Redis) -> None:
    async with Client.connect(url) as client:
        handles = [await client.submit(echo, i) for i in range(6)]
        results: dict[int, int] = {}
        seen_connections: list[int] = []

        async def wait(i: int) -> None:
            results[i] = await handles[i].result(timeout=10)

        worker = Worker(client, [echo], concurrency=6, scanners=False)
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(wait, i)
            await anyio.sleep(0.1)  # every waiter subscribed, none done yet
            if url.startswith("redis"):
                seen_connections.append(await pubsub_connections(raw))
            async with anyio.create_task_group() as wg:
                wg.start_soon(worker.run)
                while len(results) < 6:  # noqa: ASYNC110 - waiting for the waiters
                    await anyio.sleep(0.02)
                worker.stop()
        assert results == {i: i for i in range(6)}
        if url.startswith("redis"):
            # The worker's wake subscription is not running yet at that point.
            assert seen_connections == [1]


async def test_result_after_completion_and_repeated_waits(url: str) -> None:
    async with Client.connect(url) as client:
        handle = await client.submit(echo, 7)
        worker = Worker(client, [echo], concurrency=2, scanners=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            assert await handle.result(timeout=10) == 7
            # Released and subscribed again: still answered at once.
            assert await handle.result(timeout=1) == 7
            again = await client.submit(echo, 8)
            assert await again.result(timeout=10) == 8
            worker.stop()
        listener = client.done_listener()
        assert not listener.watching(f"ffw:done:{handle.id}")


@task(lane="listen")
async def refuse() -> None:
    raise ValueError("no")


async def test_worker_publishes_done_after_complete_and_fail(
        url: str, raw: redis.asyncio.Redis) -> None:
    async with Client.connect(url) as client:
        ok = await client.submit(echo, 1)
        bad = await client.submit(refuse)
        pubsub = raw.pubsub()
        await pubsub.subscribe(f"ffw:done:{ok.id}", f"ffw:done:{bad.id}")
        got: dict[str, str] = {}
        worker = Worker(client, [echo, refuse], concurrency=2, scanners=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(10):
                while len(got) < 2:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=0.5)
                    if msg is not None:
                        # Published after the terminal call: the state is final.
                        # (The data is the id, or the carried result: issue 18.)
                        eid = msg["channel"].decode().removeprefix("ffw:done:")
                        got[eid] = await client.run(eid).state()
            worker.stop()
        await pubsub.aclose()
        assert got == {ok.id: "completed", bad.id: "failed"}
