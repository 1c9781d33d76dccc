"""Attempt-stream throughput and latency against a local redis-server.

    python bench/streams.py [--url redis://127.0.0.1:6379/0] [--frames 20000]

Without --url a private redis-server is started on a free port. Reports:
* frames/s from one producer of 64-byte durable frames through FrameWriter
  (pipelined batches), and the unbatched baseline (one round trip per frame);
* producer->consumer latency p50/p99 for frames tailed with ``frames()``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from typing import Any

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.ids import mint_execution_id
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.streams import AppendFrame
from flowfabric_worker.runtime.frames import FrameWriter
from flowfabric_worker.streams import frames

LEASE = "11111111-1111-4111-8111-111111111111"


def start_server() -> tuple[str, subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server") or "redis-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", tempfile.mkdtemp(prefix="ffw-bench-")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return f"redis://127.0.0.1:{port}/0", proc


async def active(backend: Backend) -> str:
    # The fence fields alone are enough for ff_append_frame's lite lease check.
    eid = mint_execution_id(lane_id="bench")
    await backend.redis.hset(ExecKeys(eid).core, mapping={
        "lifecycle_phase": "active", "ownership_state": "leased",
        "current_attempt_index": "0", "current_lease_id": LEASE, "current_lease_epoch": "1",
        "lease_expires_at": str(int(time.time() * 1000) + 3_600_000)})
    return eid


async def throughput(backend: Backend, n: int) -> tuple[float, float]:
    payload = "x" * 64
    eid = await active(backend)
    w = FrameWriter(backend, eid=eid, attempt_index=0, lease_id=LEASE, lease_epoch=1)
    t0 = time.perf_counter()
    for _ in range(n):
        await w.stdout(payload)
    await w.aclose()
    batched = n / (time.perf_counter() - t0)
    eid = await active(backend)
    m = max(n // 10, 100)
    t0 = time.perf_counter()
    for _ in range(m):
        await backend.append_frame(AppendFrame(eid=eid, attempt_index=0, lease_id=LEASE,
                                               lease_epoch=1, frame_type="stdout",
                                               payload=payload))
    single = m / (time.perf_counter() - t0)
    return batched, single


async def latency(backend: Backend, n: int, delay_s: float) -> list[float]:
    eid = await active(backend)
    w = FrameWriter(backend, eid=eid, attempt_index=0, lease_id=LEASE, lease_epoch=1,
                    max_delay_s=delay_s)
    lat: list[float] = []

    async def consume() -> None:
        async for f in frames(backend, eid, attempt=0, block_ms=200):
            lat.append(time.perf_counter() - float(f.text))
            if len(lat) == n:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    for _ in range(n):
        await w.stdout(repr(time.perf_counter()))
        await asyncio.sleep(0.001)
    await w.aclose()
    await asyncio.wait_for(task, 30)
    return lat


async def main(args: Any) -> None:
    proc = None
    url = args.url
    if url is None:
        url, proc = start_server()
    try:
        backend = await Backend.open(url)
        try:
            batched, single = await throughput(backend, args.frames)
            print(f"producer, 64-byte frames: batched {batched:,.0f} frames/s; "
                  f"one round trip per frame {single:,.0f} frames/s")
            for delay in (0.001, 0.02):
                lat = sorted(await latency(backend, args.latency_frames, delay))
                p50 = statistics.median(lat) * 1000
                p99 = lat[int(len(lat) * 0.99) - 1] * 1000
                print(f"producer->consumer latency (flush delay {delay * 1000:.0f} ms): "
                      f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        finally:
            await backend.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--latency-frames", type=int, default=500)
    asyncio.run(main(ap.parse_args()))
