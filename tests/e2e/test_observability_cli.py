"""``run --metrics-port --log-format json`` and ``metrics`` as an operator
starts them: a scrape of the live worker shows completed, failed and retried
executions and the run-duration histogram; stderr holds one JSON line per
lifecycle event; ``metrics`` exports the backlog with no worker running."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import anyio
import pytest
from process_support import stop_processes
from prometheus_client.parser import text_string_to_metric_families

from flowfabric_worker.backend.backend import Backend

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))

from obs_tasks import LANE, broken, flaky, ok
from worker_support import state, submit

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _scrape(port: int, limit: float = 30.0) -> dict[tuple[str, str], float]:
    """Samples by (name, sorted labels); waits for the server to answer."""
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    with anyio.fail_after(limit):
        while True:
            try:
                text = await anyio.to_thread.run_sync(get)
                break
            except OSError:
                await anyio.sleep(0.1)
    return {(s.name, json.dumps(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _value(samples: dict[tuple[str, str], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all([k, x] in json.loads(ls) for k, x in labels.items()))


def _cli(*args: str, log: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "flowfabric_worker.cli", *args],
                            cwd=HERE, stderr=log, stdout=subprocess.DEVNULL)  # type: ignore[arg-type]


async def test_run_serves_metrics_and_json_logs(backend: Backend, redis_url: str) -> None:
    port = _free_port()
    with tempfile.TemporaryFile() as log:
        worker = _cli("run", "obs_tasks", "--url", redis_url, "--metrics-port", str(port),
                      "--log-format", "json", "--lease-ttl", "2",
                      "--scanner-interval-scale", "0.05", log=log)
        try:
            eids = [await submit(backend, ok, 1), await submit(backend, flaky),
                    await submit(backend, broken)]
            with anyio.fail_after(60):
                for eid in eids:
                    while await state(backend, eid) not in ("completed", "failed"):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
            s = await _scrape(port)
        finally:
            stop_processes([worker])
        log.seek(0)
        lines = [json.loads(raw) for raw in log.read().decode().splitlines() if raw.strip()]
    assert _value(s, "ffw_executions_completed_total", task="obs_cli.ok") == 1
    assert _value(s, "ffw_executions_retried_total", task="obs_cli.flaky") == 1
    assert _value(s, "ffw_executions_failed_total", task="obs_cli.broken",
                  category="handler_error") == 1
    assert _value(s, "ffw_run_duration_seconds_count") == 4
    assert _value(s, "ff_attempt_outcome_total", lane=LANE, outcome="ok") == 2
    events = {line.get("event") for line in lines}
    assert {"worker_started", "started", "succeeded", "retry_scheduled", "failed",
            "worker_stopped", "metrics_serving"} <= events
    (hello,) = [line for line in lines if line["message"] == "task says hello"]
    assert hello["execution_id"] == eids[0] and hello["task"] == "obs_cli.ok"


async def test_metrics_command_exports_queue_depth(backend: Backend, redis_url: str) -> None:
    for n in range(4):
        await submit(backend, ok, n)
    port = _free_port()
    with tempfile.TemporaryFile() as log:
        # --lane: these executions were created without the client, which
        # would also have put their lane in the lane registry.
        exporter = _cli("metrics", "--url", redis_url, "--port", str(port),
                        "--interval", "0.2", "--lane", LANE, log=log)
        try:
            with anyio.fail_after(30):
                while True:
                    s = await _scrape(port)
                    if _value(s, "ffw_queue_depth", lane=LANE, state="eligible") == 4:
                        break
                    await anyio.sleep(0.2)
        finally:
            stop_processes([exporter])
    assert ("ff_cancel_backlog_depth", "[]") in s
