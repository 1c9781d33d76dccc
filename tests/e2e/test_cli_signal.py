"""``flowfabric-worker signal`` and ``inspect`` (waitpoints) as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import redis
from waitpoint_support import running, suspend

from flowfabric_worker.client import Client

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


async def test_signal_and_inspect(client: Client, redis_server_url: str) -> None:
    url = redis_server_url
    eid, c = await running(client)
    s = await suspend(client, eid, c, ["a", "b"], mode="all")
    token = s.primary.token.secret()

    shown = cli("inspect", eid, url=url)
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
    bad = cli("signal", eid, "a", "--json", "{nope", url=url)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    assert "waitpoints" in json.loads(cli("inspect", eid, url=url).stdout)
