"""Fixtures shared by the shared-pipelined-connection tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from flowfabric_worker.backend.multiplex import Multiplexer


@pytest.fixture
async def client(redis_server_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client on an emptied test server."""
    c = aioredis.Redis.from_url(redis_server_url)
    await c.flushall()
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def mux(client: aioredis.Redis) -> AsyncIterator[Multiplexer]:
    """A multiplexer over ``client``'s pool, checked usable."""
    m = Multiplexer(client.connection_pool)
    assert m.usable()
    try:
        yield m
    finally:
        await m.aclose()
