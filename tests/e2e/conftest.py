"""Fixtures shared by the e2e tests that run worker processes."""

from __future__ import annotations

import pytest
import redis


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The real server, emptied: each test starts from no executions, no
    keystore and no scan locks (the Lua libraries survive FLUSHALL)."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushall()
    client.close()
    return redis_server_url
