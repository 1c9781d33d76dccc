"""Throughput benchmark: flowfabric_worker vs SAQ vs arq on one local Redis.

Three scenarios per system, all in the same run against the same server:

* submit: N no-op tasks enqueued one after another (tasks/s);
* drain: the N tasks executed by one worker process started afterwards
  (tasks/s, timed from the worker's "ready" line to the last completion);
* round trip: 300 sequential submit -> wait for result with the worker
  running (p50/p95/p99 in ms).

Every no-op task INCRs one counter so completion is detected the same way
for all three systems. Run ``python bench/throughput.py --help``.
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from local_redis import local_redis  # bench/ is on sys.path when run as a script

DONE_KEY = "bench:done"
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))

_counter: aioredis.Redis | None = None


def _bump_client(url: str) -> aioredis.Redis:
    global _counter
    if _counter is None:
        _counter = aioredis.Redis.from_url(url)
    return _counter


# --- no-op tasks for each system --------------------------------------------

async def saq_noop(ctx: Any, **_: Any) -> int:
    await _bump_client(os.environ["BENCH_URL"]).incr(DONE_KEY)
    return 1


async def arq_noop(ctx: Any) -> int:
    await _bump_client(os.environ["BENCH_URL"]).incr(DONE_KEY)
    return 1


def _ffw_task() -> Any:
    from flowfabric_worker.authoring.decorators import task

    @task(name="bench.noop")
    async def noop() -> int:
        await _bump_client(os.environ["BENCH_URL"]).incr(DONE_KEY)
        return 1

    return noop


# --- workers (run in a child process) ---------------------------------------

async def _worker_saq(url: str) -> None:
    from saq import Queue, Worker

    queue = Queue.from_url(url)
    worker = Worker(queue, functions=[("noop", saq_noop)], concurrency=CONCURRENCY)
    print("ready", flush=True)
    await worker.start()


async def _worker_arq(url: str) -> None:
    from arq.connections import RedisSettings
    from arq.worker import Worker

    worker = Worker(functions=[arq_noop], redis_settings=RedisSettings.from_dsn(url),
                    max_jobs=CONCURRENCY, poll_delay=0.01, handle_signals=True)
    print("ready", flush=True)
    await worker.async_run()


async def _worker_ffw(url: str) -> None:
    from flowfabric_worker.client.client import Client
    from flowfabric_worker.worker.worker import Worker

    noop = _ffw_task()
    async with Client.connect(url) as client:
        worker = Worker(client, tasks=[noop], concurrency=CONCURRENCY, lease_ttl=30.0)
        print("ready", flush=True)
        await worker.run(install_signals=True)


WORKERS: dict[str, Callable[[str], Awaitable[None]]] = {
    "ffw": _worker_ffw, "saq": _worker_saq, "arq": _worker_arq,
}


# --- producers ----------------------------------------------------------------

class Producer:
    """submit() enqueues one no-op; roundtrip() submits and awaits its result."""

    async def open(self, url: str) -> None: ...
    async def close(self) -> None: ...
    async def submit(self) -> None: ...
    async def roundtrip(self) -> None: ...


class SaqProducer(Producer):
    async def open(self, url: str) -> None:
        from saq import Queue

        self.queue = Queue.from_url(url)
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def submit(self) -> None:
        await self.queue.enqueue("noop")

    async def roundtrip(self) -> None:
        await self.queue.apply("noop", timeout=10, poll_interval=0.01)


class ArqProducer(Producer):
    async def open(self, url: str) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        self.pool = await create_pool(RedisSettings.from_dsn(url))

    async def close(self) -> None:
        await self.pool.aclose()

    async def submit(self) -> None:
        await self.pool.enqueue_job("arq_noop")

    async def roundtrip(self) -> None:
        job = await self.pool.enqueue_job("arq_noop")
        assert job is not None
        await job.result(timeout=10, poll_delay=0.01)


class FfwProducer(Producer):
    async def open(self, url: str) -> None:
        from flowfabric_worker.client.client import Client

        self.noop = _ffw_task()
        self.cm = Client.connect(url)
        self.client = await self.cm.__aenter__()

    async def close(self) -> None:
        await self.cm.__aexit__(None, None, None)

    async def submit(self) -> None:
        await self.noop.submit(self.client)

    async def roundtrip(self) -> None:
        handle = await self.noop.submit(self.client)
        await handle.result(timeout=10)


PRODUCERS: dict[str, type[Producer]] = {"ffw": FfwProducer, "saq": SaqProducer, "arq": ArqProducer}


# --- measurement --------------------------------------------------------------

@dataclass
class Figures:
    submit_rate: float = float("nan")
    drain_rate: float = float("nan")
    p50: float = float("nan")
    p95: float = float("nan")
    p99: float = float("nan")
    error: str = ""


def _start_worker(system: str, url: str) -> subprocess.Popen[str]:
    env = dict(os.environ, BENCH_URL=url)
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "_worker", system, url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{system} worker did not start (exit {proc.wait()})")
    return proc


def _stop_worker(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _wait_done(r: aioredis.Redis, target: int, limit: float) -> None:
    deadline = time.perf_counter() + limit
    while int(await r.get(DONE_KEY) or 0) < target:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {await r.get(DONE_KEY)} of {target} done")
        await asyncio.sleep(0.005)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(system: str, url: str, n: int, trips: int) -> Figures:
    fig = Figures()
    r = aioredis.Redis.from_url(url)
    await r.flushdb()
    producer = PRODUCERS[system]()
    opened = False
    try:
        await producer.open(url)
        opened = True
        t0 = time.perf_counter()
        for _ in range(n):
            await producer.submit()
        fig.submit_rate = n / (time.perf_counter() - t0)

        proc = _start_worker(system, url)
        started = time.perf_counter()
        try:
            await _wait_done(r, n, limit=max(120.0, n / 20))
            fig.drain_rate = n / (time.perf_counter() - started)
            samples: list[float] = []
            for _ in range(trips):
                t = time.perf_counter()
                await producer.roundtrip()
                samples.append((time.perf_counter() - t) * 1000)
            fig.p50, fig.p95, fig.p99 = (
                statistics.median(samples), _pct(samples, 0.95), _pct(samples, 0.99))
        finally:
            _stop_worker(proc)
    except Exception as exc:  # one system failing must not hide the others
        fig.error = f"{type(exc).__name__}: {exc}"
    finally:
        if opened:
            await producer.close()
        await r.aclose()
    return fig


def _table(results: dict[str, Figures]) -> str:
    rows = [("", "submit/s", "drain/s", "rt p50 ms", "rt p95 ms", "rt p99 ms")]
    for name, f in results.items():
        rows.append((name, f"{f.submit_rate:.0f}", f"{f.drain_rate:.0f}",
                     f"{f.p50:.2f}", f"{f.p95:.2f}", f"{f.p99:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    ours = results.get("ffw")
    for other in ("saq", "arq"):
        f = results.get(other)
        if ours is None or f is None:
            continue
        lines.append(
            f"ffw/{other}: submit x{ours.submit_rate / f.submit_rate:.2f}, "
            f"drain x{ours.drain_rate / f.drain_rate:.2f}, "
            f"rt p50 x{ours.p50 / f.p50:.2f} (lower is better)")
    for name, f in results.items():
        if f.error:
            lines.append(f"{name} error: {f.error}")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace, url: str) -> None:
    os.environ["BENCH_URL"] = url
    results: dict[str, Figures] = {}
    for system in args.systems:
        print(f"running {system} ...", file=sys.stderr, flush=True)
        results[system] = await measure(system, url, args.n, args.trips)
    print(f"N={args.n}, round trips={args.trips}, concurrency={CONCURRENCY}, redis={url}")
    print(_table(results))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_worker":
        os.environ["BENCH_URL"] = sys.argv[3]
        asyncio.run(WORKERS[sys.argv[2]](sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--url", help="Redis URL (default: start a private redis-server)")
    parser.add_argument("-n", type=int, default=5000, help="tasks to submit and drain")
    parser.add_argument("--trips", type=int, default=300, help="sequential round trips")
    parser.add_argument("--systems", nargs="+", default=["ffw", "saq", "arq"],
                        choices=sorted(WORKERS))
    args = parser.parse_args()
    with local_redis(args.url) as url:
        asyncio.run(main_async(args, url))

if __name__ == "__main__":
    main()
