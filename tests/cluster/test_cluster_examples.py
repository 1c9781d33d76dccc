"""The demo and the four examples through a ``redis+cluster://`` URL, run as
a user runs them: a subprocess given the cluster's URL (the demo's ``--url``,
the examples' ``FLOWFABRIC_URL``) that exits 0 after checking its own output
(issue 13, "done when"). Between them they cover flows whose members live on
other partitions, children, signals (approval), live streams (llm_stream),
result passing along edges (pipeline) and retries (the demo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_support import LocalCluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: script -> a line its output must contain (besides its own final "ok").
SCRIPTS = {
    "llm_stream.py": "result:  {'tokens': 300}",
    "fanout.py": "flow:    completed, members {'completed': 22}",
    "approval.py": "signal to api: resumed",
    "pipeline.py": "summary:  https://example.com/post: 14 words, mostly the, worker, task",
}


def _keys(cluster: LocalCluster) -> int:
    """Keys on the cluster's primaries: the script really used the cluster
    (not memory://, where a script given no URL runs)."""
    total = 0
    for port in cluster.primaries():
        with cluster.node(port) as r:
            total += int(r.dbsize())
    return total


def _run(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLOWFABRIC_URL=url)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=180, env=env)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs_on_the_cluster(script: str, cluster_url: str,
                                     local_cluster: LocalCluster) -> None:
    assert cluster_url.startswith("redis+cluster://")
    proc = _run([str(EXAMPLES / script)], cluster_url)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert SCRIPTS[script] in lines, proc.stdout[-2000:]
    assert lines[-1] == "ok"
    assert _keys(local_cluster) > 0


def test_demo_runs_on_the_cluster(cluster_url: str, local_cluster: LocalCluster) -> None:
    proc = _run(["-m", "flowfabric_worker.cli", "demo", "--url", cluster_url], cluster_url)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "flaky" in proc.stdout and "demo finished" in proc.stdout
    assert _keys(local_cluster) > 0
