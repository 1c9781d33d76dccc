"""The flowfabric-worker command line, run in-process through ``main``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from flowfabric_worker.cli.parser import main
from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.settings import Settings


def test_library_print(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library", "print"]) == 0
    assert "ff_create_execution" in capsys.readouterr().out


def test_submit_then_inspect(redis_server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # memory:// is per-process, so submit and inspect share the real server.
    assert main(["submit", "no.such.task", "--json", "[1, 2]", "--lane", "cli",
                 "--url", redis_server_url]) == 0
    eid = capsys.readouterr().out.strip()
    assert eid.startswith("{fp:")
    assert main(["inspect", eid, "--json", "--url", redis_server_url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == eid and shown["task"] == "no.such.task"
    assert shown["state"] == "waiting" and shown["lane"] == "cli"


def test_inspect_bad_id_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "garbage", "--url", "memory://"]) == 2
    assert "error:" in capsys.readouterr().err


def test_settings_env_and_flags() -> None:
    env = {"FLOWFABRIC_URL": "redis://x:1", "FLOWFABRIC_LANES": "a,b",
           "FLOWFABRIC_SCANNERS": "0", "FLOWFABRIC_CONCURRENCY": "3"}
    s = Settings.load({"concurrency": 7, "lanes": []}, env)
    assert s.url == "redis://x:1" and s.lanes == ["a", "b"]
    assert s.scanners is False and s.concurrency == 7
    with pytest.raises(ConfigurationError):
        Settings.load({}, {"FLOWFABRIC_CONCURRENCY": "zero"})
    s = Settings.load({}, {"FLOWFABRIC_DISABLED_SCANNERS": "unblock, attempt_timeout"})
    assert s.disabled_scanners == ["unblock", "attempt_timeout"]


def test_demo_runs_and_exits_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flowfabric_worker.cli", "demo"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert "flaky" in proc.stdout and "demo finished" in proc.stdout
    assert "release-notes approved by reviewer" in proc.stdout
    assert "k1:<redacted:40>" in proc.stdout  # the waitpoint token never printed
    assert "UNEXPECTED" not in proc.stdout


CLI_TASKS = '''
from flowfabric_worker import task

@task(name="cli.double", lane="clirun")
def double(n: int) -> int:
    return 2 * n
'''


@pytest.mark.anyio
async def test_run_serves_tasks_and_drains_on_sigterm(redis_server_url: str,
                                                      tmp_path: Any) -> None:
    import signal

    import anyio

    from flowfabric_worker.client.client import Client

    (tmp_path / "cli_tasks_mod.py").write_text(CLI_TASKS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    proc = await anyio.open_process(
        [sys.executable, "-m", "flowfabric_worker.cli", "run", "cli_tasks_mod",
         "--url", redis_server_url, "--concurrency", "2", "--lease-ttl", "5"],
        env=env,
    )
    async with proc:
        try:
            async with Client.connect(redis_server_url) as client:
                run = await client.submit("cli.double", 21, lane="clirun")
                assert await run.result(timeout=20) == 42
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
