"""The shared pipelined connection writes a call at once when it is idle
(backend/multiplex.py, ``Multiplexer._idle_writer``): a single submission
does not wait a loop iteration for the writer task, and the order of replies
still holds when direct and queued writes mix."""

from __future__ import annotations

import asyncio

import pytest

from flowfabric_worker.backend.multiplex import Multiplexer

pytestmark = pytest.mark.anyio



async def test_an_idle_connection_is_written_at_once(mux: Multiplexer) -> None:
    await mux.execute([("PING",)])  # connected, its reader running
    futures = mux.submit([("ECHO", "now"), ("ECHO", "too")])
    # Already handed to the socket: nothing is left for the writer task.
    assert not mux._outgoing_futures and not mux._outgoing
    assert [await f for f in futures] == [b"now", b"too"]


async def test_the_first_call_still_goes_through_the_writer_task(mux: Multiplexer) -> None:
    # No connection yet: queued, then written once the writer has connected.
    futures = mux.submit([("ECHO", "first")])
    assert mux._outgoing_futures
    assert await futures[0] == b"first"


async def test_direct_and_queued_writes_keep_the_order_of_replies(mux: Multiplexer) -> None:
    await mux.execute([("PING",)])
    big = "x" * 4_000_000  # fills the socket buffer: later calls queue behind it

    async def one(i: int) -> list[object]:
        value = big if i % 50 == 0 else f"v{i}"
        return await mux.execute([("SET", f"k{i}", value), ("GET", f"k{i}")])

    replies = await asyncio.gather(*(one(i) for i in range(300)))
    for i, (ok, got) in enumerate(replies):
        assert ok is True or ok == b"OK"
        assert got == (big if i % 50 == 0 else f"v{i}").encode()


async def test_concurrent_callers_still_share_one_write(mux: Multiplexer) -> None:
    await mux.execute([("PING",)])
    first = mux.submit([("ECHO", "a")])  # idle: written at once
    # Now a reply is in flight: the next callers queue for one shared write.
    rest = [mux.submit([("ECHO", str(i))]) for i in range(10)]
    assert len(mux._outgoing_futures) == 10
    assert await first[0] == b"a"
    assert [await f[0] for f in rest] == [str(i).encode() for i in range(10)]
