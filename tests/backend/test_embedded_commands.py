"""The direct command handlers of the embedded server
(``backend/embedded_commands.py``): through ``redis.call`` they give the
replies, errors, key expiry, ``WATCH`` and keyspace behaviour of stock
fakeredis, edge cases included."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import fakeredis
import pytest
from redis.exceptions import RedisError, WatchError

from flowfabric_worker.backend import embedded_socket
from flowfabric_worker.backend.embedded_transport import open_embedded

pytestmark = pytest.mark.anyio

T = TypeVar("T")

LIBRARY = """#!lua name=directtest
redis.register_function('d_call', function(keys, args) return redis.call(unpack(args)) end)
redis.register_function('d_numbers', function(keys, args)
  return {redis.call('ZADD', keys[1], 2, 'n'), redis.call('HSET', keys[2], 'f', 7),
          redis.call('ZSCORE', keys[1], 'n'), redis.call('HGET', keys[2], 'f')}
end)
redis.register_function('d_sign', function(keys, args)
  -- a TTL's sign, not its value (which depends on when it is read)
  local r = redis.call(unpack(args))
  if type(r) == 'table' then for i, v in ipairs(r) do if v > 0 then r[i] = 1 end end
  elseif r > 0 then r = 1 end
  return r
end)
redis.register_function('d_id', function(keys, args)
  -- a stream ID (the time it was made) reads as ID
  local r = redis.call(unpack(args))
  if type(r) == 'string' and string.match(r, '^%d+%-%d+$') then return 'ID' end
  return r
end)
redis.register_function('d_entries', function(keys, args)
  -- a stream's entries without their IDs
  local out = {}
  for _, entry in ipairs(redis.call('XRANGE', keys[1], '-', '+')) do out[#out + 1] = entry[2] end
  return out
end)
redis.register_function{function_name='d_ro', flags={'no-writes'},
  callback=function(keys, args) return redis.call(unpack(args)) end}
"""

# Every handled command in its plain form, on new and existing keys, then the
# cases it must leave to fakeredis. ``SLEEP`` lets the 20 ms TTLs set by
# ``ONCE`` steps (run once) pass; ``SIGN`` runs a TTL read and keeps its
# sign; ``ID`` reads a stream ID as ``ID``; ``ENTRIES`` lists a stream's
# entries without their IDs. Everything goes through ``redis.call``, as in
# our library: fakeredis 2.41's ``redis.pcall`` hands errors to Lua as Python
# objects, which then read back as whatever error came before, on stock and
# fast servers alike, depending on what ran earlier in the process.
STEPS: list[tuple[str, ...]] = [
    ("HSET", "h", "a", "1", "b", "2"), ("HSET", "h", "a", "3", "c", "4"),
    ("HSET", "h", "d", "1", "d", "2"), ("HGETALL", "h"), ("HMGET", "h", "a", "zz", "d"),
    ("HGET", "h", "a"), ("HGET", "h", "zz"), ("HGET", "nohash", "a"), ("HMGET", "nohash", "a"),
    ("HGETALL", "nohash"), ("HSET", "h"), ("HSET", "h", "a"), ("HSET", "h", "a", "1", "b"),
    ("HGET", "h"), ("HGET", "h", "a", "b"), ("HMGET", "h"), ("HGETALL", "h", "x"),
    ("HPEXPIRE", "h", "100000", "FIELDS", "1", "a"), ("HSET", "h", "a", "5"),
    ("SIGN", "HPTTL", "h", "FIELDS", "1", "a"),
    ("ONCE", "HPEXPIRE", "h", "20", "FIELDS", "1", "b"), ("SLEEP",),
    ("HGET", "h", "b"), ("HMGET", "h", "b", "c"), ("HGETALL", "h"), ("HSET", "h", "b", "6"),
    ("SET", "s", "v"), ("GET", "s"), ("GET", "missing"), ("GET", "h"), ("HGET", "s", "a"),
    ("HSET", "s", "a", "1"), ("HMGET", "s", "a"), ("HGETALL", "s"), ("GET",), ("GET", "s", "x"),
    ("PEXPIRE", "s", "100000"), ("SET", "s", "w"), ("SIGN", "PTTL", "s"), ("SET", "h", "over"),
    ("TYPE", "h"), ("SET", "s"), ("SET", "s", "v", "PX", "100000"), ("SIGN", "PTTL", "s"),
    ("SET", "s", "v", "NX"), ("SET", "s", "v", "BAD"), ("SET", "s", "a", "b", "c"),
    ("EXISTS", "s", "s", "h", "missing"), ("EXISTS",), ("DEL", "s", "s", "missing"), ("DEL",),
    ("EXISTS", "s"), ("SET", "e", "1"), ("ONCE", "PEXPIRE", "e", "20"), ("HSET", "eh", "a", "1"),
    ("ONCE", "PEXPIRE", "eh", "20"), ("ZADD", "ez", "1", "a"), ("ONCE", "PEXPIRE", "ez", "20"),
    ("SLEEP",),
    ("EXISTS", "e", "eh", "ez"), ("GET", "e"), ("HGET", "eh", "a"), ("ZREM", "ez", "a"),
    ("SET", "e", "1"), ("ONCE", "PEXPIRE", "e", "20"), ("SLEEP",), ("DEL", "e"), ("SET", "e2", "1"),
    ("ONCE", "PEXPIRE", "e2", "20"), ("HSET", "e3", "a", "1"), ("ONCE", "PEXPIRE", "e3", "20"),
    ("SLEEP",),
    ("HSET", "e3", "b", "2"), ("HGETALL", "e3"), ("SADD", "e2", "x"),
    ("ZADD", "z", "1", "a", "2.5", "b"), ("ZADD", "z", "1", "a"), ("ZADD", "z", "3", "a", "4", "c"),
    ("ZRANGE", "z", "0", "-1", "WITHSCORES"), ("ZADD", "z", "-0", "m"), ("ZSCORE", "z", "m"),
    ("ZADD", "z", "-12.500", "n"), ("ZADD", "z", "1e3", "o"), ("ZADD", "z", "inf", "p"),
    ("ZADD", "z", "+inf", "p"), ("ZADD", "z", "nan", "q"), ("ZADD", "z", "abc", "q"),
    ("ZADD", "z", " 1", "q"), ("ZADD", "z", "0x10", "q"), ("ZADD", "z", "1.", "q"),
    ("ZADD", "z", ".5", "q"), ("ZADD", "z", "1_0", "q"), ("ZADD", "z", "1"), ("ZADD", "z"),
    ("ZADD", "z", "1", "a", "2"), ("ZADD", "z", "NX", "9", "a"),
    ("ZADD", "z", "XX", "9", "zz"),
    ("ZADD", "z", "CH", "9", "a"), ("ZADD", "z", "GT", "1", "a"), ("ZADD", "z", "INCR", "1", "a"),
    ("ZADD", "z", "nx", "1", "new"), ("ZADD", "h", "1", "a"), ("ZADD", "s2", "1", "a"),
    ("ZADD", "z", "123456789012345678", "big"), ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
    ("ZREM", "z", "a", "nope", "a"), ("ZREM", "z"), ("ZREM", "missing", "a"), ("ZREM", "h", "a"),
    ("ZADD", "z1", "1", "only"), ("ZREM", "z1", "only"), ("EXISTS", "z1"),
    ("SADD", "st", "a", "b", "a"), ("SADD", "st", "a"), ("SADD", "st", "c"), ("SADD", "st"),
    ("SMEMBERS", "st"), ("SADD", "h", "x"), ("SREM", "st", "a", "zz", "a"), ("SREM", "st"),
    ("SREM", "missing", "a"), ("SREM", "h", "a"), ("SREM", "st", "b", "c"), ("EXISTS", "st"),
    ("ZADD", "zs", "2.5", "a", "-12.5", "b", "123456789012345678", "c", "0.1", "d"),
    ("ZSCORE", "zs", "a"), ("ZSCORE", "zs", "b"), ("ZSCORE", "zs", "c"), ("ZSCORE", "zs", "d"),
    ("ZSCORE", "zs", "zz"), ("ZSCORE", "missing", "a"), ("ZSCORE", "h", "a"), ("ZSCORE", "zs"),
    ("ZSCORE", "zs", "a", "b"), ("SET", "px", "1"), ("PEXPIREAT", "px", "99999999999999"),
    ("SIGN", "PTTL", "px"), ("PEXPIREAT", "missing", "99999999999999"), ("PEXPIREAT", "px", "x"),
    ("PEXPIREAT", "px", "007"), ("PEXPIREAT", "px", "+5"), ("PEXPIREAT", "px"),
    ("PEXPIREAT", "px", "99999999999999999999"), ("PEXPIREAT", "px", "99999999999999", "NX"),
    ("PEXPIREAT", "px", "99999999999999", "XX"), ("HSET", "pxh", "a", "1"),
    ("PEXPIREAT", "pxh", "99999999999999"), ("HSET", "pxh", "b", "2"), ("SIGN", "PTTL", "pxh"),
    ("ONCE", "PEXPIREAT", "px", "1000"), ("EXISTS", "px"), ("GET", "px"),
    ("ID", "XADD", "x", "*", "f", "v"), ("ID", "XADD", "x", "*", "f", "v", "g", "w"),
    ("ID", "XADD", "x", "MAXLEN", "~", "2", "*", "a", "1"),
    ("ID", "XADD", "x", "MAXLEN", "~", "2", "*", "b", "2"), ("XLEN", "x"), ("ENTRIES", "x"),
    ("ID", "XADD", "x", "MAXLEN", "=", "2", "*", "c", "3"), ("XLEN", "x"),
    ("ID", "XADD", "x", "maxlen", "~", "1", "*", "d", "4"), ("XLEN", "x"),
    ("ID", "XADD", "x", "MAXLEN", "~", "-1", "*", "e", "5"),
    ("ID", "XADD", "x", "MAXLEN", "~", "abc", "*", "e", "5"),
    ("ID", "XADD", "x", "MAXLEN", "~", "01", "*", "e", "5"), ("ID", "XADD", "x", "*", "f"),
    ("ID", "XADD", "x", "*"), ("ID", "XADD", "x", "MAXLEN", "~", "2", "*", "f"),
    ("ID", "XADD", "h", "*", "f", "v"), ("ID", "XADD", "x", "1-1", "f", "v"),
    ("ID", "XADD", "nomk", "NOMKSTREAM", "*", "f", "v"), ("EXISTS", "nomk"), ("ENTRIES", "x"),
    ("ID", "XADD", "ex", "*", "a", "1"), ("ONCE", "PEXPIRE", "ex", "20"), ("SLEEP",),
    ("ID", "XADD", "ex", "*", "b", "2"), ("ENTRIES", "ex"), ("SIGN", "PTTL", "ex"),
    ("ID", "XADD", "xf", "*", "k", "v"), ("ONCE", "PEXPIRE", "xf", "100000"),
    ("ID", "XADD", "xf", "MAXLEN", "~", "5", "*", "k", "w"), ("SIGN", "PTTL", "xf"),
    ("TIME", "x"), ("TYPE", "z"), ("DBSIZE",),
]


def _outcome(value: Any) -> Any:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return value


async def _run(redis: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    await redis.function_load(LIBRARY, replace=True)
    for step in STEPS:
        if step == ("SLEEP",):
            await anyio.sleep(0.05)  # the 20 ms TTLs above pass
            continue
        if step[0] == "SIGN":
            ways = [("d_sign", step[1:])]
        elif step[0] == "ID":
            ways = [("d_id", step[1:])]
        elif step[0] == "ENTRIES":
            ways = [("d_entries", step[1:])]
        elif step[0] == "ONCE":
            ways = [("d_call", step[1:])]
        else:
            ways = [(how, step) for how in ("d_call", "d_ro")]
        for how, command in ways:
            label = f"{how} {' '.join(command)}"
            numkeys = 1 if how == "d_entries" else 0
            try:
                out.append((label, _outcome(await redis.fcall(how, numkeys, *command))))
            except RedisError as exc:
                out.append((label, _outcome(exc)))
    out.append(("d_numbers", await redis.fcall("d_numbers", 2, "nz", "nh")))
    return out


@pytest.fixture
def direct_on(monkeypatch: pytest.MonkeyPatch) -> None:
    assert embedded_socket.available()
    monkeypatch.setattr(embedded_socket, "DIRECT_COMMANDS", True)


def _fast() -> Any:
    return open_embedded(fakeredis.FakeServer(version=(7, 2)))


async def _on_both(script: Callable[[Any], Awaitable[T]]) -> tuple[T, T]:
    """``script``'s outcome on stock fakeredis, then on the fast server."""
    stock = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 2)))
    fast = _fast()
    try:
        return await script(stock), await script(fast)
    finally:
        await stock.aclose()
        await fast.aclose()


async def test_same_replies_errors_and_expiry_as_stock_fakeredis(direct_on: None) -> None:
    expected, got = await _on_both(_run)
    assert len(got) == len(expected)
    for (label, g), (_, e) in zip(got, expected, strict=True):
        assert g == e, f"{label}: {g!r} != stock {e!r}"
    texts = " ".join(str(x) for x in expected)
    for needle in ("Wrong number of args", "WRONGTYPE", "not a valid float",
                   "syntax error", "Write commands are not allowed"):
        assert needle in texts


async def _inner_commands(direct: bool) -> list[str]:
    """The commands fakeredis's own dispatch ran inside one ``HSET`` call,
    with the direct handlers on or off."""
    ran: list[str] = []
    cls = embedded_socket.socket_class()
    original = cls._run_command

    def spy(self: Any, func: Any, sig: Any, args: list[Any], from_script: bool) -> Any:
        if from_script:
            ran.append(sig.name)
        return original(self, func, sig, args, from_script)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cls, "_run_command", spy)
        patch.setattr(embedded_socket, "DIRECT_COMMANDS", direct)
        fast = _fast()
        try:
            await fast.function_load(LIBRARY, replace=True)
            assert await fast.fcall("d_call", 0, "HSET", "h", "a", "1") == 1
        finally:
            await fast.aclose()
    return ran


async def test_the_handlers_are_taken() -> None:
    """The corpus above reaches the direct handlers (it would prove nothing
    if every call fell through to fakeredis's dispatch)."""
    assert embedded_socket.available()
    assert await _inner_commands(direct=True) == []
    assert await _inner_commands(direct=False) == ["hset"]


async def _watch_outcomes(redis: Any) -> list[Any]:
    """Whether a WATCHed key's change by a function call aborts a transaction."""
    out: list[Any] = []
    await redis.function_load(LIBRARY, replace=True)
    await redis.zadd("wz", {"a": 1})
    await redis.hset("wh", "a", "1")
    await redis.set("ws", "1")
    await redis.sadd("wset", "a")
    changes = [("ZADD", "wz", "1", "a"), ("ZADD", "wz", "2", "a"), ("HSET", "wh", "a", "1"),
               ("SET", "ws", "1"), ("SADD", "wset", "a"), ("SREM", "wset", "zz"),
               ("ZREM", "wz", "zz"), ("PEXPIREAT", "wz", "99999999999999"),
               ("XADD", "wx", "*", "f", "v"), ("XADD", "wx", "MAXLEN", "~", "9", "*", "f", "v"),
               ("PEXPIREAT", "missing", "99999999999999"), ("ZSCORE", "wz", "a"),
               ("DEL", "missing"), ("DEL", "ws"), ("SREM", "wset", "a"),
               ("HGET", "wh", "a"), ("EXISTS", "wz")]
    for command in changes:
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.watch(command[1])
            await redis.fcall("d_call", 0, *command)
            pipe.multi()
            pipe.get("other")
            try:
                await pipe.execute()
                out.append("ran")
            except WatchError:
                out.append("aborted")
    return out


async def test_watch_sees_the_same_changes(direct_on: None) -> None:
    expected, got = await _on_both(_watch_outcomes)
    assert got == expected
    assert "ran" in expected and "aborted" in expected


async def test_keyspace_messages_still_come(direct_on: None) -> None:
    """With a keyspace subscriber the handlers stand aside: fakeredis's own
    path publishes the messages."""
    fast = _fast()
    try:
        await fast.config_set("notify-keyspace-events", "KEA")
        await fast.function_load(LIBRARY, replace=True)
        async with fast.pubsub() as pubsub:
            await pubsub.psubscribe("__keyspace@0__:*")
            await pubsub.get_message(timeout=1)  # the psubscribe confirmation
            await fast.fcall("d_call", 0, "HSET", "kh", "a", "1")
            message = await pubsub.get_message(timeout=1)
    finally:
        await fast.aclose()
    assert message is not None and message["data"] == b"hset"


async def test_time_is_fakeredis_time(direct_on: None) -> None:
    fast = _fast()
    try:
        await fast.function_load(LIBRARY, replace=True)
        before = time.time()
        seconds, micros = await fast.fcall("d_call", 0, "TIME")
    finally:
        await fast.aclose()
    assert abs(int(seconds) + int(micros) / 1e6 - before) < 5
