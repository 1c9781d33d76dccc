"""The shared connection of a ``memory://`` backend (``backend/embedded_mux.py``):
the multiplexer's interface and semantics, with commands run on one fake
socket in the caller's turn."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from flowfabric_worker.backend import connection
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.connection import open_redis
from flowfabric_worker.backend.embedded_mux import EmbeddedMultiplexer
from flowfabric_worker.backend.library import FLOWFABRIC
from flowfabric_worker.backend.multiplex import Multiplexer
from flowfabric_worker.backend.transport import classify
from flowfabric_worker.protocol.worker_registry import Version
from flowfabric_worker.testing.clock import VirtualClock, attach, detach

pytestmark = pytest.mark.anyio


def _url() -> str:
    return f"memory://emux-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    redis = open_redis(_url())
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
async def mux(client: aioredis.Redis) -> AsyncIterator[EmbeddedMultiplexer]:
    mux = EmbeddedMultiplexer(client.connection_pool)
    try:
        yield mux
    finally:
        await mux.aclose()


def _memory_socket(url: str) -> Any:
    return connection._memory_server(url[len("memory://"):])


async def test_memory_backends_share_one_embedded_connection() -> None:
    backend = Backend(open_redis(url := _url()), url=url)
    try:
        assert isinstance(backend._mux, EmbeddedMultiplexer)
        assert await backend.call(Version()) == FLOWFABRIC.version
        await asyncio.gather(*(backend.call(Version()) for _ in range(20)))
        # One connection for the calls (plus the pool's, used for loading).
        assert len({id(s) for s in _memory_socket(url).sockets}) <= 2
    finally:
        await backend.close()
    assert not backend._mux.usable()


async def test_multiplex_false_and_stock_fakeredis_take_the_pool(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert Backend(open_redis(url := _url()), url=url, multiplex=False)._mux is None
    monkeypatch.setattr(connection, "EMBEDDED_FAST_PATHS", False)
    assert Backend(open_redis(url := _url()), url=url)._mux is None


async def test_replies_in_order_and_an_error_is_a_value(mux: EmbeddedMultiplexer) -> None:
    replies = await mux.execute([
        ("SET", "s", "text"), ("INCR", "s"), ("GET", "s"), ("NOSUCH", "x"),
        ("HSET", "h", "a", 1, "b", 2.5), ("HGETALL", "h"), ("GET", "missing"),
        ("ZADD", "z", 1, "m"), ("ZRANGE", "z", 0, -1, "WITHSCORES"), ("CLIENT SETNAME", "emux"),
        ("CLIENT", "GETNAME"),
    ])
    assert replies[0] == b"OK" and replies[2] == b"text" and replies[6] is None
    assert isinstance(replies[1], ResponseError) and "not an integer" in str(replies[1])
    assert isinstance(replies[3], ResponseError) and "unknown command" in str(replies[3])
    # Raw, as the server sends them: no redis-py reply callbacks (a hash is
    # a flat list, scores are bytes), as from the real server's multiplexer.
    assert replies[4] == 2 and replies[5] == [b"a", b"1", b"b", b"2.5"]
    assert replies[7] == 1 and replies[8] == [b"m", b"1"]
    assert replies[9:] == [b"OK", b"emux"]  # a two-word name is split


# Commands whose replies fakeredis and a real server spell alike.
SAME_ON_BOTH: list[tuple[Any, ...]] = [
    ("DEL", "{m}h", "{m}z", "{m}s"), ("HSET", "{m}h", "a", "1", "b", "2"), ("HGETALL", "{m}h"),
    ("HMGET", "{m}h", "a", "nope"), ("ZADD", "{m}z", "1.5", "x", "2", "y"),
    ("ZRANGE", "{m}z", "0", "-1", "WITHSCORES"), ("ZSCORE", "{m}z", "x"), ("SET", "{m}s", "v"),
    ("GET", "{m}s"), ("EXISTS", "{m}s", "{m}h", "{m}none"), ("INCR", "{m}h"), ("ECHO", "e"),
]


async def test_replies_have_the_real_servers_shapes(
        mux: EmbeddedMultiplexer, redis_server_url: str) -> None:
    real_client = open_redis(redis_server_url)
    real = Multiplexer(real_client.connection_pool)
    assert real.usable()
    try:
        ours, theirs = await mux.execute(SAME_ON_BOTH), await real.execute(SAME_ON_BOTH)
    finally:
        await real.aclose()
        await real_client.aclose()
    assert [type(r) for r in ours] == [type(r) for r in theirs]
    assert [r for r in ours if not isinstance(r, Exception)] == [
        r for r in theirs if not isinstance(r, Exception)]


async def test_decoded_when_the_client_decodes() -> None:
    redis = open_redis(_url(), decode_responses=True)
    mux = EmbeddedMultiplexer(redis.connection_pool)
    try:
        assert await mux.execute([("HSET", "h", "a", "é"), ("HGETALL", "h")]) == [1, ["a", "é"]]
    finally:
        await mux.aclose()
        await redis.aclose()


async def test_a_loop_of_calls_lets_other_tasks_run(mux: EmbeddedMultiplexer) -> None:
    # Each call yields once before it runs, as a call to a real server does.
    ticks = 0
    stop = False

    async def other() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    for _ in range(50):
        await mux.execute([("INCR", "n")])
    stop = True
    await task
    assert ticks >= 40


async def test_a_call_cancelled_before_its_turn_runs_nothing(
        mux: EmbeddedMultiplexer, client: aioredis.Redis) -> None:
    call = asyncio.create_task(mux.execute([("INCR", "cancelled")]))
    await asyncio.sleep(0)  # the call is at its yield
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await client.get("cancelled") is None


async def test_a_killed_connection_is_replaced_before_the_next_call(
        mux: EmbeddedMultiplexer, client: aioredis.Redis) -> None:
    await mux.execute([("CLIENT", "SETNAME", "emux-killed")])
    assert await client.execute_command("CLIENT", "KILL", "SKIPME", "yes") >= 1
    # Nothing of this call had been sent: it runs on a new connection.
    assert await mux.execute([("INCR", "after-kill")]) == [1]
    assert await mux.execute([("CLIENT", "GETNAME")]) != [b"emux-killed"]


async def test_an_outage_is_a_connect_error_nothing_sent(mux: EmbeddedMultiplexer) -> None:
    await mux.execute([("PING",)])
    mux._conn._sock._killed = True  # its connection dropped...
    server = mux._pool.connection_kwargs["server"]
    server.connected = False  # ...and the server unreachable
    try:
        with pytest.raises(RedisConnectionError) as caught:
            await mux.execute([("INCR", "n")])
        assert classify(caught.value) == (True, False)
    finally:
        server.connected = True
    assert await mux.execute([("INCR", "n")]) == [1]


async def test_another_event_loop_is_not_served(mux: EmbeddedMultiplexer) -> None:
    assert mux.usable()

    def elsewhere() -> bool:
        async def probe() -> bool:
            return mux.usable()
        return asyncio.run(probe())

    assert not await asyncio.to_thread(elsewhere)


async def test_the_virtual_clock_sees_its_commands(mux: EmbeddedMultiplexer) -> None:
    server = mux._pool.connection_kwargs["server"]
    clock = VirtualClock()
    attach(server, clock)
    try:
        clock.advance(3600)
        (seconds, _), = await mux.execute([("TIME",)])
        assert abs(int(seconds) - clock.time()) < 5
    finally:
        detach(server)


async def test_a_connection_killed_mid_batch_fails_the_rest_as_maybe_sent(
        mux: EmbeddedMultiplexer, client: aioredis.Redis) -> None:
    # The batch's own CLIENT KILL drops its connection: what follows it is
    # not run and fails as a broken connection does (it may have run, as
    # far as the caller can tell); the next call gets a new connection.
    with pytest.raises(RedisConnectionError) as caught:
        await mux.execute([("CLIENT", "KILL", "SKIPME", "no"), ("INCR", "mid")])
    assert classify(caught.value) == (True, True)
    assert await client.get("mid") is None
    assert await mux.execute([("INCR", "mid")]) == [1]
