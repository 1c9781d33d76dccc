"""Helpers of the attached-mode tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.roles import run_scanners


@asynccontextmanager
async def server_roles(url: str, interval_scale: float = 0.05) -> AsyncIterator[None]:
    """What the FlowFabric server runs beside the workers: the engine
    scanners (promotion, lease expiry, ...), on their own connection."""
    b = await Backend.open(url, mode="attached")
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_scanners(b, stop=stop, interval_scale=interval_scale))
            try:
                yield
            finally:
                stop.set()
    finally:
        await b.close()
