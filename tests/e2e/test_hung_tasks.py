"""Hung task bodies against real ``flowfabric-worker run`` processes (issue 12,
holes 4 and 5): a stuck sync task must not keep a draining worker alive, a
second signal exits at once, and an async task that blocks its worker's event
loop is still ended by the server-side attempt timeout, from another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from process_support import stop_processes

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))

from worker_support import attempts, core, state, submit

pytestmark = pytest.mark.anyio

HUNG_TASKS = '''
import time

from flowfabric_worker import task


@task(name="hung.sync", lane="hung")
def hung_sync(seconds: float) -> str:
    time.sleep(seconds)  # a sync body that outlasts any drain
    return "woke"


@task(name="hung.loop_blocker", lane="hung", timeout=1)
async def loop_blocker(seconds: float) -> str:
    time.sleep(seconds)  # blocks the worker's event loop: no await, no timeout
    return "woke"
'''


# Twins of the tasks above, for submitting (same names, lane and options).
@task(name="hung.sync", lane="hung")
def hung_sync(seconds: float) -> str:
    raise AssertionError("submitted only")


@task(name="hung.loop_blocker", lane="hung", timeout=1)
async def loop_blocker(seconds: float) -> str:
    raise AssertionError("submitted only")


#: What a loaded 2-core CI box may add to a process's exit after its grace.
EXIT_MARGIN = 2.0



class Workers:
    def __init__(self, url: str, module_dir: Path) -> None:
        self.url = url
        self.env = dict(os.environ,
                        PYTHONPATH=os.pathsep.join([str(module_dir), *sys.path]))
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *flags: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-m", "flowfabric_worker.cli", "run", "hung_tasks_mod",
             "--url", self.url, "--lane", "hung", "--concurrency", "2",
             "--scanner-interval-scale", "0.1", *flags],
            env=self.env, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    (tmp_path / "hung_tasks_mod.py").write_text(HUNG_TASKS)
    ws = Workers(redis_url, tmp_path)
    try:
        yield ws
    finally:
        # A worker whose loop is blocked cannot act on SIGTERM: don't wait.
        stop_processes(ws.procs, timeout=5)


async def wait_state(b: Backend, eid: str, want: str, limit: float) -> None:
    with anyio.fail_after(limit):
        while await state(b, eid) != want:  # noqa: ASYNC110 - polling Redis state
            await anyio.sleep(0.05)


def exit_time(p: subprocess.Popen[bytes], since: float, limit: float) -> float:
    """Seconds from ``since`` until ``p`` exits; fails (after killing it)
    if it is still alive ``limit`` seconds after ``since``."""
    try:
        p.wait(timeout=max(0.0, since + limit - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail(f"worker still running {limit:.1f}s after SIGTERM (killed)")
    return time.monotonic() - since


async def test_sigterm_exits_after_grace_despite_a_hung_sync_task(
    backend: Backend, workers: Workers
) -> None:
    grace = 1.0
    eid = await submit(backend, hung_sync, 60.0)
    p = workers.start("--grace-period", str(grace), "--lease-ttl", "30")
    await wait_state(backend, eid, "active", 20)
    sent = time.monotonic()
    p.send_signal(signal.SIGTERM)
    took = exit_time(p, sent, grace + EXIT_MARGIN)
    print(f"exit {took:.2f}s after SIGTERM (grace {grace}s)")
    assert p.returncode == 0
    # Handed back, not stranded: runnable again, the same (only) attempt.
    assert await state(backend, eid) != "active"
    assert len(await attempts(backend, eid)) == 1


async def test_second_signal_exits_at_once(backend: Backend, workers: Workers) -> None:
    eid = await submit(backend, hung_sync, 60.0)
    p = workers.start("--grace-period", "30", "--lease-ttl", "30")
    await wait_state(backend, eid, "active", 20)
    p.send_signal(signal.SIGTERM)
    await anyio.sleep(0.5)  # draining now, for up to 30 s
    assert p.poll() is None
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    took = exit_time(p, sent, 1.5)
    print(f"exit {took:.2f}s after the second signal")
    assert p.returncode != 0
    assert p.stderr is not None
    assert b"second signal" in p.stderr.read()


async def test_blocked_loop_attempt_is_ended_by_another_process(
    backend: Backend, workers: Workers
) -> None:
    eid = await submit(backend, loop_blocker, 40.0)
    # Long lease: the blocked worker cannot renew, but expiry would take
    # 30 s; the attempt timeout (1 s + the 2 s grace) must come first.
    blocked = workers.start("--lease-ttl", "30")
    await wait_state(backend, eid, "active", 20)
    started = time.monotonic()
    workers.start("--lease-ttl", "30")  # the healthy one, running the scanners
    with anyio.fail_after(15):
        while (s := await state(backend, eid)) == "active":  # noqa: ASYNC110 - polling Redis
            await anyio.sleep(0.1)
    took = time.monotonic() - started
    print(f"ended ({s}) {took:.1f}s after the attempt started")
    assert blocked.poll() is None  # still asleep in its task body
    record = await core(backend, eid)
    assert record["public_state"] == "expired"
    assert record["failure_reason"] == "attempt_timeout"
    blocked.kill()
    blocked.wait()
    # The blocked worker's watchdog said what blocks its loop, and where.
    assert blocked.stderr is not None
    log = blocked.stderr.read().decode()
    assert log.count("event loop blocked") == 1
    assert f"hung.loop_blocker {eid}" in log
    assert "time.sleep(seconds)" in log
