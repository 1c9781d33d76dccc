"""Suspend / signal / resume with separate ``flowfabric-worker run`` processes
on a real redis-server, including kill -9 after a step and while suspended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from process_support import stop_processes

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.journal import JournalRead

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))

from signal_support import deliver, seed_keystore
from signal_tasks import LANE, quick, review
from worker_support import attempts, state, submit

HERE = Path(__file__).parent

pytestmark = pytest.mark.anyio


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[Backend]:
    b = await Backend.open(redis_url)
    await seed_keystore(b)
    try:
        yield b
    finally:
        await b.close()


class Workers:
    """``flowfabric-worker run signal_tasks`` processes, stopped at teardown."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *, concurrency: int = 4, hang_after_step: bool = False
              ) -> subprocess.Popen[bytes]:
        env = dict(os.environ, FFW_E2E_URL=self.url,
                   FFW_E2E_HANG_AFTER_STEP="1" if hang_after_step else "0",
                   PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
        p = subprocess.Popen(
            [sys.executable, "-m", "flowfabric_worker.cli", "run", "signal_tasks",
             "--url", self.url, "--lane", LANE, "--concurrency", str(concurrency),
             "--lease-ttl", "1", "--grace-period", "2", "--log-level", "WARNING"],
            env=env, cwd=str(HERE))
        self.procs.append(p)
        return p

    def kill9(self, p: subprocess.Popen[bytes]) -> None:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)

    def stop_all(self) -> None:
        stop_processes(self.procs, timeout=10)


@pytest.fixture
def workers(redis_url: str) -> Iterator[Workers]:
    ws = Workers(redis_url)
    try:
        yield ws
    finally:
        ws.stop_all()


async def wait_state(b: Backend, eid: str, want: str, limit: float = 20.0) -> None:
    with anyio.fail_after(limit):
        while await state(b, eid) != want:  # noqa: ASYNC110 - polling Redis state
            await anyio.sleep(0.05)


async def side_effects(b: Backend, eid: str) -> int:
    return int(await b.redis.get(f"e2e:side:{eid}") or 0)


async def test_one_slot_serves_another_task_while_the_first_waits(
        backend: Backend, workers: Workers) -> None:
    waiter = await submit(backend, review, "doc")
    workers.start(concurrency=1)
    await wait_state(backend, waiter, "suspended")
    other = await submit(backend, quick, 1)
    await wait_state(backend, other, "completed")
    assert await state(backend, waiter) == "suspended"
    await deliver(backend, waiter, "approve", "yes")
    await wait_state(backend, waiter, "completed")
    assert review.decode_result(await backend.get_result(waiter) or b"") == "doc:1:yes"
    assert await side_effects(backend, waiter) == 1
    assert len(await attempts(backend, waiter)) == 1


async def test_kill_9_after_a_step_does_not_repeat_it(
        backend: Backend, workers: Workers) -> None:
    eid = await submit(backend, review, "doc")
    a = workers.start(hang_after_step=True)
    with anyio.fail_after(20):
        while not await backend.call(JournalRead(eid=eid)):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    workers.kill9(a)  # the step is journaled; the worker dies before waiting
    workers.start()
    await wait_state(backend, eid, "suspended")  # reclaimed after lease expiry
    await deliver(backend, eid, "approve", "ok")
    await wait_state(backend, eid, "completed")
    assert review.decode_result(await backend.get_result(eid) or b"") == "doc:1:ok"
    assert await side_effects(backend, eid) == 1
    assert len(await attempts(backend, eid)) == 2  # a reclaim, not a retry of the step


async def test_kill_9_while_suspended_loses_nothing(
        backend: Backend, workers: Workers) -> None:
    eid = await submit(backend, review, "doc")
    a = workers.start()
    await wait_state(backend, eid, "suspended")
    workers.kill9(a)
    # The signal arrives while no worker runs at all.
    got = await deliver(backend, eid, "approve", "late")
    assert got.effect == "resume_condition_satisfied"
    assert await state(backend, eid) == "waiting"
    workers.start()
    await wait_state(backend, eid, "completed")
    assert review.decode_result(await backend.get_result(eid) or b"") == "doc:1:late"
    assert await side_effects(backend, eid) == 1
    assert len(await attempts(backend, eid)) == 1
