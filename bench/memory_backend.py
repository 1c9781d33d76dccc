"""The embedded backend (``memory://``): drain and round trip in one process.

One process holds everything: a ``memory://`` client and a ``Worker``
(concurrency 16, default scanners) on the same in-process fakeredis server.

* drain: N no-op tasks submitted first, then the worker started; tasks/s from
  the worker's start to the N-th result, and process CPU seconds per task;
* round trip: ``--trips`` sequential submit -> result with that worker idle in
  between (p50/p99 ms), after 5 uncounted warm-up trips.

CPU is ``time.process_time`` (user + system of this process), so a busy
machine slows the wall-clock figures but not the CPU ones. Not a test:
nothing here asserts. ``python bench/memory_backend.py --help``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import anyio

from flowfabric_worker import Client, task
from flowfabric_worker.worker.worker import Worker

WARMUP_TRIPS = 5


@task(name="bench.memory.noop")
async def noop() -> int:
    return 1


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(n: int, trips: int, concurrency: int) -> dict[str, float]:
    # A fresh server name per run: nothing left over from an earlier run.
    url = f"memory://bench-{uuid.uuid4().hex[:8]}"
    out: dict[str, float] = {}
    async with Client.connect(url) as client:
        handles = [await noop.submit(client) for _ in range(n)]
        worker = Worker(client, tasks=[noop], concurrency=concurrency)
        async with anyio.create_task_group() as tg:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            tg.start_soon(worker.run)
            for handle in handles:
                await handle.result(timeout=300)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            out["drain_per_s"] = n / wall
            out["drain_cpu_ms_per_task"] = cpu / n * 1000

            for _ in range(WARMUP_TRIPS):
                await (await noop.submit(client)).result(timeout=60)
            times = []
            cpu0 = time.process_time()
            for _ in range(trips):
                t0 = time.perf_counter()
                await (await noop.submit(client)).result(timeout=60)
                times.append(time.perf_counter() - t0)
            out["rt_cpu_ms_per_trip"] = (time.process_time() - cpu0) / trips * 1000
            times.sort()
            out["rt_p50_ms"] = statistics.median(times) * 1000
            out["rt_p99_ms"] = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
            worker.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="tasks drained (1000)")
    parser.add_argument("--trips", type=int, default=200, help="round trips (200)")
    parser.add_argument("--concurrency", type=int, default=16, help="worker slots (16)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions (1)")
    args = parser.parse_args()
    print(f"load average before: {loadavg()}  (cpus: {os.cpu_count()})")
    for rep in range(args.reps):
        r = anyio.run(run, args.n, args.trips, args.concurrency)
        print(f"rep {rep + 1}: drain {r['drain_per_s']:.0f} tasks/s "
              f"({r['drain_cpu_ms_per_task']:.2f} ms CPU/task), "
              f"round trip p50 {r['rt_p50_ms']:.2f} ms p99 {r['rt_p99_ms']:.2f} ms "
              f"({r['rt_cpu_ms_per_trip']:.2f} ms CPU/trip)")
    print(f"load average after:  {loadavg()}")


if __name__ == "__main__":
    main()
