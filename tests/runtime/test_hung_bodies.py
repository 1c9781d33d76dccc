"""Task bodies that do not return (issue 12, hole 5), in-process: the loop
watchdog names a body that blocks the event loop, and hung sync bodies
abandoned in their threads are capped (the worker stops claiming)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator

import anyio
import pytest
import redis
from worker_support import state, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@pytest.fixture
async def backend(redis_server_url: str) -> AsyncIterator[Backend]:
    client = redis.Redis.from_url(redis_server_url)
    client.flushall()
    client.close()
    b = await Backend.open(redis_server_url)
    try:
        yield b
    finally:
        await b.close()


class _Client:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend


@task(name="hung.blocks_loop", lane="hung-loop")
async def blocks_loop(seconds: float) -> str:
    time.sleep(seconds)  # noqa: ASYNC251 - the mistake under test: blocks the loop
    return "done"


@task(name="hung.ticks", lane="hung-loop")
async def ticks() -> str:
    return "ok"


async def test_watchdog_logs_one_warning_per_blocking_episode(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowfabric_worker")
    eid = await submit(backend, blocks_loop, 2.5)
    worker = Worker(_Client(backend), [blocks_loop, ticks], lanes=["hung-loop"],
                    scanners=False, grace_period=1)  # default watchdog: 1 s
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(15):
            while await state(backend, eid) != "completed":  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await anyio.sleep(0.6)  # the watchdog's next look sees the loop run again
        worker.stop()
    warnings = [r for r in caplog.records
                if r.name == "flowfabric_worker.watchdog" and "blocked for" in r.message
                and "ran again" not in r.message]
    assert len(warnings) == 1, [r.message for r in warnings]
    message = warnings[0].getMessage()
    assert f"hung.blocks_loop {eid}" in message  # names the execution
    assert "time.sleep(seconds)" in message  # and the blocking call
    assert any("ran again" in r.getMessage() for r in caplog.records)


release = threading.Event()
entered = 0
_count = threading.Lock()


@task(name="hung.sync_body", lane="hung-threads", timeout=0.3)
def sync_body() -> str:
    global entered
    with _count:
        entered += 1
    release.wait(30)  # hangs past its timeout until the test releases it
    return "late"


async def test_abandoned_threads_are_capped(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    global entered
    entered = 0
    release.clear()
    caplog.set_level(logging.INFO, logger="flowfabric_worker")
    concurrency = 2
    eids = [await submit(backend, sync_body) for _ in range(6)]
    worker = Worker(_Client(backend), [sync_body], lanes=["hung-threads"],
                    concurrency=concurrency, scanners=False, grace_period=1)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            # Every body times out after 0.3 s and keeps its thread; without a
            # cap the worker claims on and leaks a thread per execution.
            await anyio.sleep(2.5)
            # Claiming stops once `concurrency` (the default cap) are
            # abandoned; attempts already running may still join them.
            assert entered <= 2 * concurrency - 1
            task_threads = [t for t in threading.enumerate() if t.name.startswith("ffw-task")]
            assert 0 < len(task_threads) <= 2 * concurrency - 1
            assert all(t.daemon for t in task_threads)  # never hold the process at exit
            assert any("not claiming" in r.getMessage() for r in caplog.records)
            release.set()  # the hung bodies return: claiming resumes
            with anyio.fail_after(20):
                while entered < len(eids):  # noqa: ASYNC110 - every one claimed in the end
                    await anyio.sleep(0.05)
            assert any("claiming again" in r.getMessage() for r in caplog.records)
            worker.stop()
    finally:
        release.set()
