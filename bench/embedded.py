"""The embedded backend (``memory://``): drain and round trip in one process.

One process holds everything: a ``memory://`` client and a ``Worker``
(concurrency 16, default scanners) on the same in-process fakeredis server.

* drain: N no-op tasks submitted first, then the worker started; tasks/s from
  the worker's start (keystore set-up included, as in a fresh demo) to the
  N-th completion, and the process's CPU ms per task. Completion is counted
  inside the task body (an in-process counter, the analogue of the
  ``INCR bench:done`` of ``throughput.py``), so the figure is the worker's
  cost, not the cost of reading N results back;
* round trip: ``--trips`` sequential ``submit`` -> ``await run.result()`` with
  that worker idle in between (p50/p99 ms, CPU ms per trip), after 5
  uncounted warm-up trips.

CPU is ``time.process_time`` (user + system of this process), so a busy
machine slows the wall-clock figures but not the CPU ones. Not a test:
nothing here asserts. ``python bench/embedded.py --help``;
``--profile PATH`` writes a cProfile of one drain (``python -m pstats PATH``).

``memory://`` takes the embedded fast paths (``backend/embedded_transport.py``,
``backend/embedded_socket.py``) when the installed fakeredis is one they were
written for. ``--stock`` measures stock fakeredis instead, and ``--compare``
alternates the two within each repetition (stock first in odd repetitions,
fast first in even ones) and prints the paired CPU ratios.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import time
import uuid
from typing import Any

import anyio

from flowfabric_worker import Client, task
from flowfabric_worker.backend import connection, embedded_socket
from flowfabric_worker.worker.worker import Worker

WARMUP_TRIPS = 5


class _Done:
    """Completions counted in the task body; ``event`` fires at ``target``."""

    count = 0
    target = 0
    event: anyio.Event | None = None


@task(name="bench.embedded.noop")
async def noop() -> int:
    _Done.count += 1
    if _Done.count == _Done.target and _Done.event is not None:
        _Done.event.set()
    return 1


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(n: int, trips: int, concurrency: int,
              profile: str | None = None) -> dict[str, float]:
    # A fresh server name per run: nothing left over from an earlier run.
    url = f"memory://bench-{uuid.uuid4().hex[:8]}"
    out: dict[str, float] = {}
    async with Client.connect(url) as client:
        for _ in range(n):
            await noop.submit(client)
        _Done.count, _Done.target, _Done.event = 0, n, anyio.Event()
        worker = Worker(client, tasks=[noop], concurrency=concurrency)
        prof = cProfile.Profile() if profile else None
        async with anyio.create_task_group() as tg:
            if prof is not None:
                prof.enable()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            tg.start_soon(worker.run)
            with anyio.fail_after(max(60.0, n / 5)):
                await _Done.event.wait()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if prof is not None and profile is not None:
                prof.disable()
                prof.dump_stats(profile)
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
    # Let the server go: a process running many repetitions would otherwise
    # keep every earlier server's records alive, and the garbage collector's
    # full passes would walk them all, slowing the later repetitions.
    connection._memory_servers.pop(url[len("memory://"):], None)
    return out


def _line(label: str, r: dict[str, float]) -> str:
    return (f"{label}: drain {r['drain_per_s']:.0f} tasks/s "
            f"({r['drain_cpu_ms_per_task']:.2f} ms CPU/task), "
            f"round trip p50 {r['rt_p50_ms']:.2f} ms p99 {r['rt_p99_ms']:.2f} ms "
            f"({r['rt_cpu_ms_per_trip']:.2f} ms CPU/trip)")


def _run(args: Any, fast: bool, profile: str | None) -> dict[str, float]:
    connection.EMBEDDED_FAST_PATHS = fast
    return anyio.run(run, args.n, args.trips, args.concurrency, profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="tasks drained (1000)")
    parser.add_argument("--trips", type=int, default=200, help="round trips (200)")
    parser.add_argument("--concurrency", type=int, default=16, help="worker slots (16)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions (1)")
    parser.add_argument("--profile", metavar="PATH",
                        help="write a cProfile of the first drain to PATH")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stock", action="store_true",
                      help="stock fakeredis, without the embedded fast paths")
    mode.add_argument("--compare", action="store_true",
                      help="stock and fast alternating in each repetition, paired ratios")
    args = parser.parse_args()
    print(f"load average before: {loadavg()}  (cpus: {os.cpu_count()}; embedded fast "
          f"paths {'available' if embedded_socket.available() else 'UNAVAILABLE'})")
    if not args.compare:
        for rep in range(args.reps):
            r = _run(args, not args.stock, args.profile if rep == 0 else None)
            print(_line(f"rep {rep + 1}{' (stock)' if args.stock else ''}", r), flush=True)
    else:
        ratios: list[tuple[float, float]] = []
        for rep in range(args.reps):
            order = (False, True) if rep % 2 == 0 else (True, False)
            pair: dict[bool, dict[str, float]] = {}
            for fast in order:
                pair[fast] = _run(args, fast, None)
                print(_line(f"rep {rep + 1} {'fast ' if fast else 'stock'}", pair[fast]),
                      flush=True)
            fast_r, stock_r = pair[True], pair[False]
            ratios.append((fast_r["drain_cpu_ms_per_task"] / stock_r["drain_cpu_ms_per_task"],
                           fast_r["rt_cpu_ms_per_trip"] / stock_r["rt_cpu_ms_per_trip"]))
        drain, trip = zip(*ratios, strict=True)
        print(f"fast/stock CPU, paired: drain {' '.join(f'{x:.2f}' for x in drain)} "
              f"(median {statistics.median(drain):.2f}), round trip "
              f"{' '.join(f'{x:.2f}' for x in trip)} (median {statistics.median(trip):.2f})")
    print(f"load average after:  {loadavg()}")


if __name__ == "__main__":
    main()
