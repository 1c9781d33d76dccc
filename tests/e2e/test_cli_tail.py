"""``flowfabric-worker tail``: a subprocess follows a running task's stream
(real server, since memory:// is per process) and exits when it closes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import anyio
import pytest

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.cli.execution_commands import _TailPrinter
from flowfabric_worker.cli.parser import main
from flowfabric_worker.client.client import Client
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.protocol.streams import Frame, StreamMode
from flowfabric_worker.worker.worker import Worker

STARTED: dict[str, float] = {}


@task(name="tail.talk", lane="tailtest")
async def talk(ctx: TaskContext, n: int) -> str:
    # Give the tail subprocess time to start so it really follows live.
    await anyio.sleep(max(0.0, 1.0 - (time.monotonic() - STARTED.get("t", 0))))
    for i in range(n):
        await ctx.stream(f"w{i} ")
    await ctx.stream("oops\n", kind="stderr")
    await ctx.event("finished", {"n": n})
    await ctx.summary({"n": n})
    await ctx.event("tick", live=True)
    return "done"


def _tail_cmd(url: str, eid: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowfabric_worker.cli", "tail", eid, "--url", url, *extra]


def test_tail_follows_live_and_exits_when_closed(redis_server_url: str) -> None:
    url = redis_server_url

    async def submit() -> str:
        async with Client.connect(url) as client:
            return str((await talk.submit(client, 50)).id)

    async def work(eid: str) -> None:
        async with Client.connect(url) as client:
            worker = Worker(client, tasks=[talk], lanes=["tailtest"], lease_ttl=5,
                            grace_period=1, scanner_interval_scale=0.05)
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                with anyio.fail_after(20):
                    assert await client.run(eid).result() == "done"
                worker.stop()

    eid = anyio.run(submit)
    live = subprocess.Popen(_tail_cmd(url, eid), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    quiet = subprocess.Popen(_tail_cmd(url, eid, "--no-best-effort"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    STARTED["t"] = time.monotonic()
    anyio.run(work, eid)
    out, err = live.communicate(timeout=30)
    assert live.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "".join(f"w{i} " for i in range(50))
    assert lines[1] == '[event] {"event":"finished","data":{"n":50}}'
    assert lines[2] == '[summary v1] {"n":50}'
    assert lines[3] == '[event~] {"event":"tick","data":null}'
    assert "oops\n" in err and "-- stream closed: attempt_success" in err
    q_out, _ = quiet.communicate(timeout=30)
    assert quiet.returncode == 0 and "tick" not in q_out and "finished" in q_out

    # Afterwards: a replay of the closed stream prints the same and exits.
    after = subprocess.run(_tail_cmd(url, eid, "--no-follow"), capture_output=True,
                           text=True, timeout=30)
    assert after.returncode == 0 and after.stdout == out


def test_tail_unknown_execution_is_an_error(redis_server_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # A real server: tail refuses memory:// (a database of its own process).
    assert main(["tail", "{fp:0}:00000000-0000-4000-8000-000000000000",
                 "--url", redis_server_url]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_printer_renders_each_kind() -> None:
    out, err = io.StringIO(), io.StringIO()
    p = _TailPrinter(out, err)

    def f(ft: str, payload: bytes, **kw: object) -> Frame:
        return Frame(id="1-0", frame_type=ft, payload=payload, ts=0, **kw)  # type: ignore[arg-type]

    p.frame(f("stdout", b"hel"))
    p.frame(f("stdout", b"lo"))
    p.frame(f("blob", b"\x00\x01\x02"))
    p.frame(f("progress", b"50%", mode=StreamMode.BEST_EFFORT))
    p.frame(f("stdout", b"tail"))
    p.closed("attempt_failure")
    assert out.getvalue() == "hello\n[blob 3 bytes]\n[progress~] 50%\ntail\n"
    assert err.getvalue() == "-- stream closed: attempt_failure\n"
