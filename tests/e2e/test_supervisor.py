"""``flowfabric-worker run --processes N`` against the real server (issue 18,
deliverable 6): the supervisor's children share the work, a child killed with
SIGKILL is restarted, SIGTERM drains them all and leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from process_support import stop_processes

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.cli.worker_commands import child_commands
from flowfabric_worker.protocol.keys import workers_index
from flowfabric_worker.settings import Settings
from flowfabric_worker.worker.worker import HAND_BACK_TIMEOUT

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))

from worker_support import attempts, state, submit

pytestmark = pytest.mark.anyio

SUP_TASKS = '''
import anyio

from flowfabric_worker import task


@task(name="sup.work", lane="sup")
async def work(i: int, seconds: float) -> int:
    await anyio.sleep(seconds)
    return i
'''


# The twin of the task above, for submitting (same name and lane).
@task(name="sup.work", lane="sup")
async def work(i: int, seconds: float) -> int:
    raise AssertionError("submitted only")


#: What a loaded 2-core box may add to a process tree's exit.
EXIT_MARGIN = 3.0



class Supervised:
    """One ``run --processes N`` process tree, its log in a file."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.log_path = tmp / "supervisor.log"
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp), *sys.path]))
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()

    def start(self, n: int, *flags: str, module: str = "sup_tasks_mod") -> subprocess.Popen[bytes]:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flowfabric_worker.cli", "run", module,
                 "--url", self.url, "--processes", str(n), "--concurrency", "4",
                 "--scanner-interval-scale", "0.1", *flags],
                env=self.env, stderr=log)
        return self.proc

    def log(self) -> str:
        return self.log_path.read_text()

    def children(self) -> list[int]:
        assert self.proc is not None
        try:
            pids = [c.pid for c in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []
        self.seen.update(pids)
        return pids

    def child_pid(self, index: int) -> int:
        """The pid of child ``index``'s latest run, from the supervisor's log."""
        found = re.findall(rf"child {index} started \(pid (\d+)\)", self.log())
        assert found, self.log()
        return int(found[-1])

    async def wait_children(self, n: int, limit: float = 20) -> list[int]:
        with anyio.fail_after(limit):
            while len(pids := self.children()) != n:  # noqa: ASYNC110 - polling /proc
                await anyio.sleep(0.05)
        return pids

    def leftovers(self) -> list[int]:
        """Children ever seen that still exist (a zombie counts: nobody reaped it)."""
        return [pid for pid in self.seen if psutil.pid_exists(pid)]


@pytest.fixture
def supervised(redis_url: str, tmp_path: Path) -> Iterator[Supervised]:
    (tmp_path / "sup_tasks_mod.py").write_text(SUP_TASKS)
    s = Supervised(redis_url, tmp_path)
    try:
        yield s
    finally:
        if s.proc is not None:
            s.children()
            stop_processes([s.proc], timeout=20)
        for pid in s.leftovers():  # never leave a worker behind for the next test
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass


async def registered(b: Backend, n: int, limit: float = 30) -> None:
    """Until ``n`` worker instances have registered (they are claiming)."""
    with anyio.fail_after(limit):
        while await b.redis.scard(workers_index("default")) < n:  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def completed(b: Backend, eids: list[str], limit: float) -> None:
    with anyio.fail_after(limit):
        for eid in eids:
            while await state(b, eid) != "completed":  # noqa: ASYNC110 - polling Redis state
                await anyio.sleep(0.05)


async def count_completed(b: Backend, eids: list[str]) -> int:
    return sum([await state(b, eid) == "completed" for eid in eids])


async def instances(b: Backend, eids: list[str]) -> set[str]:
    """Worker instance ids of every attempt of ``eids``."""
    return {row["worker_instance_id"] for eid in eids for row in await attempts(b, eid)}


def exit_within(p: subprocess.Popen[bytes], since: float, limit: float) -> float:
    try:
        p.wait(timeout=max(0.0, since + limit - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"supervisor still running {limit:.1f}s after the signal")
    return time.monotonic() - since


def test_child_commands_pin_one_process_and_share_the_scanners() -> None:
    settings = Settings.load({"processes": 3}, {})
    argv = ["run", "mod", "--proc", "3", "--", "other"]
    cmds = child_commands(argv, settings)
    assert len(cmds) == 3
    for i, cmd in enumerate(cmds):
        assert cmd[:3] == [sys.executable, "-m", "flowfabric_worker.cli"]
        # before "--", after the parent's own (abbreviated) flag: it wins
        tail = cmd[3:]
        assert tail[-2:] == ["--", "other"]
        assert tail[4:8] == ["--processes", "1", "--child-index", str(i)]
        # Every child scans: range leases share the partitions among them.
        assert "--no-scanners" not in tail
    no_scan = Settings.load({"processes": 2, "scanners": False}, {})
    assert all("--no-scanners" not in c for c in child_commands(["run", "m"], no_scan))


async def test_two_processes_drain_200_tasks_and_share_them(
    backend: Backend, supervised: Supervised
) -> None:
    supervised.start(2)
    await supervised.wait_children(2)
    await registered(backend, 2)
    eids = [await submit(backend, work, i, 0.05) for i in range(200)]
    await completed(backend, eids, 60)
    for i, eid in enumerate(eids):
        assert work.decode_result(await backend.get_result(eid) or b"") == i
    ids = await instances(backend, eids)
    print(f"{len(ids)} worker instances ran the 200 tasks")
    assert len(ids) == 2
    log = supervised.log()
    assert "child=0" in log and "child=1" in log
    assert "exited unexpectedly" not in log


async def test_killed_child_is_restarted_and_the_work_completes(
    backend: Backend, supervised: Supervised
) -> None:
    supervised.start(2, "--lease-ttl", "2")
    await supervised.wait_children(2)
    await registered(backend, 2)
    eids = [await submit(backend, work, i, 0.1) for i in range(200)]
    with anyio.fail_after(30):
        while await count_completed(backend, eids[:40]) < 10:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    victim = supervised.child_pid(0)
    os.kill(victim, signal.SIGKILL)
    # Restarted after the first backoff (1 s) plus an interpreter start.
    with anyio.fail_after(20):
        while True:
            pids = supervised.children()
            if len(pids) == 2 and victim not in pids:
                break
            await anyio.sleep(0.05)
    assert supervised.child_pid(0) != victim
    await completed(backend, eids, 90)
    for i, eid in enumerate(eids):
        assert work.decode_result(await backend.get_result(eid) or b"") == i
    log = supervised.log()
    assert re.search(r"child 0 \(pid \d+\) exited unexpectedly \(killed by SIGKILL\)", log)
    assert "restarting child 0 (run 2)" in log
    assert supervised.proc is not None and supervised.proc.poll() is None
    # The killed child's attempts were reclaimed; nobody else was restarted.
    assert "restarting child 1" not in log


async def test_sigterm_drains_all_children_and_exits_zero(
    backend: Backend, supervised: Supervised
) -> None:
    grace = 3.0
    proc = supervised.start(2, "--grace-period", str(grace), "--lease-ttl", "5")
    await supervised.wait_children(2)
    await registered(backend, 2)
    eids = [await submit(backend, work, i, 1.0) for i in range(6)]
    with anyio.fail_after(20):
        while sum([await state(backend, e) == "active" for e in eids]) < 6:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    assert len(await instances(backend, eids)) == 2  # both children hold work
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    took = exit_within(proc, sent, grace + HAND_BACK_TIMEOUT + EXIT_MARGIN)
    print(f"supervisor exited {took:.2f}s after SIGTERM (grace {grace}s)")
    assert proc.returncode == 0, supervised.log()
    assert supervised.leftovers() == []
    # Drained, not abandoned: the 1 s bodies finished within the grace.
    assert [await state(backend, e) for e in eids] == ["completed"] * 6
    log = supervised.log()
    assert log.count("stopped: exit status 0") == 2
    assert "all worker processes drained" in log


async def test_second_signal_exits_at_once(backend: Backend, supervised: Supervised) -> None:
    proc = supervised.start(2, "--grace-period", "30", "--lease-ttl", "30")
    await supervised.wait_children(2)
    await registered(backend, 2)
    eids = [await submit(backend, work, i, 60.0) for i in range(4)]
    with anyio.fail_after(20):
        while sum([await state(backend, e) == "active" for e in eids]) < 4:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    await anyio.sleep(0.5)  # draining now, for up to 30 s
    assert proc.poll() is None
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    took = exit_within(proc, sent, EXIT_MARGIN)
    print(f"supervisor exited {took:.2f}s after the second signal")
    assert proc.returncode == 128 + signal.SIGINT
    assert supervised.leftovers() == []
    assert "second signal" in supervised.log()


async def test_configuration_error_is_not_restarted(supervised: Supervised) -> None:
    proc = supervised.start(2, module="no_such_module_here")
    assert proc.wait(timeout=30) == 2
    log = supervised.log()
    assert "cannot import 'no_such_module_here'" in log
    assert "not restarting the same configuration" in log
    assert "restarting child" not in log
    assert supervised.leftovers() == []
