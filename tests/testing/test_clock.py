"""The virtual clock reaches the server (TIME in the library), only for the
memory:// server it is attached to, and the client's wall clock."""

from __future__ import annotations

import time

import pytest

from flowfabric_worker.backend.connection import open_redis
from flowfabric_worker.errors import ConfigurationError, InvalidInput
from flowfabric_worker.tasks.clock import wall_ms
from flowfabric_worker.testing import TestEnvironment, VirtualClock
from flowfabric_worker.testing import clock as virtual

pytestmark = pytest.mark.anyio


async def test_only_the_attached_server_runs_on_virtual_time() -> None:
    ahead, other = open_redis("memory://clock-ahead"), open_redis("memory://clock-other")
    clock = VirtualClock()
    server = ahead.connection_pool.connection_kwargs["server"]
    virtual.attach(server, clock)
    try:
        clock.advance(86400)
        in_lua = int(await ahead.eval("return redis.call('TIME')[1]", 0))
        assert in_lua - time.time() > 86000
        assert abs(int((await other.time())[0]) - time.time()) < 60
        await ahead.set("k", "v", px=60_000)
        clock.advance(61)
        assert await ahead.get("k") is None              # key expiry follows it too
    finally:
        virtual.detach(server)
        await ahead.aclose()
        await other.aclose()


async def test_the_environment_moves_the_client_wall_clock_and_puts_it_back() -> None:
    async with TestEnvironment.start() as env:
        assert env.clock is not None
        env.clock.advance(3600)
        assert wall_ms() - time.time() * 1000 > 3500_000
        with pytest.raises(ConfigurationError):
            async with TestEnvironment.start():
                pass
    assert abs(wall_ms() - time.time() * 1000) < 60_000


async def test_refusals() -> None:
    with pytest.raises(InvalidInput):
        VirtualClock().advance(-1)
    with pytest.raises(ConfigurationError):
        async with TestEnvironment.start(url="redis://127.0.0.1:1/0"):
            pass
