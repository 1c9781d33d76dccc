"""Fixtures shared by the e2e tests that run worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis

from flowfabric_worker.backend.backend import Backend


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The real server, emptied: each test starts from no executions, no
    keystore and no scan locks (the Lua libraries survive FLUSHALL)."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushall()
    client.close()
    return redis_server_url


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[Backend]:
    """A typed backend on that emptied server (libraries loaded by open)."""
    b = await Backend.open(redis_url)
    try:
        yield b
    finally:
        await b.close()
