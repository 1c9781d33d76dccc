"""How the shared pipelined connection (backend/multiplex.py) reads replies
and sends queued calls: replies are parsed in the transport's data callback
(no reader task to wake), queued calls go out from one loop callback (no
writer task switch while connected), and replies keep redis-py's types."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from flowfabric_worker.backend.multiplex import Multiplexer

pytestmark = pytest.mark.anyio



async def test_no_reader_task_runs(client: aioredis.Redis) -> None:
    before = asyncio.all_tasks()
    m = Multiplexer(client.connection_pool)
    try:
        assert m.usable()
        assert await m.execute([("PING",)]) == [b"PONG"]
        started = asyncio.all_tasks() - before
        assert started == {m._writer}  # replies come from the data callback
    finally:
        await m.aclose()


async def test_queued_calls_go_out_from_a_callback(mux: Multiplexer) -> None:
    await mux.execute([("PING",)])  # connected
    first = mux.submit([("ECHO", "a")])  # idle: written at once
    rest = [mux.submit([("ECHO", str(i))]) for i in range(5)]
    assert mux._writer_wake is not None and not mux._writer_wake.is_set()
    assert await first[0] == b"a"
    assert [await f[0] for f in rest] == [str(i).encode() for i in range(5)]


async def test_error_replies_keep_redis_py_classes(mux: Multiplexer) -> None:
    missing, ok = await mux.execute([("EVALSHA", "0" * 40, 0), ("ECHO", "ok")])
    assert isinstance(missing, NoScriptError) and ok == b"ok"
    (nested,) = await mux.execute([("EVAL", "return {1, redis.error_reply('ERR inner')}", 0)])
    assert nested[0] == 1 and isinstance(nested[1], ResponseError)


async def test_decoded_responses_stay_decoded(redis_server_url: str) -> None:
    decoding = aioredis.Redis.from_url(redis_server_url, decode_responses=True)
    m = Multiplexer(decoding.connection_pool)
    try:
        assert m.usable()
        assert await m.execute([("ECHO", "text"), ("ECHO", "é")]) == ["text", "é"]
    finally:
        await m.aclose()
        await decoding.aclose()


async def test_replies_split_over_many_reads(mux: Multiplexer) -> None:
    big = b"y" * 3_000_000  # arrives in many chunks: parsed as they come
    replies = await asyncio.gather(*(
        mux.execute([("SET", f"big{i}", big), ("GET", f"big{i}"), ("ECHO", str(i))])
        for i in range(4)))
    for i, (ok, got, tail) in enumerate(replies):
        assert ok == b"OK" and got == big and tail == str(i).encode()
