"""The short fault-injection run (``bench/chaos.py``) as a test: real worker
processes killed with ``kill -9``, stopped past their lease, and a Redis
``kill -9`` + restart, all under load. Nothing acknowledged may be lost,
completed twice or left unfinished; and, the bodies guarding their side
effect with ``ctx.ensure_lease()`` (``--guarded``), no stopped worker may
write it after waking (issue 12)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAOS = ROOT / "bench" / "chaos.py"

# 3 workers, 200 executions, 3 kill rounds, 1 stop round, 1 Redis restart:
# about 35 s on a quiet 2-core box.
ARGS = ["--rounds", "5", "--faults", "kill,stop,kill,redis,kill", "--workers", "3",
        "--executions", "200", "--lease-ms", "2000", "--seed", "12",
        "--round-timeout", "30", "--settle", "60", "--guarded", "--json"]
LIMIT_S = 170


@pytest.mark.slow
@pytest.mark.redis_only
def test_short_fault_run_loses_nothing(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None and shutil.which("valkey-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (required in CI)")
        pytest.skip("redis-server not installed")
    proc = subprocess.Popen(
        [sys.executable, str(CHAOS), *ARGS, "--workdir", str(tmp_path / "run")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the run stops its workers and Redis
        try:
            out, err = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its children die with it (PDEATHSIG)
            out, err = proc.communicate()
        pytest.fail(f"chaos run took longer than {LIMIT_S} s:\n{err.decode()[-4000:]}")
    log = err.decode(errors="replace")[-4000:]
    assert out, f"no summary (exit {proc.returncode}):\n{log}"
    report = json.loads(out)
    totals = report["totals"]
    summary = json.dumps({k: report[k] for k in ("totals", "problems",
                                                   "worker_unexpected_exits")}, indent=1)
    assert report["submitted"] == 200 and report["not_acknowledged"] == 0, summary
    assert totals["lost"] == 0, summary
    assert totals["double"] == 0, summary
    assert totals["stuck"] == 0, summary
    assert totals["phantom"] == 0, summary
    guarded = totals["guarded"]
    assert guarded["violations"] == 0, json.dumps(report["problems"], indent=1)
    assert guarded["completed_without_effect"] == 0, summary
    # A repeat is only allowed when the first effect was made before the
    # fault (kill -9, SIGSTOP, outage) and its attempt never completed:
    # anything else, e.g. a woken worker writing it, is a violation.
    assert [f["kind"] for f in report["faults"]] == [
        "kill", "stop", "kill", "redis-kill", "kill"]
    # The faults really hit work in flight, and it was taken over.
    kill = report["by_fault"]["kill"]
    assert kill["victim_attempts"] > 0 and kill["re_executed"] > 0, summary
    assert proc.returncode == 0, log
