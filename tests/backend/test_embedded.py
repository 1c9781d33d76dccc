"""The embedded backend's fast paths (``backend/embedded_transport.py``,
``backend/embedded_socket.py``): taken on the fakeredis they were written for,
and indistinguishable from stock fakeredis in what a client sees."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import fakeredis
import pytest
from fakeredis._socket._base import BaseFakeSocket
from redis.exceptions import RedisError

from flowfabric_worker.backend import connection, embedded_socket
from flowfabric_worker.backend.embedded_transport import EmbeddedConnection, open_embedded
from flowfabric_worker.testing.clock import VirtualClock, attach, detach

pytestmark = pytest.mark.anyio

# dt_pcall and dt_call hand their ARGV to the server as one command and
# return the reply (an error from redis.pcall as the reply's error, one from
# redis.call with the line that raised it).
LIBRARY = """#!lua name=embeddedtest
redis.register_function('dt_pcall', function(keys, args) return redis.pcall(unpack(args)) end)
redis.register_function('dt_call', function(keys, args) return redis.call(unpack(args)) end)
redis.register_function('dt_numbers', function(keys, args)
  redis.call('SET', keys[1], 1.5)
  local a = redis.call('GET', keys[1])
  redis.call('SET', keys[1], 7)
  return {a, redis.call('INCRBY', keys[1], 3)}
end)
redis.register_function('dt_bool', function(keys, args) return redis.call('SET', keys[1], true) end)
redis.register_function{function_name='dt_ro', flags={'no-writes'},
  callback=function(keys, args) return redis.pcall('SET', keys[1], 'x') end}
"""

# Commands run both at the top level and through redis.call: replies,
# arity and type errors, unknown and container commands, refused ones.
COMMANDS: list[tuple[str, ...]] = [
    ("SET", "k", "v"), ("GET", "k"), ("GET", "missing"), ("GET",), ("GET", "k", "extra"),
    ("HSET", "h", "a", "1", "b", "2"), ("HSET", "h", "a", "3", "c", "4"), ("HSET", "h", "a"),
    ("HSET", "h", "a", "1", "b"), ("HGETALL", "h"), ("HMGET", "h", "a", "zz", "c"),
    ("HSETNX", "h", "a", "9"), ("HSETNX", "h", "z", "9"), ("HMSET", "h", "q", "1"),
    ("HGET", "h", "q"), ("HLEN", "h"), ("HGETALL", "nohash"), ("HEXPIRE", "h", "100", "FIELDS",
                                                              "1", "a"),
    ("GET", "h"), ("HGET", "k", "a"), ("ZADD", "z", "1", "a", "2.5", "b"), ("ZADD", "z", "1"),
    ("ZRANGE", "z", "0", "-1", "WITHSCORES"), ("ZSCORE", "z", "b"), ("ZINCRBY", "z", "1.5", "a"),
    ("ZREM", "z", "a", "nope"), ("INCRBY", "n", "x"), ("INCRBY", "n", "5"),
    ("LPUSH", "l", "a", "b"), ("LRANGE", "l", "0", "-1"), ("LPOP", "l", "5"), ("LPOP", "l"),
    ("SADD", "s", "a", "b"), ("SISMEMBER", "s", "a"), ("SCARD", "s"),
    ("XADD", "x", "1-1", "f", "v"), ("XLEN", "x"), ("XINFO", "STREAM", "nostream"),
    ("EXPIRE", "k", "1000"), ("PERSIST", "k"), ("EXISTS", "k", "h", "nope"), ("DEL", "k", "h"),
    ("NOSUCH", "x"), ("TYPE", "z"), ("LINDEX", "nolist", "x"), ("DUMP", "missing"),
    ("LMOVE", "nolist", "l2", "LEFT", "BAD"), ("HSET", "he", "a", "1", "b", "1"),
    ("HEXPIRE", "he", "1000", "FIELDS", "2", "a", "b"), ("HSET", "he", "a", "2"),
    ("HPERSIST", "he", "FIELDS", "2", "a", "b"), ("SET", "k", "v", "PX", "-1"),
]


def _outcome(value: Any) -> Any:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return value


async def _script(redis: Any) -> list[Any]:
    """Every command above at the top level, then through each function."""
    out: list[Any] = []
    await redis.function_load(LIBRARY, replace=True)
    for command in COMMANDS:
        for how in ("top", "dt_pcall", "dt_call", "top"):
            try:
                if how == "top":
                    out.append(_outcome(await redis.execute_command(*command)))
                else:
                    out.append(_outcome(await redis.fcall(how, 0, *command)))
            except RedisError as exc:
                out.append(_outcome(exc))
    for fn in ("dt_pcall", "dt_call"):  # refused in a script; would subscribe at the top
        try:
            out.append(await redis.fcall(fn, 0, "SUBSCRIBE", "c"))
        except RedisError as exc:
            out.append(_outcome(exc))
    for fn in ("dt_numbers", "dt_bool", "dt_ro"):
        try:
            out.append(await redis.fcall(fn, 1, "num"))
        except RedisError as exc:
            out.append(_outcome(exc))
    try:
        out.append(await redis.fcall_ro("dt_ro", 1, "ro"))
    except RedisError as exc:
        out.append(_outcome(exc))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set("t", "1").incr("t").hset("t", "a", "b").get("t")
        out.append([_outcome(r) for r in await pipe.execute(raise_on_error=False)])
    async with redis.pipeline(transaction=False) as pipe:
        pipe.fcall("dt_pcall", 0, "GET", "t").fcall("dt_call", 0, "HGET", "t", "a").get("t")
        out.append([_outcome(r) for r in await pipe.execute(raise_on_error=False)])
    return out


async def test_same_replies_and_errors_as_stock_fakeredis() -> None:
    stock = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 2)))
    fast = open_embedded(fakeredis.FakeServer(version=(7, 2)))
    try:
        expected, got = await _script(stock), await _script(fast)
    finally:
        await stock.aclose()
        await fast.aclose()
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"step {i}: {g!r} != stock {e!r}"
    # The corpus reaches the cases it is meant to: errors of every kind.
    texts = " ".join(str(x) for x in expected)
    for needle in ("wrong number of arguments", "WRONGTYPE", "Unknown Redis command",
                   "Write commands are not allowed", "not an integer", "not allowed from script",
                   "Lua redis lib command arguments must be strings or integers"):
        assert needle in texts


def test_memory_urls_take_the_fast_paths_on_this_fakeredis() -> None:
    installed = embedded_socket._installed_version()
    assert embedded_socket.available(), (
        f"fakeredis {installed} is not one the embedded fast paths were written for "
        f"({sorted(embedded_socket.MEASURED_VERSIONS)}): memory:// is on stock fakeredis, "
        f"~30% slower. Check backend/embedded_socket.py and embedded_transport.py against it, "
        f"re-run bench/embedded.py --compare and add the version to MEASURED_VERSIONS.")
    redis = connection.open_redis(f"memory://embedded-{uuid.uuid4().hex}")
    assert redis.connection_pool.connection_class is EmbeddedConnection


@pytest.fixture
def other_fakeredis_version(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(embedded_socket, "_installed_version", lambda: "0.0.1")
    monkeypatch.setattr(embedded_socket, "_built", [])
    yield


async def test_other_fakeredis_versions_get_stock_fakeredis(other_fakeredis_version: None) -> None:
    assert not embedded_socket.available()
    redis = connection.open_redis(f"memory://embedded-{uuid.uuid4().hex}")
    assert redis.connection_pool.connection_class is not EmbeddedConnection
    await redis.set("a", "1")
    assert await redis.get("a") == b"1"
    await redis.aclose()


async def test_commands_skip_the_resp_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Any] = []
    original = BaseFakeSocket.sendall

    def spy(self: Any, data: Any) -> None:
        sent.append(data)
        original(self, data)

    monkeypatch.setattr(BaseFakeSocket, "sendall", spy)
    redis = connection.open_redis(f"memory://embedded-{uuid.uuid4().hex}")
    await redis.set("a", "1")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr("a")
        pipe.get("a")
        assert await pipe.execute() == [2, b"2"]
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe("ch")
        assert await redis.publish("ch", "hi") == 1
    await redis.aclose()
    assert sent == []


async def test_a_command_behind_a_blocking_one_waits_its_turn() -> None:
    name = f"embedded-{uuid.uuid4().hex}"
    redis, other = connection.open_redis(f"memory://{name}"), connection.open_redis(f"memory://{name}")
    db = connection._memory_server(name).dbs[0]
    results: list[Any] = []

    async def blocked_pipeline() -> None:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.blpop(["q"], timeout=30)
            pipe.set("after", "1")
            results.extend(await pipe.execute())

    async with anyio.create_task_group() as tg:
        tg.start_soon(blocked_pipeline)
        with anyio.fail_after(30):
            # fakeredis signals nothing when a BLPOP parks: look for its callback.
            while not db._change_callbacks:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        # The SET sent after the BLPOP is queued behind it, as on a server.
        assert await other.get("after") is None
        await other.rpush("q", "x")
    assert results == [(b"q", b"x"), True]
    assert await other.get("after") == b"1"
    await redis.aclose()
    await other.aclose()


async def test_the_virtual_clock_still_sees_every_command() -> None:
    name = f"embedded-{uuid.uuid4().hex}"
    redis = connection.open_redis(f"memory://{name}")
    clock = VirtualClock()
    attach(connection._memory_server(name), clock)
    try:
        clock.advance(86_400)
        seconds, _ = await redis.time()
        assert seconds >= int(clock.time()) - 60
        await redis.function_load(LIBRARY, replace=True)
        seconds = int((await redis.fcall("dt_call", 0, "TIME"))[0])
        assert seconds >= int(clock.time()) - 60
    finally:
        detach(connection._memory_server(name))
        await redis.aclose()


async def _keyspace_messages(redis: Any) -> list[Any]:
    """What a ``__keyspace@0__:ks`` subscriber hears while a library function
    and then a plain command write the key."""
    await redis.function_load(LIBRARY, replace=True)
    pubsub = redis.pubsub()
    await pubsub.subscribe("__keyspace@0__:ks")
    try:
        await redis.fcall("dt_call", 1, "ks", "SET", "ks", "1")
        await redis.execute_command("INCR", "ks")
        heard = []
        for _ in range(10):  # the subscribe confirmation reads as None
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.02)
            if message is not None:
                heard.append((message["channel"], message["data"]))
        return heard
    finally:
        await pubsub.aclose()


async def test_keyspace_messages_as_stock_fakeredis_sends_them() -> None:
    # The fast socket decides once per command whether anyone listens; the
    # writes made inside a function are announced all the same.
    stock = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 2)))
    fast = open_embedded(fakeredis.FakeServer(version=(7, 2)))
    try:
        heard = await _keyspace_messages(fast)
        assert heard == await _keyspace_messages(stock)
        assert [data for _, data in heard] == [b"set", b"incr"]
    finally:
        await stock.aclose()
        await fast.aclose()
