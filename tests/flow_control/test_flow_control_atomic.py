"""A limited submission creates its execution with the key's quota attached
in one MULTI/EXEC (the plain submit path pipelines the two, so a claim could
run between them and start the execution without admission)."""

from __future__ import annotations

import threading

import pytest
import redis

from flowfabric_worker import Client, Limit, task

pytestmark = pytest.mark.anyio


@task(name="fc.atomic", lane="fc-atomic", concurrency=Limit(per="user", max=1))
async def limited(user: str) -> None:
    return None


def _monitor(url: str, seen: list[str], ready: threading.Event, stop: threading.Event) -> None:
    r = redis.Redis.from_url(url)
    with r.monitor() as m:  # type: ignore[no-untyped-call]
        ready.set()
        for entry in m.listen():
            command = entry["command"]
            if entry.get("client_type") != "lua":  # not the commands functions run
                seen.append(command)
            if stop.is_set() and command.startswith("PING"):
                return


@pytest.mark.parametrize("url", ["redis"], indirect=True)
async def test_create_and_attach_in_one_transaction(client: Client, url: str) -> None:
    await limited.submit(client, "warm-up")  # the key's quota policy and the libraries
    seen: list[str] = []
    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=_monitor, args=(url, seen, ready, stop), daemon=True)
    t.start()
    assert ready.wait(10)
    run = await limited.submit(client, "warm-up")
    stop.set()
    redis.Redis.from_url(url).ping()
    t.join(10)
    calls = [c.split()[0] if not c.startswith("FCALL") else " ".join(c.split()[:2])
             for c in seen]
    start = calls.index("MULTI")
    assert calls[start:start + 4] == ["MULTI", "FCALL ff_create_execution",
                                      "FCALL ffw_attach_admission", "EXEC"], calls
    assert run.id in seen[start + 1] and run.id in seen[start + 2]
