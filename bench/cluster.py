"""Drain rate of K worker processes on a 3-primary cluster next to a single
redis-server, in one run (issue 13, item 7).

For each configuration (interleaved over the repetitions: single/1, cluster/1,
single/2, cluster/2, single/4, cluster/4, ...): flush, submit N no-op tasks
spread round-robin over L lanes (a lane's solo executions share one
partition, so one primary; L lanes spread over every primary), start
``flowfabric-worker run --processes K`` on every lane, and time from the
moment all K children have registered to the N-th completion. Each task ends
with one ``INCR`` on a separate counter redis-server, so counting costs the
measured servers nothing. Reported: tasks/s, worker CPU per task (the
supervisor's process tree) and Redis CPU per task for each node (``INFO cpu``
deltas; on the cluster, per primary and the replicas together).
Not a test: nothing here asserts. ``python bench/cluster.py --help``.
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
from typing import Any

import redis.asyncio as aioredis
from local_redis import local_redis  # bench/ is on sys.path when run as a script

from flowfabric_worker import Client, task
from flowfabric_worker.protocol.keys import workers_index

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is in the bench extra
    psutil = None

BENCH = Path(__file__).parent
ROOT = BENCH.parent
COUNTER = "bench:cluster:done"
_counter: aioredis.Redis | None = None


@task(name="bench.cluster_noop", lane="bc0")
async def noop() -> int:
    """The drained task: one INCR on the counter server (BENCH_COUNTER_URL)."""
    global _counter
    if _counter is None:
        _counter = aioredis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])
    await _counter.incr(COUNTER)
    return 1


def tree_cpu(pid: int) -> float:
    """User + system seconds of a process and its live children."""
    if psutil is None:
        return float("nan")
    total = 0.0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            with_children = p.cpu_times()
            total += with_children.user + with_children.system
    except psutil.NoSuchProcess:
        pass
    return total


async def node_cpu(ports: list[int]) -> dict[int, float]:
    out = {}
    for port in ports:
        r = aioredis.Redis(host="127.0.0.1", port=port)
        info = await r.info("cpu")
        out[port] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        await r.aclose()
    return out


async def roles(ports: list[int]) -> dict[int, str]:
    out = {}
    for port in ports:
        r = aioredis.Redis(host="127.0.0.1", port=port)
        out[port] = (await r.execute_command("ROLE"))[0].decode()  # type: ignore[no-untyped-call]
        await r.aclose()
    return out


async def one(url: str, ports: list[int], counter: aioredis.Redis, counter_url: str,
              k: int, n: int, lanes: list[str], concurrency: int) -> dict[str, Any]:
    role = await roles(ports)
    for port in ports:
        if role[port] == "master":
            r = aioredis.Redis(host="127.0.0.1", port=port)
            await r.flushall()
            await r.aclose()
    await counter.delete(COUNTER)
    async with Client.connect(url) as client:
        for start in range(0, n, 500):
            await asyncio.gather(*(client.submit(noop, lane=lanes[i % len(lanes)])
                                   for i in range(start, min(start + 500, n))))
        env = dict(os.environ, BENCH_COUNTER_URL=counter_url,
                   PYTHONPATH=os.pathsep.join([str(BENCH), *sys.path]))
        args = [sys.executable, "-m", "flowfabric_worker.cli", "run", "cluster", "--url", url,
                "--processes", str(k), "--concurrency", str(concurrency),
                "--log-level", "WARNING"]
        for lane in lanes:
            args += ["--lane", lane]
        proc = await asyncio.create_subprocess_exec(*args, env=env, stdin=subprocess.DEVNULL)
        try:
            registry = workers_index("default")
            while len((await client.backend.read_many([["SMEMBERS", registry]]))[0]) < k:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            t0, w0, c0 = time.perf_counter(), tree_cpu(proc.pid), await node_cpu(ports)
            early = int(await counter.get(COUNTER) or 0)
            while int(await counter.get(COUNTER) or 0) < n:  # noqa: ASYNC110 - polling
                await asyncio.sleep(0.005)
            t1, w1, c1 = time.perf_counter(), tree_cpu(proc.pid), await node_cpu(ports)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    counted = max(n - early, 1)
    return {"per_s": counted / (t1 - t0), "early": early,
            "worker_us": (w1 - w0) / counted * 1e6,
            "redis_us": {p: (c1[p] - c0[p]) / counted * 1e6 for p in ports},
            "role": role, "load1": os.getloadavg()[0]}


def start_cluster(server: str) -> tuple[str, list[int], Path]:
    base = 23000 + os.getpid() % 1000 * 6 % 5000
    workdir = Path(f"/tmp/ffw-bench-cluster-{os.getpid()}")
    out = subprocess.run([str(ROOT / "scripts" / "cluster"), "start", "--primaries", "3",
                          "--replicas", "1", "--server", server, "--base-port", str(base),
                          "--dir", str(workdir)], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1], list(range(base, base + 6)), workdir


def summary(label: str, rows: list[dict[str, Any]]) -> str:
    rates = [r["per_s"] for r in rows]
    nodes: list[str] = []
    for port in rows[0]["redis_us"]:
        us = statistics.median(r["redis_us"][port] for r in rows)
        nodes.append(f"{port}{'P' if rows[-1]['role'][port] == 'master' else 'R'}={us:.0f}")
    return (f"{label:<11} {statistics.median(rates):>8.0f}  {min(rates):.0f}-{max(rates):.0f}"
            f"  worker {statistics.median(r['worker_us'] for r in rows):>5.0f} µs/task"
            f"  redis µs/task {' '.join(nodes)}")


async def main_async(args: argparse.Namespace, curl: str, cports: list[int]) -> None:
    print(f"nproc {os.cpu_count()}, load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    lanes = [f"bc{i}" for i in range(args.lanes)]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with local_redis(None) as single, local_redis(None) as counter_url:
        sport = int(single.rsplit(":", 1)[1].split("/")[0])
        counter = aioredis.Redis.from_url(counter_url)
        for rep in range(args.reps):
            for k in args.processes:
                for name, url, ports in (("single", single, [sport]),
                                         ("cluster", curl, cports)):
                    res = await one(url, ports, counter, counter_url, k, args.n, lanes,
                                    args.concurrency)
                    results.setdefault((name, k), []).append(res)
                    print(f"rep {rep} {name} K={k}: {res['per_s']:.0f} tasks/s "
                          f"(early {res['early']}), worker {res['worker_us']:.0f} µs/task, "
                          f"redis {sum(res['redis_us'].values()):.0f} µs/task in all, "
                          f"load1 {res['load1']:.2f}", flush=True)
        await counter.aclose()
    print(f"\nload average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("config      tasks/s   range   (P primary, R replica)")
    for (name, k), rows in results.items():
        print(summary(f"{name} K={k}", rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="tasks per drain (20000)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions (2)")
    parser.add_argument("--lanes", type=int, default=12, help="lanes the tasks spread over (12)")
    parser.add_argument("--concurrency", type=int, default=16, help="per process (16)")
    parser.add_argument("--server", default="redis", choices=["redis", "valkey"])
    args = parser.parse_args()
    curl, cports, cdir = start_cluster(args.server)
    try:
        asyncio.run(main_async(args, curl, cports))
    finally:
        subprocess.run([str(ROOT / "scripts" / "cluster"), "stop", "--dir", str(cdir)],
                       capture_output=True)


if __name__ == "__main__":
    main()
