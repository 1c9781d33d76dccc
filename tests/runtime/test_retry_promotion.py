"""A retry with a short backoff becomes claimable when it is due, without
waiting for the delayed_promoter scanner (issue 18: retries ran at ~45/s)."""

from __future__ import annotations

import time

import anyio
import pytest
from worker_support import lane_worker

from flowfabric_worker import Client, Retry, task

pytestmark = pytest.mark.anyio

FAILED: set[int] = set()


@task(lane="retry-fast", retry=Retry(max_attempts=3, initial=0.0))
async def flaky(n: int) -> int:
    if n not in FAILED:
        FAILED.add(n)
        raise RuntimeError("first try fails")
    return n


async def test_zero_delay_retries_run_without_a_scanner(url: str) -> None:
    # No scanners at all: before, a retried execution sat in the delayed
    # index until a delayed_promoter pass, so none of these finished.
    FAILED.clear()
    async with Client.connect(url) as client:
        runs = [await flaky.submit(client, n) for n in range(40)]
        worker = lane_worker(client, [flaky], "retry-fast", scanners=False,
                             concurrency=8)
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(20):
                results = [await r.result(timeout=20) for r in runs]
            worker.stop()
        took = time.monotonic() - started
    assert results == list(range(40))
    assert len(FAILED) == 40
    # 40 retries through a 0.75 s / 50-a-pass promoter would take at least a
    # pass; on time they take a few round trips each. Generous for a busy box.
    assert took < 10, took


@task(lane="retry-later", retry=Retry(max_attempts=2, initial=0.4))
async def later(n: int) -> float:
    if n not in FAILED:
        FAILED.add(n)
        raise RuntimeError("first try fails")
    return time.monotonic()


async def test_a_backoff_is_still_respected(url: str) -> None:
    FAILED.clear()
    async with Client.connect(url) as client:
        run = await later.submit(client, 1)
        worker = lane_worker(client, [later], "retry-later", scanners=False)
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            second = await run.result(timeout=20)
            worker.stop()
    # The second attempt started no earlier than the 0.4 s backoff.
    assert second - started >= 0.35
