"""``flowfabric-worker schedule ls | pause | resume | trigger | delete`` and
the schedule row of ``inspect``, in-process against the real server."""

from __future__ import annotations

import json

import anyio
import pytest

from flowfabric_worker.cli.parser import main
from flowfabric_worker.client.client import Client


async def _make(url: str) -> None:
    async with Client.connect(url) as client:
        await client.schedule("report", "eu", cron="0 9 * * MON-FRI", tz="Europe/Paris",
                              schedule_id="daily-report")


@pytest.mark.parametrize("url", ["redis"], indirect=True)
def test_schedule_commands(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    anyio.run(_make, url)
    assert main(["schedule", "ls", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "daily-report" in out and "cron 0 9 * * MON-FRI (Europe/Paris)" in out
    assert main(["schedule", "pause", "daily-report", "--url", url]) == 0
    assert "paused daily-report (was active)" in capsys.readouterr().out
    assert main(["schedule", "ls", "--json", "--url", url]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["state"] == "paused" and row["next_run"] is not None
    assert main(["schedule", "resume", "daily-report", "--url", url]) == 0
    assert "resumed daily-report (was paused)" in capsys.readouterr().out
    assert main(["schedule", "trigger", "daily-report", "--url", url]) == 0
    eid = capsys.readouterr().out.strip()
    assert main(["inspect", eid, "--url", url]) == 0
    assert "schedule   daily-report (tick " in capsys.readouterr().out
    assert main(["schedule", "delete", "daily-report", "--url", url]) == 0
    assert main(["schedule", "delete", "daily-report", "--url", url]) == 1
    assert main(["schedule", "pause", "daily-report", "--url", url]) != 0
    assert "schedule_not_found" in capsys.readouterr().err
