"""Helpers for flow tests: run an in-process worker while a flow runs, read
member records."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from flowfabric_worker.client.client import Client
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.worker.worker import Worker

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))

from flow_tasks import TASKS


@asynccontextmanager
async def running_worker(client: Client, **kw: Any) -> AsyncIterator[Worker]:
    """A worker (with its engine roles, scanners at 1/20 of their intervals)
    running in the background for the duration of the block."""
    kw.setdefault("scanner_interval_scale", 0.05)
    kw.setdefault("concurrency", 8)
    worker = Worker(client, TASKS, lease_ttl=2.0, grace_period=1.0, **kw)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield worker
        finally:
            worker.stop()


async def core(client: Client, eid: str) -> dict[str, str]:
    raw = await client.backend.redis.hgetall(ExecKeys(eid).core)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def wait_for(cond: Any, limit: float = 20.0) -> None:
    with anyio.fail_after(limit):
        while not await cond():  # noqa: ASYNC110 - polling Redis state
            await anyio.sleep(0.05)
