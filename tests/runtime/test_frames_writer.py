"""FrameWriter batching and the frames() consumer on both backends."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.stream_reader import frames
from flowfabric_worker.context.frame_writer import FrameWriter
from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.ids import mint_execution_id
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.streams import ReadAttemptStream, ReadSummary, StreamMode

pytestmark = pytest.mark.anyio

LEASE = "11111111-1111-4111-8111-111111111111"


async def active(raw: Any) -> str:
    eid = mint_execution_id(lane_id="default")
    await raw.hset(ExecKeys(eid).core, mapping={
        "lifecycle_phase": "active", "ownership_state": "leased",
        "current_attempt_index": "0", "current_lease_id": LEASE, "current_lease_epoch": "1",
        "lease_expires_at": str(int(time.time() * 1000) + 60_000),
    })
    return eid


@pytest.fixture
async def backend(url: str, raw: Any) -> Any:
    b = await Backend.open(url)
    try:
        yield b
    finally:
        await b.close()


def writer(backend: Backend, eid: str, **kw: Any) -> FrameWriter:
    return FrameWriter(backend, eid=eid, attempt_index=0, lease_id=LEASE, lease_epoch=1, **kw)


async def wait_sent(w: FrameWriter, n: int) -> None:
    for _ in range(500):
        if w.sent >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {w.sent} of {n} frames sent")


async def test_batches_keep_order_and_flush(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    w = writer(backend, eid, max_batch=10, max_pending_batches=3, max_delay_s=60)
    for i in range(25):
        await w.stdout(str(i))
    assert w.sent == 0  # below the 30-frame high-water mark the producer never waits
    # A full batch wakes the flusher, which then sends everything queued, in
    # batches of at most 10, without waiting for the 60 s delay.
    await wait_sent(w, 25)
    assert w.batches == 3
    await w.event("done", {"n": 25})
    await w.summary({"progress": {"n": 25}})
    assert w.sent == 25  # below the caps: these wait for the delay or a flush
    await w.aclose()
    assert w.sent == 27 and w.batches == 4
    page = await backend.read_attempt_stream(ReadAttemptStream(eid=eid, attempt_index=0))
    assert [f.text for f in page.frames[:25]] == [str(i) for i in range(25)]
    assert json.loads(page.frames[25].text) == {"event": "done", "data": {"n": 25}}
    s = await backend.read_summary(ReadSummary(eid=eid, attempt_index=0))
    assert s.document == {"progress": {"n": 25}} and s.version == 1
    meta = await backend.read_stream_meta(eid, 0)
    assert meta is not None and meta.frame_count == 27 and meta.last_sequence == page.frames[-1].id


async def test_byte_cap_splits_batches_and_backpressure_keeps_order(
        backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    w = writer(backend, eid, max_batch=50, max_batch_bytes=100, max_pending_batches=2,
               max_delay_s=60)
    for i in range(30):
        await w.stdout(f"{i:040d}")  # 40 bytes: two fit under the 100-byte cap
    await w.aclose()
    assert w.sent == 30 and w.batches >= 15  # never more than two frames per call
    # A producer far ahead of Redis is held back, never reordered.
    w = writer(backend, eid, max_batch=8, max_pending_batches=2, max_delay_s=60)
    for i in range(30, 1030):
        await w.stdout(str(i))
    await w.aclose()
    page = await backend.read_attempt_stream(ReadAttemptStream(eid=eid, attempt_index=0,
                                                               count_limit=2000))
    assert [int(f.text) for f in page.frames] == list(range(1030))
    assert w.batches >= 1000 // 8


async def test_oversize_frame_is_refused_before_queueing(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    w = writer(backend, eid, max_payload_bytes=8, max_delay_s=60)
    await w.stdout("12345678")
    with pytest.raises(InvalidInput, match="max_payload_bytes"):
        await w.stdout("123456789")
    with pytest.raises(InvalidInput, match="JSON object"):
        await w.write("summary", "[1]", mode=StreamMode.SUMMARY)
    await w.stdout("after")  # the writer is still usable
    await w.aclose()
    page = await backend.read_attempt_stream(ReadAttemptStream(eid=eid, attempt_index=0))
    assert [f.text for f in page.frames] == ["12345678", "after"]


async def test_lease_change_refuses_the_next_batch_whole(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    w = writer(backend, eid, max_delay_s=60)
    for i in range(5):
        await w.stdout(str(i))
    await w.flush()
    await raw.hset(ExecKeys(eid).core, "current_lease_epoch", "2")  # reclaimed elsewhere
    for i in range(5, 10):
        await w.stdout(str(i))
    with pytest.raises(ContractError) as ei:
        await w.flush()
    assert ei.value.code == "stale_owner_cannot_append"
    with pytest.raises(ContractError):
        await w.stdout("more")
    page = await backend.read_attempt_stream(ReadAttemptStream(eid=eid, attempt_index=0))
    assert [f.text for f in page.frames] == ["0", "1", "2", "3", "4"]
    meta = await backend.read_stream_meta(eid, 0)
    assert meta is not None and meta.frame_count == 5


async def test_time_based_flush(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    w = writer(backend, eid, max_delay_s=0.01)
    await w.stderr("late")
    for _ in range(100):
        if w.sent:
            break
        await asyncio.sleep(0.01)
    assert w.sent == 1


async def test_refusal_surfaces_and_writer_stays_failed(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    w = writer(backend, eid, max_delay_s=60)
    await w.stdout("ok")
    await w.flush()
    await raw.hset(ExecKeys(eid).stream_meta(0), "closed_at", "1")
    await w.stdout("refused")
    with pytest.raises(ContractError) as ei:
        await w.flush()
    assert ei.value.code == "stream_closed"
    with pytest.raises(ContractError):
        await w.stdout("after")
    with pytest.raises(InvalidInput):
        await writer(backend, eid, max_payload_bytes=4).stdout("12345")


async def test_consumer_replays_tails_and_stops_on_close(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    w = writer(backend, eid, max_delay_s=0.005)
    await w.stdout("a")
    await w.write("tick", "live", mode=StreamMode.BEST_EFFORT)
    await w.flush()
    seen: list[str] = []

    async def consume() -> None:
        async for f in frames(backend, eid, include_best_effort=False, block_ms=50):
            seen.append(f.text)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await w.stdout("b")
    await w.stdout("c")
    await w.flush()
    await asyncio.sleep(0.05)
    await raw.hset(ExecKeys(eid).stream_meta(0), mapping={"closed_at": "5",
                                                          "closed_reason": "attempt_success"})
    await asyncio.wait_for(task, 5)
    assert seen == ["a", "b", "c"]
    replay = [f.text async for f in frames(backend, eid, follow=False,
                                           after=None, attempt=0)]
    assert replay == ["a", "live", "b", "c"]
    first = (await backend.read_attempt_stream(
        ReadAttemptStream(eid=eid, attempt_index=0))).frames[0].id
    assert [f.text async for f in frames(backend, eid, after=first)] == ["live", "b", "c"]


# Real server only: killing client connections (CLIENT KILL) needs one.
@pytest.mark.parametrize("url", ["redis"], indirect=True)
async def test_consumer_resumes_after_connection_drop(url: str, backend: Backend,
                                                      raw: Any) -> None:
    eid = await active(raw)
    w = writer(backend, eid, max_delay_s=60)
    await w.stdout("1")
    await w.flush()
    seen: list[str] = []

    async def consume() -> None:
        async for f in frames(backend, eid, block_ms=2000, reconnect_delay_s=0.01):
            seen.append(f.text)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    await raw.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await w.stdout("2")
    await w.flush()
    await raw.hset(ExecKeys(eid).stream_meta(0), "closed_at", "9")
    await asyncio.wait_for(task, 10)
    assert seen == ["1", "2"]
