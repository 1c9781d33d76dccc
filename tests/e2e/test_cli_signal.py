"""``flowfabric-worker signal`` and ``inspect`` (waitpoints) as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import pytest
import redis
from waitpoint_support import LANE, running, suspend

from flowfabric_worker.client.client import Client

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(redis_server_url: str) -> AsyncIterator[Client]:
    raw = redis.Redis.from_url(redis_server_url)
    raw.flushall()
    raw.close()
    async with Client.connect(redis_server_url, init_secrets=True) as c:
        yield c


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowfabric_worker.cli", *args, "--url", url],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )


def start_worker(url: str, env: dict[str, str], cwd: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flowfabric_worker.cli", "run", "signal_cli_tasks", "--url", url,
         "--lane", "sigcli", "--lease-ttl", "2", "--log-level", "WARNING"], env=env, cwd=cwd)


async def test_signal_and_inspect(client: Client, redis_server_url: str) -> None:
    url = redis_server_url
    eid, c = await running(client)
    s = await suspend(client, eid, c, ["a", "b"], mode="all")
    token = s.primary.token.secret()

    shown = cli("inspect", eid, "--json", url=url)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    (wp,) = doc["waitpoints"]
    assert wp["state"] == "active" and wp["waitpoint_id"] == s.primary.waitpoint_id
    assert wp["token"] == "k1:<redacted:40>" and token[3:] not in shown.stdout

    first = cli("signal", eid, "a", "--json", '{"ok": true}', "--idempotency-key", "k", url=url)
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert (one["status"], one["effect"]) == ("accepted", "appended_to_waitpoint")
    dup = json.loads(cli("signal", eid, "a", "--json", '{"ok": true}',
                         "--idempotency-key", "k", url=url).stdout)
    assert (dup["status"], dup["signal_id"]) == ("duplicate", one["signal_id"])

    last = json.loads(cli("signal", eid, "b", url=url).stdout)
    assert last["status"] == "resumed"
    assert await client.run(eid).state() == "waiting"

    none = cli("signal", eid, "a", url=url)
    assert none.returncode == 2 and "no open waitpoint" in none.stderr


@pytest.mark.parametrize(("behaviour", "state"), [("cancel", "cancelled"),
                                                ("expire", "expired")])
async def test_inspect_shows_why_a_suspension_timed_out(
        client: Client, redis_server_url: str, behaviour: str, state: str) -> None:
    # Issue 12, hole 7: only `fail` recorded suspension_timeout:<behaviour>.
    from flowfabric_worker.protocol.signals import ExpireSuspension

    eid, c = await running(client)
    s = await suspend(client, eid, c, ["a"], timeout_at=1, timeout_behavior=behaviour)
    r = await client.backend.call(ExpireSuspension(
        eid=eid, lane=LANE, current_waitpoint_id=s.primary.waitpoint_id,
        current_attempt_index=c.attempt_index))
    assert (r.outcome, r.public_state) == (behaviour, state)
    shown = cli("inspect", eid, "--json", url=redis_server_url)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert (doc["state"], doc["reason"]) == (state, f"suspension_timeout:{behaviour}")


def test_signal_bad_json_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    from flowfabric_worker.cli.parser import main

    eid = "{fp:1}:6f1c2d3e-0000-4000-8000-000000000000"
    assert main(["signal", eid, "a", "--json", "{nope", "--url", "memory://"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


async def test_story_with_a_worker_process(client: Client, redis_server_url: str) -> None:
    """secrets init, a real worker, a task waiting for approval, the CLI signal
    resumes it; and an early signal buffered on a pending waitpoint."""
    import signal as os_signal
    from pathlib import Path

    url = redis_server_url
    raw = redis.Redis.from_url(url)
    raw.flushall()  # even the keystore: the CLI installs it
    assert cli("secrets", "init", url=url).returncode == 0
    here = Path(__file__).parent
    env = dict(os.environ, FFW_E2E_URL=url, PYTHONPATH=os.pathsep.join([str(here), *sys.path]))
    worker = start_worker(url, env, str(here))
    try:
        run = await client.submit("e2e.sigcli.approve", "doc-1", lane="sigcli")
        assert await run.wait_for("suspended", timeout=30) == "suspended"
        shown = json.loads(cli("inspect", run.id, "--json", url=url).stdout)
        assert [w["state"] for w in shown["waitpoints"]] == ["active"]
        sent = cli("signal", run.id, "approve", "--json", '{"ok": true}', "--source", "alice",
                   url=url)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["status"] == "resumed"
        assert await run.result(timeout=30) == "doc-1:True:alice"

        early = await client.submit("e2e.sigcli.early", lane="sigcli")
        with anyio.fail_after(30):
            while not await client.pending_waitpoints(early.id):  # noqa: ASYNC110 - other process
                await anyio.sleep(0.05)
        (wp,) = await client.pending_waitpoints(early.id)
        assert wp.state == "pending"
        sent = cli("signal", early.id, "paid", "--json", "42", url=url)
        assert json.loads(sent.stdout)["status"] == "buffered", sent.stderr
        raw.set(f"e2e:go:{early.id}", "1")
        assert await early.result(timeout=30) == "paid:42"
        # The buffered signal satisfied the wait: the task never suspended.
        assert (await early.info()).total_attempt_count == 1
    finally:
        raw.close()
        worker.send_signal(os_signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
