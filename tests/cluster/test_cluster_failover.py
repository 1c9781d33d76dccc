"""Failover without loss: 3 primaries with a replica each, a worker in its
own process, ``kill -9`` of a primary mid-load. Its replica takes over; the
client and the worker carry on without a restart; every execution completes
exactly once as the client sees it (``durability="replicas:1"``: a write is
acknowledged only once the replica has it, so the promoted replica holds
every acknowledged submission and completion)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from cluster_support import LocalCluster
from failover_tasks import LANES, record

from flowfabric_worker.backend.cluster import key_slot
from flowfabric_worker.client.client import Client
from flowfabric_worker.errors import TransportError
from flowfabric_worker.protocol.partitions import solo_partition

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
TOTAL = 300


def _worker(url: str, ledger: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, FFW_LEDGER=str(ledger),
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    lanes = [a for lane in LANES for a in ("--lane", lane)]
    return subprocess.Popen(
        [sys.executable, "-m", "flowfabric_worker.cli", "run", "failover_tasks", "--url", url,
         *lanes, "--concurrency", "32", "--lease-ttl", "3", "--durability", "replicas:1",
         "--scanner-interval-scale", "0.1", "--grace-period", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(ledger.with_suffix(".log"), "wb"))


def _owner_port(cluster: LocalCluster, slot: int) -> int:
    with cluster.node(cluster.base) as r:
        for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
    raise AssertionError(slot)


async def _submit(client: Client, n: int) -> str:
    """Submit item ``n``; a lost reply is resent with the same idempotency key
    (the one way a client can tell "did it run?" after an outage)."""
    while True:
        try:
            run = await client.submit(record, n, lane=LANES[n % len(LANES)],
                                      idempotency_key=f"job-{n}")
            return run.id
        except TransportError:
            await anyio.sleep(0.2)


async def test_kill_a_primary_mid_load_loses_nothing(
        private_cluster: LocalCluster, tmp_path: Path) -> None:
    url = private_cluster.url
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    worker = _worker(url, ledger)
    try:
        async with Client.connect(url, durability="replicas:1", init_secrets=True) as client:
            partitions = client.backend.partitions
            # The primary holding lane fo0's partition dies.
            slot = key_slot(f"{{fp:{solo_partition(LANES[0], partitions)}}}")
            victim = _owner_port(private_cluster, slot)
            ids: dict[int, str] = {}
            for n in range(TOTAL // 2):
                ids[n] = await _submit(client, n)
            with anyio.fail_after(60):  # the load is running when the node dies
                while len(ledger.read_text().splitlines()) < TOTAL // 6:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            os.kill(private_cluster.pid(victim), signal.SIGKILL)
            killed_at = time.monotonic()
            for n in range(TOTAL // 2, TOTAL):
                ids[n] = await _submit(client, n)
            with anyio.fail_after(180):
                results = {n: await client.run(eid, record).result(timeout=180)
                           for n, eid in ids.items()}
            took = time.monotonic() - killed_at
            assert results == {n: n for n in range(TOTAL)}
            assert worker.poll() is None, "the worker process died"
            assert private_cluster.role(victim) == "down"
            # Only one attempt per execution completed, whatever ran twice.
            for eid in ids.values():
                done = [a for a in await client.backend.list_attempts(eid)
                        if a.attempt_state == "ended_success"]
                assert len(done) <= 1, eid
            lines = ledger.read_text().splitlines()
            seen = {int(line.split()[0]) for line in lines}
            assert seen == set(range(TOTAL))  # none lost
            reruns = len(lines) - len(seen)
            print(f"failover: all {TOTAL} completed {took:.1f}s after the kill; "
                  f"{reruns} bodies ran again after a lost lease")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
