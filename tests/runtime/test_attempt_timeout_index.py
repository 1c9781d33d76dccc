"""``Worker`` indexes running attempts for the attempt-timeout scanner by
default (the server-side backstop for hung workers, issue 12);
``attempt_timeouts=False`` (0.15 behaviour) does not."""

from __future__ import annotations

import time

import anyio
import pytest

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.protocol.ids import execution_tag
from flowfabric_worker.protocol.keys import PartitionKeys
from flowfabric_worker.worker.worker import ATTEMPT_TIMEOUT_GRACE_MS, Worker

pytestmark = pytest.mark.anyio

started = anyio.Event()


@task(lane="timeouts", timeout=30)
async def slow() -> None:
    started.set()
    await anyio.sleep(30)


@pytest.mark.parametrize("enabled", [True, False])
async def test_running_attempt_indexed_only_when_enabled(url: str, enabled: bool) -> None:
    global started
    started = anyio.Event()
    async with Client.connect(url) as client:
        handle = await client.submit(slow)
        worker = Worker(client, [slow], scanners=False, grace_period=0,
                        **({} if enabled else {"attempt_timeouts": False}))
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(5):
                await started.wait()
            before_ms = time.time() * 1000
            score = await client.backend.redis.zscore(
                PartitionKeys(execution_tag(handle.id)).attempt_timeout, handle.id)
            worker.stop()
        if not enabled:
            assert score is None
            return
        assert score is not None
        expected = 30_000 + ATTEMPT_TIMEOUT_GRACE_MS
        assert before_ms + expected - 5_000 < score <= before_ms + expected
