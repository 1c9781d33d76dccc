"""Attempt-stream throughput and latency against a local redis-server.

    python bench/streams.py [--url redis://127.0.0.1:6379/0] [--frames 50000]

Without --url a private redis-server is started on a free port. Reports:

* ``task``: frames/s of ONE task run by a real Worker, writing 64-byte
  durable frames with ``await ctx.stream(...)`` in a loop (default
  FrameWriter settings), timed from the task's first frame to the result
  (so the final flush and the terminal call are included);
* ``writer``: the same through a bare FrameWriter, with the number of
  ``ffw_append_frames`` calls and the server-side cost per frame (INFO
  commandstats), and the unbatched baseline — one ``ff_append_frame`` round
  trip per frame;
* producer->consumer latency p50/p99 of frames written one per ms and read by
  a ``frames()`` tail, for two flush delays, and of frames written flat out
  (the producer as fast as it can, the tail in a separate process; wall-clock
  stamps, same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from typing import Any

import anyio
from local_redis import local_redis  # bench/ is on sys.path when run as a script

from flowfabric_worker import Client, TaskContext, Worker, task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.stream_reader import frames
from flowfabric_worker.context.frame_writer import FrameWriter
from flowfabric_worker.protocol.ids import mint_execution_id
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.streams import AppendFrame

LEASE = "11111111-1111-4111-8111-111111111111"
PAYLOAD = "x" * 64


async def active(backend: Backend) -> str:
    # The fence fields alone are enough for the lite lease check of appends.
    eid = mint_execution_id(lane_id="bench")
    await backend.redis.hset(ExecKeys(eid).core, mapping={
        "lifecycle_phase": "active", "ownership_state": "leased",
        "current_attempt_index": "0", "current_lease_id": LEASE, "current_lease_epoch": "1",
        "lease_expires_at": str(int(time.time() * 1000) + 3_600_000)})
    return eid


async def fcall_usec(backend: Backend, name: str) -> float:
    """Server time spent in FCALL so far (only FCALL is counted, all functions)."""
    info = await backend.redis.info("commandstats")
    stats = info.get(f"cmdstat_{name}") or {}
    return float(stats.get("usec", 0))


@task(name="bench.stream", lane="bench")
async def stream_task(ctx: TaskContext, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await ctx.stream(PAYLOAD)
    return t0


async def through_task(url: str, n: int) -> float:
    async with Client.connect(url) as client:
        run = await stream_task.submit(client, n)
        worker = Worker(client, tasks=[stream_task], lanes=["bench"], concurrency=1,
                        scanners=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            t0 = await run.result(timeout=120)
            elapsed = time.perf_counter() - t0
            worker.stop()
        meta = await client.backend.read_stream_meta(run.id, 0)
        assert meta is not None and meta.frame_count == n, meta
        return n / elapsed


async def through_writer(backend: Backend, n: int) -> tuple[float, int, float]:
    eid = await active(backend)
    w = FrameWriter(backend, eid=eid, attempt_index=0, lease_id=LEASE, lease_epoch=1)
    usec0 = await fcall_usec(backend, "fcall")
    t0 = time.perf_counter()
    for _ in range(n):
        await w.stdout(PAYLOAD)
    await w.aclose()
    rate = n / (time.perf_counter() - t0)
    server_us = (await fcall_usec(backend, "fcall") - usec0) / n
    return rate, w.batches, server_us


async def unbatched(backend: Backend, m: int) -> float:
    eid = await active(backend)
    t0 = time.perf_counter()
    for _ in range(m):
        await backend.append_frame(AppendFrame(eid=eid, attempt_index=0, lease_id=LEASE,
                                               lease_epoch=1, frame_type="stdout",
                                               payload=PAYLOAD))
    return m / (time.perf_counter() - t0)


async def latency(backend: Backend, n: int, delay_s: float) -> list[float]:
    """Sorted latencies (s) of frames written one per ms, tailed in-process."""
    eid = await active(backend)
    w = FrameWriter(backend, eid=eid, attempt_index=0, lease_id=LEASE, lease_epoch=1,
                    max_delay_s=delay_s)
    lat: list[float] = []

    async def consume() -> None:
        async for f in frames(backend, eid, attempt=0, block_ms=200):
            lat.append(time.perf_counter() - float(f.text))
            if len(lat) == n:
                return

    reader = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    for _ in range(n):
        # 64 bytes: the write time, padded.
        await w.stdout(repr(time.perf_counter()).ljust(64))
        await asyncio.sleep(0.001)
    await w.aclose()
    await asyncio.wait_for(reader, 60)
    return sorted(lat)


def pct(lat: list[float]) -> str:
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"


def _tail_process(url: str, eid: str, n: int, out: Any) -> None:
    """Child process: tail ``eid`` until n frames arrived; send the latencies."""

    async def run() -> list[float]:
        backend = await Backend.open(url)
        lat: list[float] = []
        out.send("ready")
        try:
            async for f in frames(backend, eid, attempt=0, block_ms=200):
                lat.append(time.time() - float(f.text))
                if len(lat) == n:
                    break
        finally:
            await backend.close()
        return lat

    out.send(asyncio.run(run()))


async def flat_out(url: str, backend: Backend, n: int) -> tuple[list[float], float]:
    eid = await active(backend)
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=_tail_process, args=(url, eid, n, child))
    proc.start()
    assert await asyncio.to_thread(parent.recv) == "ready"
    await asyncio.sleep(0.2)  # the tail's first XREAD is blocking by now
    w = FrameWriter(backend, eid=eid, attempt_index=0, lease_id=LEASE, lease_epoch=1)
    t0 = time.perf_counter()
    for _ in range(n):
        await w.stdout(repr(time.time()).ljust(64))
    await w.aclose()
    rate = n / (time.perf_counter() - t0)
    lat: list[float] = await asyncio.to_thread(parent.recv)
    proc.join(10)
    return sorted(lat), rate


async def main(args: Any, url: str) -> None:
    n = args.frames
    task_rate = await through_task(url, n)
    print(f"task (ctx.stream, 64-byte durable frames, n={n}): {task_rate:,.0f} frames/s")
    backend = await Backend.open(url)
    try:
        rate, batches, server_us = await through_writer(backend, n)
        print(f"writer (FrameWriter, n={n}): {rate:,.0f} frames/s in {batches} calls "
              f"(avg {n / max(batches, 1):.0f} frames/call), "
              f"server {server_us:.2f} us/frame")
        m = max(n // 10, 100)
        print(f"unbatched (one ff_append_frame round trip per frame, n={m}): "
              f"{await unbatched(backend, m):,.0f} frames/s")
        for delay in (0.001, 0.0):
            lat = await latency(backend, args.latency_frames, delay)
            print(f"producer->consumer latency, 1 frame/ms, flush delay "
                  f"{delay * 1000:.0f} ms (n={len(lat)}): {pct(lat)}")
        # Below the 10 000-frame retention: a tail that falls further
        # behind than that loses the oldest frames to trimming.
        lat, rate = await flat_out(url, backend, 8000)
        print(f"producer->consumer latency, flat out ({rate:,.0f} frames/s, n={len(lat)}, "
              f"tail in another process): {pct(lat)}")
    finally:
        await backend.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--frames", type=int, default=50000)
    ap.add_argument("--latency-frames", type=int, default=2000)
    args = ap.parse_args()
    with local_redis(args.url) as server_url:
        asyncio.run(main(args, server_url))
