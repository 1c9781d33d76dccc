"""``flowfabric-worker scan --only schedules`` beside a FlowFabric server:
the process fires schedules and runs no other role (the server runs those),
and an unknown scanner name exits 2 before anything is touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest

from flowfabric_worker.cli.parser import main
from flowfabric_worker.client.client import Client

pytestmark = pytest.mark.anyio


def test_unknown_names_exit_2_listing_the_valid_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1: nothing listens there, so reaching the check proves it ran first.
    assert main(["scan", "--only", "schedules,promoter", "--url", "redis://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "unknown scanner(s): promoter" in err
    assert "valid names: lease_expiry, delayed_promoter" in err
    assert "schedules" in err and "completion_dispatch" in err
    assert main(["scan", "--only", ",", "--url", "redis://127.0.0.1:1"]) == 2
    assert "no scanner named" in capsys.readouterr().err


@pytest.fixture
def scan_only(deployment_url: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowfabric_worker", "scan", "--mode", "attached",
         "--url", deployment_url, "--only", "schedules", "--scanner-interval-scale", "0.05"],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_scan_only_schedules_fires_them_and_promotes_nothing(
        deployment_url: str, scan_only: subprocess.Popen[bytes]) -> None:
    async with Client.connect(deployment_url, mode="attached") as client:
        # Over the client's 1 s floor, so it is filed as delayed.
        delayed = await client.submit("nobody.serves", lane="scan-only", delay=1.5)
        due = anyio.current_time() + 1.5
        sched = await client.schedule("nobody.serves", every=1, lane="scan-only",
                                      schedule_id="scan-only")
        with anyio.fail_after(30):  # generous: a slow, shared box
            while not (await sched.info()).last_execution_id \
                    or anyio.current_time() < due + 1.0:
                assert scan_only.poll() is None, \
                    scan_only.stderr.read() if scan_only.stderr else "scan exited"
                await anyio.sleep(0.05)
        # Due for a second now, and with every scanner a tick (50 ms here)
        # would have promoted it: the delayed promoter does not run.
        assert await delayed.state() == "delayed"
        await sched.delete()
