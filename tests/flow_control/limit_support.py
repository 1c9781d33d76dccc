"""Helpers of the flow-control tests: run a worker until a condition holds,
read an execution's core."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.worker.worker import Worker


async def core(b: Backend, eid: str) -> dict[str, str]:
    raw = await b.redis.hgetall(ExecKeys(eid).core)
    return {k.decode(): v.decode() for k, v in raw.items()}


def worker(client: Client, tasks: Sequence[Any], lane: str, **kw: Any) -> Worker:
    """Short leases, scanners at 1/20 of their intervals (unblock every 0.25 s)."""
    kw.setdefault("lease_ttl", 2.0)
    kw.setdefault("scanner_interval_scale", 0.05)
    kw.setdefault("grace_period", 1.0)
    kw.setdefault("concurrency", 8)
    return Worker(client, list(tasks), lanes=[lane], **kw)


async def run_until(w: Worker, cond: Callable[[], Awaitable[bool]], limit: float = 30.0) -> None:
    """Run ``w`` until ``cond()`` is true (generous deadline: a slow box)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        with anyio.fail_after(limit):
            while not await cond():  # noqa: ASYNC110 - polling Redis state
                await anyio.sleep(0.02)
        w.stop()
