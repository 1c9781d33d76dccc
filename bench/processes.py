"""Drain rate of ``flowfabric-worker run --processes P`` for several P.

For each P (interleaved over the repetitions: 1 2 4, 1 2 4, ...): flush the
private redis-server, submit N no-op tasks, start ``run --processes P``, and
time the drain from the moment all P workers have registered to the N-th
completion (each task body ends with one ``INCR bench:done``, read every
2 ms). Tasks run before the last worker registered are left out of the rate
(reported as "early"; the children start one after another, so keep N large).
"From launch" is N over the whole command, interpreter starts included.
Then SIGTERM the supervisor and wait for its exit.
The load average and Redis CPU per task are printed with each figure: on a
box with few cores, the workers and redis-server share them.
Not a test: nothing here asserts. ``python bench/processes.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis
from local_redis import local_redis  # bench/ is on sys.path when run as a script
from peers.base import DONE_KEY
from process_tasks import noop

from flowfabric_worker import Client
from flowfabric_worker.protocol.keys import workers_index

BENCH = Path(__file__).parent


async def redis_cpu(r: aioredis.Redis) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def one(url: str, processes: int, n: int, concurrency: int) -> dict[str, float]:
    r = aioredis.Redis.from_url(url)
    await r.flushall()
    async with Client.connect(url) as client:
        for start in range(0, n, 500):
            await asyncio.gather(*(noop.submit(client) for _ in range(min(500, n - start))))
    env = dict(os.environ, BENCH_URL=url,
               PYTHONPATH=os.pathsep.join([str(BENCH), *sys.path]))
    launched = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowfabric_worker.cli", "run", "process_tasks",
        "--url", url, "--processes", str(processes), "--concurrency", str(concurrency),
        "--log-level", "WARNING", env=env, stdin=subprocess.DEVNULL)
    try:
        # The registry set, not a SCAN: the keyspace holds N executions' keys.
        while await r.scard(workers_index("default")) < processes:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        t0, cpu0 = time.perf_counter(), await redis_cpu(r)
        early = int(await r.get(DONE_KEY) or 0)
        while int(await r.get(DONE_KEY) or 0) < n:  # noqa: ASYNC110 - polling the counter
            await asyncio.sleep(0.002)
        t1, cpu1 = time.perf_counter(), await redis_cpu(r)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        await r.aclose()
    counted = n - early
    # All done before the last child registered: no window at full P.
    return {"per_s": counted / (t1 - t0) if counted else float("nan"), "early": early,
            "whole_per_s": n / (t1 - launched),
            "redis_us": (cpu1 - cpu0) / max(counted, 1) * 1e6,
            "load1": os.getloadavg()[0]}


async def main_async(args: argparse.Namespace) -> None:
    print(f"nproc {os.cpu_count()}, load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[int, list[dict[str, float]]] = {p: [] for p in args.processes}
    with local_redis(args.url) as url:
        for rep in range(args.reps):
            for p in args.processes:
                res = await one(url, p, args.n, args.concurrency)
                results[p].append(res)
                print(f"rep {rep} processes {p}: {res['per_s']:.0f} tasks/s "
                      f"(early {res['early']:.0f}; from launch {res['whole_per_s']:.0f}/s; "
                      f"redis {res['redis_us']:.0f} µs/task, "
                      f"load1 {res['load1']:.2f})", flush=True)
    print(f"\nload average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("processes  median tasks/s  range        from launch/s  redis µs/task")
    base = statistics.median(r["whole_per_s"] for r in results[args.processes[0]])
    for p, rows in results.items():
        rates = [r["per_s"] for r in rows if r["per_s"] == r["per_s"]] or [float("nan")]
        med = statistics.median(rates)
        whole = statistics.median(r["whole_per_s"] for r in rows)
        print(f"{p:>9}  {med:>14.0f}  {min(rates):.0f}-{max(rates):.0f}"
              f"{whole:>13.0f} (x{whole / base:.2f})"
              f"  {statistics.median(r['redis_us'] for r in rows):>6.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="tasks per drain (20000)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (3)")
    parser.add_argument("--concurrency", type=int, default=16, help="per process (16)")
    parser.add_argument("--url", help="use this Redis (flushed!) instead of a private one")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
