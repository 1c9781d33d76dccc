"""The shared pipelined connection (backend/multiplex.py), on the real server:
replies reach the right callers, failures are classified as the pool's are,
and a broken or killed connection is replaced without losing a call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowfabric_worker.backend import connection
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.connection import open_redis
from flowfabric_worker.backend.library import FLOWFABRIC
from flowfabric_worker.backend.multiplex import Multiplexer
from flowfabric_worker.backend.transport import classify
from flowfabric_worker.protocol.worker_registry import Version

pytestmark = pytest.mark.anyio



async def test_concurrent_callers_get_their_own_replies(mux: Multiplexer) -> None:
    async def one(i: int) -> list[Any]:
        return await mux.execute([("ECHO", f"a{i}"), ("INCRBY", f"k{i}", i), ("ECHO", f"b{i}")])

    replies = await asyncio.gather(*(one(i) for i in range(200)))
    assert replies == [[f"a{i}".encode(), i, f"b{i}".encode()] for i in range(200)]


async def test_an_error_reply_is_a_value_and_the_rest_still_answer(mux: Multiplexer) -> None:
    await mux.execute([("SET", "s", "text")])
    ok, bad, after = await mux.execute([("ECHO", "x"), ("INCR", "s"), ("GET", "s")])
    assert ok == b"x" and after == b"text"
    assert isinstance(bad, ResponseError) and "not an integer" in str(bad)


async def test_shares_one_connection(mux: Multiplexer, client: aioredis.Redis) -> None:
    await mux.execute([("CLIENT", "SETNAME", "ffw-mux-test")])
    await asyncio.gather(*(mux.execute([("PING",)]) for _ in range(50)))
    listing = (await client.execute_command("CLIENT", "LIST")).decode()
    assert listing.count("name=ffw-mux-test") == 1


async def test_a_connection_the_server_closed_is_replaced_before_the_next_write(
        mux: Multiplexer, client: aioredis.Redis) -> None:
    await mux.execute([("CLIENT", "SETNAME", "ffw-mux-killed")])
    await client.execute_command("CLIENT", "KILL", "SKIPME", "yes")
    await asyncio.sleep(0.05)  # the idle reader sees the close
    # Written to the new connection, so not an ambiguous "maybe ran".
    assert await mux.execute([("INCR", "after-kill")]) == [1]


async def test_a_cancelled_caller_does_not_shift_the_replies(
        mux: Multiplexer, client: aioredis.Redis) -> None:
    await client.execute_command("CLIENT", "PAUSE", 300, "ALL")
    slow = asyncio.ensure_future(mux.execute([("ECHO", "first")]))
    await asyncio.sleep(0.05)
    slow.cancel()
    assert await mux.execute([("ECHO", "second")]) == [b"second"]


async def test_a_reply_slower_than_the_socket_timeout_breaks_the_connection(
        redis_server_url: str, client: aioredis.Redis) -> None:
    timed = aioredis.Redis.from_url(redis_server_url, socket_timeout=0.1)
    m = Multiplexer(timed.connection_pool)
    try:
        assert m.usable()
        await m.execute([("PING",)])
        await client.execute_command("CLIENT", "PAUSE", 400, "ALL")
        with pytest.raises(RedisTimeoutError) as info:
            await m.execute([("INCR", "paused")])
        assert classify(info.value) == (True, True)  # may have run
        await asyncio.sleep(0.45)
        assert await m.execute([("ECHO", "again")]) == [b"again"]
    finally:
        await m.aclose()
        await timed.aclose()


async def test_no_server_fails_as_not_sent() -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    m = Multiplexer(dead.connection_pool)
    try:
        assert m.usable()
        with pytest.raises(RedisConnectionError) as info:
            await m.execute([("INCR", "x")])
        assert classify(info.value) == (True, False)  # safe to resend
    finally:
        await m.aclose()
        await dead.aclose()


async def test_after_close_callers_fall_back_to_the_pool(redis_server_url: str) -> None:
    backend = await Backend.open(redis_server_url)
    try:
        assert backend._mux is not None and backend._mux.usable()
        await backend._mux.aclose()
        assert not backend._mux.usable()
        assert await backend.call(Version()) == FLOWFABRIC.version
    finally:
        await backend.close()


def test_stock_memory_backends_have_no_multiplexer(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the embedded fast paths memory:// has its own (test_embedded_mux.py).
    monkeypatch.setattr(connection, "EMBEDDED_FAST_PATHS", False)
    backend = Backend(open_redis("memory://mux-none"), url="memory://mux-none")
    assert backend._mux is None


async def test_repeated_drops_under_load_never_cross_replies(
        mux: Multiplexer, client: aioredis.Redis) -> None:
    """Calls keep flowing while the server drops the connection again and
    again: each caller gets its own reply or a connection error, never
    another caller's reply, and calls after the drops all succeed."""
    stop = asyncio.Event()

    async def caller(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                got = await mux.execute([("ECHO", f"{i}:{n}")])
            except RedisConnectionError:
                continue
            assert got == [f"{i}:{n}".encode()]

    async def killer() -> None:
        for _ in range(10):
            await asyncio.sleep(0.02)
            await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        stop.set()

    await asyncio.wait_for(asyncio.gather(killer(), *(caller(i) for i in range(8))), 20)
    assert await asyncio.gather(*(mux.execute([("ECHO", str(i))]) for i in range(20))) == [
        [str(i).encode()] for i in range(20)]
