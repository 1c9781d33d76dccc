"""What idle workers cost Redis: commands/s and Redis CPU with nothing to do.

For each configuration: start a private redis-server, start W worker
processes (``flowfabric-worker run``, one process each, as W separately
deployed workers would be), let them settle, ``CONFIG RESETSTAT``, wait
``--seconds``, then read ``INFO commandstats`` and ``INFO cpu``. Printed:
commands/s, Redis CPU (% of one core), the workers' own CPU, and the
busiest commands. ``--no-scanners`` rows separate what the scanners cost
from the rest of an idle worker (claim poll, heartbeats, retry promoter).
Not a test: nothing here asserts. ``python bench/idle.py --help``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from local_redis import local_redis  # bench/ is on sys.path when run as a script

BENCH = Path(__file__).parent


def _proc_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def seed_not_due(r: redis.Redis, partitions: int = 256) -> None:
    """A busy system in which nothing is due: every partition holds running
    leases, attempt timeouts, deadlines and recent terminal entries, all
    scored in the future (or within retention)."""
    now_ms = int(time.time() * 1000)
    later, recent = now_ms + 3_600_000, now_ms
    pipe = r.pipeline(transaction=False)
    for i in range(partitions):
        p = f"ff:idx:{{fp:{i}}}"
        for index in ("lease_expiry", "attempt_timeout", "execution_deadline"):
            pipe.zadd(f"{p}:{index}", {f"x-{i}": later})
        pipe.zadd(f"{p}:lane:bench-procs:terminal", {f"x-{i}": recent})
    pipe.execute()


def one(workers: int, seconds: float, settle: float, scanners: bool,
        seed: str) -> dict[str, object]:
    with local_redis() as url:
        r = redis.Redis.from_url(url)
        if seed == "busy":
            seed_not_due(r)
        env = dict(os.environ, BENCH_URL=url,
                   PYTHONPATH=os.pathsep.join([str(BENCH), *sys.path]))
        argv = [sys.executable, "-m", "flowfabric_worker.cli", "run", "process_tasks",
                "--url", url, "--log-level", "WARNING"]
        if not scanners:
            argv.append("--no-scanners")
        procs = [subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
                 for _ in range(workers)]
        try:
            time.sleep(settle)
            r.config_resetstat()
            cpu0 = _redis_cpu(r)
            wcpu0 = sum(_proc_cpu(p.pid) for p in procs)
            t0 = time.monotonic()
            time.sleep(seconds)
            stats = r.info("commandstats")
            took = time.monotonic() - t0
            cpu = _redis_cpu(r) - cpu0
            wcpu = sum(_proc_cpu(p.pid) for p in procs) - wcpu0
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=60)
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
        calls.pop("config|resetstat", None)
        calls.pop("info", None)
        total = sum(calls.values())
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
        return {"workers": workers, "scanners": scanners, "seed": seed, "cmd_s": total / took,
                "redis_cpu_pct": 100 * cpu / took, "worker_cpu_pct": 100 * wcpu / took,
                "top": ", ".join(f"{k} {v / took:.0f}/s" for k, v in top)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds after start before measuring (imports, first passes)")
    parser.add_argument("--no-scanners-too", action="store_true",
                        help="also measure each worker count with --no-scanners")
    parser.add_argument("--seed", choices=["empty", "busy"], nargs="+", default=["empty"],
                        help="empty: a fresh server; busy: every partition holds "
                             "index entries, none due (long-running work)")
    args = parser.parse_args()
    for seed in args.seed:
        for w in args.workers:
            for scanners in ([True, False] if args.no_scanners_too else [True]):
                row = one(w, args.seconds, args.settle, scanners, seed)
                print(f"seed={seed} workers={row['workers']} scanners={row['scanners']!s:5} "
                      f"commands/s={row['cmd_s']:7.1f} "
                      f"redis_cpu={row['redis_cpu_pct']:5.2f}% "
                      f"workers_cpu={row['worker_cpu_pct']:5.2f}%  top: {row['top']}",
                      flush=True)


if __name__ == "__main__":
    main()
