"""Whole-worker stories with separate worker processes on a real redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from process_support import stop_processes

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.keys import ExecKeys

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))

from sample_tasks import echo, quick, sleepy, stubborn
from worker_support import attempts, state, submit

pytestmark = pytest.mark.anyio

MAIN = str(Path(__file__).parent / "worker_main.py")



class Procs:
    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *, ttl: float = 1.0, grace: float = 5.0, concurrency: int = 8,
              stubborn: bool = False) -> subprocess.Popen[bytes]:
        env = dict(os.environ, FFW_E2E_STUBBORN="1" if stubborn else "0")
        p = subprocess.Popen(
            [sys.executable, MAIN, self.url, str(ttl), str(grace), str(concurrency)],
            env=env, stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        stop_processes(self.procs, timeout=10)


@pytest.fixture
def procs(redis_url: str) -> Iterator[Procs]:
    ps = Procs(redis_url)
    try:
        yield ps
    finally:
        ps.stop_all()


async def wait_state(b: Backend, eids: list[str], want: str, limit: float) -> None:
    with anyio.fail_after(limit):
        for eid in eids:
            while await state(b, eid) != want:  # noqa: ASYNC110 - polling Redis state
                await anyio.sleep(0.05)


async def test_kill_9_mid_task_is_reclaimed_by_another_worker(
    backend: Backend, procs: Procs
) -> None:
    eid = await submit(backend, sleepy, 30.0)
    a = procs.start(ttl=1.0)
    await wait_state(backend, [eid], "active", 10)
    a.send_signal(signal.SIGKILL)
    a.wait()
    procs.start(ttl=1.0)
    await wait_state(backend, [eid], "completed", 20)
    rows = await attempts(backend, eid)
    assert len(rows) == 2
    assert [r.get("attempt_state") for r in rows].count("attempt_success") <= 1
    assert sleepy.decode_result(await backend.get_result(eid) or b"") == "slept"
    core = {k.decode(): v.decode()
            for k, v in (await backend.redis.hgetall(ExecKeys(eid).core)).items()}
    assert core.get("lease_reclaim_count") == "1"


async def test_sigterm_drain_finishes_or_hands_back(backend: Backend, procs: Procs) -> None:
    q = await submit(backend, quick, 1)
    s = await submit(backend, stubborn, 60.0)
    a = procs.start(ttl=5.0, grace=1.0, stubborn=True)
    await wait_state(backend, [q, s], "active", 10)
    a.send_signal(signal.SIGTERM)
    # Generous bounds: a loaded 2-core CI box can take seconds to start or
    # stop a Python process. What proves the hand-back is the attempt count.
    assert a.wait(timeout=30) == 0
    assert await state(backend, q) == "completed"
    procs.start(ttl=5.0)
    await wait_state(backend, [s], "completed", 20)
    # Handed back, not stranded: the same attempt was resumed. Had the lease
    # been left to expire, the reclaim would have added a second attempt.
    assert len(await attempts(backend, s)) == 1


async def test_thousand_tasks_three_processes_exactly_once(
    backend: Backend, procs: Procs
) -> None:
    eids = [await submit(backend, echo, i) for i in range(1000)]
    for _ in range(3):
        procs.start(ttl=5.0, concurrency=32)
    await wait_state(backend, eids, "completed", 40)
    for i, eid in enumerate(eids):
        assert echo.decode_result(await backend.get_result(eid) or b"") == i
    pipe = backend.redis.pipeline(transaction=False)
    for eid in eids:
        pipe.hget(ExecKeys(eid).core, "total_attempt_count")
    totals = await pipe.execute()
    assert all(t == b"1" for t in totals)
