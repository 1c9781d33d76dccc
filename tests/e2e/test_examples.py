"""The examples/ scripts run as users run them: a subprocess that exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_llm_stream_prints_tokens_live_and_exits_zero(backend: str,
                                                      request: pytest.FixtureRequest) -> None:
    args = [] if backend == "memory" else [request.getfixturevalue("redis_server_url")]
    proc = subprocess.run([sys.executable, str(EXAMPLES / "llm_stream.py"), *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    first, *rest = proc.stdout.splitlines()
    assert len(first.split()) == 300  # every token, on one line
    assert "result:  {'tokens': 300}" in rest
    assert rest[-1] == "ok"


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_fanout_spawns_twenty_children_with_one_slot(backend: str,
                                                     request: pytest.FixtureRequest) -> None:
    args = [] if backend == "memory" else [request.getfixturevalue("redis_server_url")]
    proc = subprocess.run([sys.executable, str(EXAMPLES / "fanout.py"), *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("report:  durable execution: 20 angles")
    assert lines[1] == "flow:    completed, members {'completed': 22}"
    assert lines[-1] == "ok"


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_approval_waits_without_a_slot_and_resumes_on_signal_or_timeout(
        backend: str, request: pytest.FixtureRequest) -> None:
    args = [] if backend == "memory" else [request.getfixturevalue("redis_server_url")]
    proc = subprocess.run([sys.executable, str(EXAMPLES / "approval.py"), *args],
                          capture_output=True, text=True, timeout=90, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "signal to api: resumed" in lines
    assert "api 1.4.0: deployed api-1.4.0.tar.gz (lgtm from ana)" in lines
    assert "web 2.0.1: not approved in time, nothing deployed" in lines
    assert lines[-1] == "ok"


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_pipeline_passes_results_along_edges(backend: str,
                                             request: pytest.FixtureRequest) -> None:
    args = [] if backend == "memory" else [request.getfixturevalue("redis_server_url")]
    proc = subprocess.run([sys.executable, str(EXAMPLES / "pipeline.py"), *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "summary:  https://example.com/post: 14 words, mostly the, worker, task"
    assert lines[2] == "parse:    progress 90% (counting)"
    assert lines[-1] == "ok"
