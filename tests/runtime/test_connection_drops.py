"""A worker whose connections the server keeps dropping loses no task.

Real server only (``CLIENT KILL`` needs one). While a worker drains tasks,
every client connection is killed again and again: claims, renewals and
completes in flight fail or become ambiguous, the shared connection is
replaced, and the lease fence plus the replay reconciliation of terminal
calls sort it out. Every task must still end completed with its result.
"""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

RUNS: list[int] = []
started: anyio.Event | None = None


@task(name="drops.double", lane="drops")
async def double(n: int) -> int:
    RUNS.append(n)
    if started is not None:
        started.set()
    await anyio.sleep(0.02)
    return 2 * n


@pytest.mark.parametrize("url", ["redis"], indirect=True)
async def test_tasks_survive_repeated_connection_kills(url: str) -> None:
    global started
    RUNS.clear()
    started = anyio.Event()
    killer = aioredis.Redis.from_url(url)
    async with Client.connect(url) as client:
        handles = [await double.submit(client, i) for i in range(300)]
        # A short lease: a claim whose reply was lost is reclaimed soon.
        worker = Worker(client, [double], concurrency=8, lease_ttl=2.0, grace_period=0,
                        scanner_interval_scale=0.2)
        kills = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(5):
                await started.wait()
            # Twenty kills. On a loaded box a round may find every connection
            # still being replaced and kill nothing: count kills, not rounds
            # (bounded), so the test does not depend on an idle machine.
            with anyio.move_on_after(20):
                while kills < 20:
                    await anyio.sleep(0.03)
                    kills += await killer.execute_command(
                        "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            with anyio.fail_after(60):
                results = [await h.result(timeout=60) for h in handles]
            worker.stop()
    await killer.aclose()
    assert kills >= 20  # the drops did happen
    assert results == [2 * i for i in range(300)]
    assert set(RUNS) == set(range(300))
