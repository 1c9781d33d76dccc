"""Signal latency: from ``client.signal`` to the resumed task's result.

    python bench/signals.py [--url redis://127.0.0.1:6379/0] [--trips 200]

Without --url a private redis-server is started on a free port. One worker
process (concurrency 4, embedded scanners on) serves a task that waits for one
signal and returns. For each trip the script submits the task, waits until it
is suspended (not timed), lets the worker go idle, then times:

* ``signal``: the ``client.signal`` call alone (record reads, token, deliver,
  wake publish);
* ``resumed+completed``: from before ``client.signal`` until ``run.result()``
  returns — the worker is woken, claims the resumed execution, re-runs the
  function from the top (the wait returns the journaled signal) and completes.

Not a test: nothing here asserts. Target of issue 4: p50 <= 10 ms locally.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import anyio
from local_redis import local_redis  # bench/ is on sys.path when run as a script

from flowfabric_worker import Client, TaskContext, task

LANE = "bench-signals"


@task(name="bench.wait_once", lane=LANE)
async def wait_once(ctx: TaskContext) -> int:
    sig = await ctx.wait_for_signal("go")
    return int(sig.payload["n"])


async def _worker(url: str) -> None:
    from flowfabric_worker.worker.worker import Worker

    async with Client.connect(url) as client:
        worker = Worker(client, tasks=[wait_once], lanes=[LANE], concurrency=4, lease_ttl=30)
        print("ready", flush=True)
        await worker.run(install_signals=True)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def init_keystore(url: str) -> None:
    async with Client.connect(url, init_secrets=True):
        pass


def start_worker(url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_worker", url],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("worker did not start")
    return proc


async def measure(url: str, trips: int, idle: float) -> tuple[list[float], list[float]]:
    total: list[float] = []
    signal_only: list[float] = []
    async with Client.connect(url) as client:
        for n in range(trips):
            run = await wait_once.submit(client)
            await run.wait_for("suspended", timeout=30)
            await anyio.sleep(idle)  # the worker's claim loop goes idle
            t0 = time.perf_counter()
            await client.signal(run.id, "go", {"n": n})
            t1 = time.perf_counter()
            assert await run.result(timeout=30) == n
            t2 = time.perf_counter()
            signal_only.append((t1 - t0) * 1000)
            total.append((t2 - t0) * 1000)
    return signal_only, total


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_worker":
        anyio.run(_worker, sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="Redis URL (default: start a private redis-server)")
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument("--idle", type=float, default=0.05,
                        help="seconds to leave the worker idle before each signal")
    args = parser.parse_args()
    with local_redis(args.url) as url:
        anyio.run(init_keystore, url)  # before the worker: it checks at start
        worker = start_worker(url)
        try:
            signal_only, total = anyio.run(measure, url, args.trips, args.idle)
        finally:
            worker.terminate()
            worker.wait(30)
    print(f"trips={args.trips}, idle={args.idle}s before each signal, url={url}")
    print("                      p50 ms   p95 ms   p99 ms   mean ms")
    for label, xs in (("signal", signal_only), ("resumed+completed", total)):
        print(f"{label:<20} {_pct(xs, .5):8.2f} {_pct(xs, .95):8.2f} {_pct(xs, .99):8.2f} "
              f"{statistics.fmean(xs):9.2f}")
    print(f"target: resumed+completed p50 <= 10 ms -> "
          f"{'met' if _pct(total, .5) <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
