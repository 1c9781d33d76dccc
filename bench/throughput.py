"""Throughput and latency: flowfabric_worker vs SAQ, arq and taskiq, each on its
own fresh private redis-server, with the same workloads for every system.

Workloads (per system, per repetition, in this order):

* submit: N no-op tasks enqueued one after another, each awaited (tasks/s);
  then, for ffw only and if ``Client.submit_many`` exists, the same in batches;
* drain: one worker process started after the submissions runs them
  (tasks/s from the worker's ``ready`` line to the N-th completion);
* round trip: sequential submit -> result with that worker idle in between,
  each caller waiting the way the system's users wait (p50/p99 ms);
* retry: N tasks that fail on their first attempt and succeed on the second,
  retried by each system's own mechanism with no delay, run by a fresh worker
  (tasks/s, counted on the successes).

Systems are interleaved (A B C D A B C D ...); the summary gives medians and
the per-repetition paired ratios ffw/peer. Worker CPU comes from the child's
own counters (psutil, else /proc), Redis CPU from ``INFO cpu`` deltas.
Not a test: nothing here asserts. Run ``python bench/throughput.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import IO, Any

import redis.asyncio as aioredis
from local_redis import local_redis  # bench/ is on sys.path when run as a script
from peers import DONE_KEY, PEERS, load

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is in the bench extra
    psutil = None

WARMUP_TRIPS = 5

# (key, label, better, format); "higher" for rates, "lower" for time and CPU.
METRICS: list[tuple[str, str, str, str]] = [
    ("submit_per_s", "submit/s", "higher", "{:.0f}"),
    ("submit_batch_per_s", "submit, batches/s", "higher", "{:.0f}"),
    ("drain_per_s", "drain/s", "higher", "{:.0f}"),
    ("retry_per_s", "retry/s", "higher", "{:.0f}"),
    ("rt_p50_ms", "round trip p50 ms", "lower", "{:.2f}"),
    ("rt_p99_ms", "round trip p99 ms", "lower", "{:.2f}"),
    ("submit_client_cpu_us", "submit: client CPU µs/task", "lower", "{:.0f}"),
    ("submit_redis_cpu_us", "submit: Redis CPU µs/task", "lower", "{:.0f}"),
    ("drain_worker_cpu_us", "drain: worker CPU µs/task", "lower", "{:.0f}"),
    ("drain_redis_cpu_us", "drain: Redis CPU µs/task", "lower", "{:.0f}"),
    ("retry_worker_cpu_us", "retry: worker CPU µs/task", "lower", "{:.0f}"),
    ("retry_redis_cpu_us", "retry: Redis CPU µs/task", "lower", "{:.0f}"),
    ("rt_worker_cpu_us", "round trip: worker CPU µs/trip", "lower", "{:.0f}"),
    ("rt_redis_cpu_us", "round trip: Redis CPU µs/trip", "lower", "{:.0f}"),
]


# --- machine and process counters -------------------------------------------

def machine_state() -> dict[str, Any]:
    """What the machine was doing: load average and processors."""
    one, five, fifteen = os.getloadavg()
    return {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "loadavg": [round(one, 2), round(five, 2), round(fifteen, 2)],
            "nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0))}


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    if psutil is not None:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu(r: aioredis.Redis) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@dataclass
class Meter:
    """CPU of Redis, of this process and (optionally) of a worker over a window."""

    r: aioredis.Redis
    worker_pid: int | None = None
    start: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    async def snapshot(self) -> tuple[float, float, float, float]:
        worker = proc_cpu(self.worker_pid) if self.worker_pid is not None else 0.0
        return (time.perf_counter(), await redis_cpu(self.r), time.process_time(), worker)

    async def begin(self) -> None:
        self.start = await self.snapshot()

    async def end(self) -> tuple[float, float, float, float]:
        """(elapsed s, Redis CPU s, this process's CPU s, worker CPU s)."""
        now = await self.snapshot()
        return (now[0] - self.start[0], now[1] - self.start[1],
                now[2] - self.start[2], now[3] - self.start[3])


# --- the worker child ---------------------------------------------------------

@dataclass
class WorkerProc:
    proc: subprocess.Popen[str]
    log: IO[str] = field(repr=False)

    def tail(self) -> str:
        self.log.seek(0)
        return " | ".join(self.log.read().strip().splitlines()[-3:])


SCRIPT = os.path.abspath(__file__)


def spawn_worker(system: str, url: str, concurrency: int) -> WorkerProc:
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "_worker", system, url, str(concurrency)],
        stdout=subprocess.PIPE, stderr=log, text=True, env=dict(os.environ, BENCH_URL=url))
    return WorkerProc(proc, log)


@contextlib.asynccontextmanager
async def worker(system: str, url: str, concurrency: int) -> AsyncIterator[WorkerProc]:
    """One worker process, yielded once it printed ``ready``; stopped (SIGTERM,
    then SIGKILL after 15 s) and reaped on exit."""
    w = spawn_worker(system, url, concurrency)
    proc = w.proc
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        if line.strip() != "ready":
            raise RuntimeError(f"{system} worker did not start: {w.tail()}")
        yield w
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 15)
        except TimeoutError:
            proc.kill()
            await asyncio.to_thread(proc.wait)
        if proc.stdout is not None:
            proc.stdout.close()
        w.log.close()


async def wait_done(r: aioredis.Redis, target: int, limit: float, w: WorkerProc) -> None:
    deadline = time.perf_counter() + limit
    while int(await r.get(DONE_KEY) or 0) < target:
        if time.perf_counter() > deadline or w.proc.poll() is not None:
            raise TimeoutError(f"{int(await r.get(DONE_KEY) or 0)} of {target} done; "
                               f"worker: {w.tail() or 'no output'}")
        await asyncio.sleep(0.002)


async def extra_runs(r: aioredis.Redis, n: int) -> float:
    """Task bodies that ran more than once: the completion counter 0.3 s
    after it reached ``n`` (a lost task never gets there: wait_done fails)."""
    await asyncio.sleep(0.3)
    return float(int(await r.get(DONE_KEY) or 0) - n)


# --- one system, one repetition -------------------------------------------------

@dataclass
class Run:
    rep: int
    system: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    machine: dict[str, Any] = field(default_factory=dict)


WORKLOADS = ("submit", "drain", "roundtrip", "retry", "batch")


async def run_once(run: Run, url: str, n: int, trips: int, concurrency: int,
                   batch: int, workloads: frozenset[str] = frozenset(WORKLOADS)) -> None:
    m = run.metrics
    peer = load(run.system)
    r = aioredis.Redis.from_url(url)
    phase = "open"
    try:
        await peer.open(url)
        try:
            # drain runs the tasks submit queued: it needs them.
            if workloads & {"submit", "drain"}:
                phase = "submit"
                await r.delete(DONE_KEY)
                meter = Meter(r)
                await meter.begin()
                for _ in range(n):
                    await peer.submit()
                secs, rcpu, ccpu, _ = await meter.end()
                m.update(submit_per_s=n / secs, submit_redis_cpu_us=rcpu / n * 1e6,
                         submit_client_cpu_us=ccpu / n * 1e6)

            if workloads & {"drain", "roundtrip"}:
                async with worker(run.system, url, concurrency) as w:
                    meter = Meter(r, w.proc.pid)
                    if "drain" in workloads:
                        phase = "drain"
                        await meter.begin()
                        await wait_done(r, n, max(60.0, n / 20), w)
                        secs, rcpu, _, wcpu = await meter.end()
                        m.update(drain_per_s=n / secs, drain_redis_cpu_us=rcpu / n * 1e6,
                                 drain_worker_cpu_us=wcpu / n * 1e6,
                                 drain_extra_runs=await extra_runs(r, n))
                    elif "submit" in workloads:
                        # Queued by submit: run them before the round trips.
                        await wait_done(r, n, max(60.0, n / 20), w)

                    if "roundtrip" in workloads:
                        phase = "round trip"
                        for _ in range(WARMUP_TRIPS):
                            await peer.roundtrip()
                        samples: list[float] = []
                        await meter.begin()
                        for _ in range(trips):
                            t = time.perf_counter()
                            await peer.roundtrip()
                            samples.append((time.perf_counter() - t) * 1000)
                        _, rcpu, _, wcpu = await meter.end()
                        m.update(rt_p50_ms=statistics.median(samples),
                                 rt_p99_ms=pct(samples, 0.99),
                                 rt_redis_cpu_us=rcpu / trips * 1e6,
                                 rt_worker_cpu_us=wcpu / trips * 1e6)

            if "retry" in workloads:
                phase = "retry"
                await r.delete(DONE_KEY)
                for _ in range(n):
                    await peer.submit_flaky()
                async with worker(run.system, url, concurrency) as w:
                    meter = Meter(r, w.proc.pid)
                    await meter.begin()
                    await wait_done(r, n, max(60.0, n / 10), w)
                    secs, rcpu, _, wcpu = await meter.end()
                    m.update(retry_per_s=n / secs, retry_redis_cpu_us=rcpu / n * 1e6,
                             retry_worker_cpu_us=wcpu / n * 1e6,
                             retry_extra_runs=await extra_runs(r, n))

            if "batch" in workloads:
                phase = "submit batch"
                t0 = time.perf_counter()
                done = 0
                while done < n:
                    size = min(batch, n - done)
                    if not await peer.submit_batch(size):
                        break
                    done += size
                if done:
                    m["submit_batch_per_s"] = done / (time.perf_counter() - t0)
        finally:
            await peer.close()
    except Exception as exc:  # one system failing must not hide the others
        run.error = f"{phase}: {type(exc).__name__}: {exc}"
    finally:
        await r.aclose()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- summary --------------------------------------------------------------------

def summarize(runs: list[Run], systems: list[str]) -> dict[str, Any]:
    """Medians per system and metric; paired ratios ffw/peer per repetition."""
    medians: dict[str, dict[str, float]] = {}
    for system in systems:
        medians[system] = {}
        for key, *_ in METRICS:
            values = [r.metrics[key] for r in runs if r.system == system and key in r.metrics]
            if values:
                medians[system][key] = statistics.median(values)
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    ours = {r.rep: r.metrics for r in runs if r.system == "ffw"}
    for system in systems:
        if system == "ffw" or not ours:
            continue
        ratios[system] = {}
        for key, *_ in METRICS:
            paired = [ours[r.rep][key] / r.metrics[key] for r in runs
                      if r.system == system and key in r.metrics and r.rep in ours
                      and key in ours[r.rep] and r.metrics[key]]
            if paired:
                ratios[system][key] = {"median": statistics.median(paired),
                                       "min": min(paired), "max": max(paired)}
    # Exactness is not a median: the worst repetition counts.
    extra = {system: {key: max(r.metrics[key] for r in runs
                               if r.system == system and key in r.metrics)
                      for key in ("drain_extra_runs", "retry_extra_runs")
                      if any(r.system == system and key in r.metrics for r in runs)}
             for system in systems}
    return {"medians": medians, "ratios": ratios, "extra_runs": extra}


def table(summary: dict[str, Any], systems: list[str]) -> str:
    medians, ratios = summary["medians"], summary["ratios"]
    head = ["", *systems, *(f"ffw/{s}" for s in ratios)]
    rows = [head]
    for key, label, _better, fmt in METRICS:
        cells = [fmt.format(medians[s][key]) if key in medians[s] else "-" for s in systems]
        for s in ratios:
            q = ratios[s].get(key)
            cells.append("-" if q is None else
                         f"{q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f})")
        if any(c != "-" for c in cells):
            rows.append([label, *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [rows[0][0].ljust(widths[0]) + "  "
             + "  ".join(c.rjust(w) for c, w in zip(rows[0][1:], widths[1:], strict=True))]
    lines += [r[0].ljust(widths[0]) + "  "
              + "  ".join(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))
              for r in rows[1:]]
    extra = summary.get("extra_runs", {})
    if any(extra.values()):
        worst = ", ".join(
            f"{s} {int(e.get('drain_extra_runs', 0))}, {int(e.get('retry_extra_runs', 0))}"
            for s, e in extra.items() if e)
        lines.append(f"task bodies run more than once, worst repetition (drain, retry): {worst}")
    lines.append("medians over the repetitions; ffw/peer: median of the per-repetition "
                 "ratios (min-max). Rates: > 1 means ffw is faster; ms and CPU: < 1 "
                 "means ffw is lower (better).")
    return "\n".join(lines)


def versions(systems: list[str]) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for system in systems:
        try:
            packages = load(system).packages
        except ImportError:
            continue
        for dist in packages:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                out[dist] = importlib.metadata.version(dist)
    return out


# --- main -------------------------------------------------------------------------

async def one(system: str, rep: int, args: argparse.Namespace,
              server_version: list[str]) -> Run:
    run = Run(rep, system, machine=machine_state())
    with local_redis(args.url) as url:
        os.environ["BENCH_URL"] = url
        r = aioredis.Redis.from_url(url)
        try:
            if args.url is not None:
                await r.flushdb()
            if not server_version:
                server_version.append(str((await r.info("server"))["redis_version"]))
        finally:
            await r.aclose()
        await run_once(run, url, args.n, args.trips, args.concurrency, args.batch,
                       frozenset(args.workloads))
    shown = ", ".join(f"{k}={v:.4g}" for k, v in run.metrics.items())
    print(f"rep {rep} {system}: {shown}{' ERROR ' + run.error if run.error else ''}",
          file=sys.stderr, flush=True)
    return run


async def main_async(args: argparse.Namespace) -> None:
    start = machine_state()
    print(f"start {start['time']}: load average {start['loadavg']}, nproc {start['nproc']} "
          f"(usable {start['usable_cpus']})", flush=True)
    runs: list[Run] = []
    server_version: list[str] = []
    for rep in range(1, args.reps + 1):
        for system in args.systems:
            runs.append(await one(system, rep, args, server_version))
    end = machine_state()
    summary = summarize(runs, args.systems)
    print(f"N={args.n}, round trips={args.trips} (+{WARMUP_TRIPS} warm-up), "
          f"repetitions={args.reps}, concurrency={args.concurrency}, "
          f"redis-server {server_version[0] if server_version else '?'} "
          f"({'shared: ' + args.url if args.url else 'fresh, private, per system and repetition'})")
    print(table(summary, args.systems))
    for run in runs:
        if run.error:
            print(f"rep {run.rep} {run.system} error: {run.error}")
    print(f"end {end['time']}: load average {end['loadavg']}, nproc {end['nproc']}", flush=True)
    if args.json is not None:
        peers_info: dict[str, dict[str, str]] = {}
        for system in args.systems:
            with contextlib.suppress(ImportError):
                p = load(system)
                peers_info[system] = {"wait": p.wait_method, "worker_wakeup": p.worker_wakeup,
                                      "retry": p.retry_method}
        doc = {"machine": {"start": start, "end": end, "platform": platform.platform()},
               "versions": {**versions(args.systems), "redis-server": server_version[:1]},
               "settings": {"n": args.n, "trips": args.trips, "warmup_trips": WARMUP_TRIPS,
                            "reps": args.reps, "concurrency": args.concurrency,
                            "batch": args.batch, "systems": args.systems,
                            "workloads": args.workloads,
                            "shared_url": args.url},
               "peers": peers_info, **summary,
               "runs": [{"rep": r.rep, "system": r.system, "metrics": r.metrics,
                         "error": r.error, "machine": r.machine} for r in runs]}
        write_json(doc, args.json)


def write_json(doc: dict[str, Any], path: str) -> None:
    text = json.dumps(doc, indent=2)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text + "\n")


def worker_main(system: str, url: str, concurrency: int) -> None:
    os.environ["BENCH_URL"] = url
    run: Callable[[str, int], Any] = load(system).run_worker
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(url, concurrency))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "_worker":
        worker_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(PEERS), choices=list(PEERS),
                        help="systems, in the order each repetition runs them (default: all)")
    parser.add_argument("-n", type=int, default=5000, help="tasks per submit/drain/retry")
    parser.add_argument("--trips", type=int, default=300, help="sequential round trips")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--concurrency", type=int,
                        default=int(os.environ.get("BENCH_CONCURRENCY", "16")),
                        help="worker concurrency, the same for every system (default 16)")
    parser.add_argument("--batch", type=int, default=100, help="ffw submit_many batch size")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS,
                        help="workloads to run (default: all; drain implies submit, "
                             "whose tasks it runs)")
    parser.add_argument("--url", help="use this Redis (flushed before each system) instead of "
                                      "a fresh private redis-server per system and repetition")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="also write the results as JSON to PATH (stdout without PATH)")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
