"""The worker-side fence with real ``flowfabric-worker run`` processes (issue
12: "the guarded side effect runs at most once per execution in the timeout,
drain and pause cases"; the in-process proofs are in
``tests/runtime/test_lease_fence.py``).

Each task (``fence_tasks.py``) works, calls ``ctx.ensure_lease()``, then
writes its side effect, an ``effect`` line, to a ledger outside Redis.

* Pause: the first worker is ``SIGSTOP``-ped while the bodies are in their
  work, for at least twice the lease and until a second worker has
  reclaimed every execution; on ``SIGCONT`` its bodies must be fenced
  before the effect (no terminal call either), and every effect appears once.
* Drain: ``SIGTERM`` with a short grace while the bodies are in their work;
  what still runs after the hand-back is fenced, the second worker redoes
  the work, and every effect appears once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from process_support import stop_processes

from flowfabric_worker.backend.backend import Backend

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))

from fence_tasks import LANE, guarded, guarded_shielded, guarded_sync
from worker_support import attempts, state, submit

HERE = Path(__file__).parent

pytestmark = [pytest.mark.anyio, pytest.mark.redis_only]

LEASE = 2.0
#: Long enough for a loaded box to notice every start and stop the worker
#: before any body reaches its ensure_lease(); the check below proves it did.
WORK = 3.0
#: Bounds for steps that take well under a second on a quiet box.
SLOW_BOX = 20.0



class Workers:
    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.ledger_dir = tmp / "ledger"
        self.ledger_dir.mkdir()
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, name: str, *flags: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, FFW_FENCE_LEDGER_DIR=str(self.ledger_dir),
                   PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as out:
            p = subprocess.Popen(
                [sys.executable, "-m", "flowfabric_worker.cli", "run", "fence_tasks",
                 "--url", self.url, "--lane", LANE, "--concurrency", "8",
                 "--lease-ttl", str(LEASE), "--scanner-interval-scale", "0.1",
                 "--worker-id", name, "--log-level", "INFO", *flags],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.procs.append(p)
        self.logs[p.pid] = log
        return p

    def log(self, p: subprocess.Popen[bytes]) -> str:
        return self.logs[p.pid].read_text(errors="replace")

    def ledger(self) -> list[dict[str, Any]]:
        lines = []
        for path in sorted(self.ledger_dir.glob("ledger-*.jsonl")):
            lines.extend(json.loads(x) for x in path.read_text().splitlines())
        return lines

    def events(self, event: str, pid: int | None = None) -> Counter[str]:
        return Counter(x["eid"] for x in self.ledger()
                       if x["event"] == event and (pid is None or x["pid"] == pid))

    def close(self) -> None:
        for p in self.procs:  # a stopped process cannot act on SIGTERM
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
        stop_processes(self.procs, timeout=10)


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    ws = Workers(redis_url, tmp_path)
    try:
        yield ws
    finally:
        ws.close()


async def until(check: Callable[[], Awaitable[bool] | bool], limit: float, what: str,
                workers: Workers) -> None:
    deadline = time.monotonic() + limit
    while True:
        ok = check()
        if not isinstance(ok, bool):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.pid}\n{workers.log(p)[-3000:]}" for p in workers.procs)
            pytest.fail(f"{what}: not after {limit:.0f} s\nledger: {workers.ledger()}\n{logs}")
        await anyio.sleep(0.02)


async def all_completed(b: Backend, eids: list[str]) -> bool:
    return all([await state(b, e) == "completed" for e in eids])


async def test_paused_worker_is_fenced_on_waking(backend: Backend, workers: Workers) -> None:
    eids = [await submit(backend, t, WORK)
            for t in (guarded, guarded, guarded_sync, guarded_sync)]
    first = workers.start("fence-first")
    await until(lambda: set(workers.events("start", first.pid)) == set(eids), SLOW_BOX,
                "every body started on the first worker", workers)
    first.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    # The pause landed in the bodies' work: none reached its guarded effect.
    assert not workers.events("effect") and not workers.events("fenced"), workers.ledger()

    second = workers.start("fence-second")

    async def reclaimed() -> bool:
        return all([len(await attempts(backend, e)) >= 2 for e in eids])

    # Stopped for two leases at least, and until the second one took over.
    await until(reclaimed, SLOW_BOX, "the second worker reclaimed everything", workers)
    await anyio.sleep(max(0.0, stopped + 2 * LEASE - time.monotonic()))
    paused_for = time.monotonic() - stopped
    first.send_signal(signal.SIGCONT)

    await until(lambda: all_completed(backend, eids), SLOW_BOX, "all completed", workers)
    # The woken worker gives up each stale attempt (ensure_lease() raised
    # LeaseLost, or its first renewal tick found the lease expired and
    # cancelled the body) without a terminal call.
    await until(lambda: all(f"event=lease_lost execution_id={e} " in workers.log(first)
                            for e in eids),
                SLOW_BOX, "the first worker dropped every stale attempt", workers)
    assert first.poll() is None and second.poll() is None

    effects = workers.events("effect")
    assert effects == Counter({e: 1 for e in eids}), workers.ledger()
    assert not workers.events("effect", first.pid)
    # A sync body's thread cannot be cancelled: it ran on to ensure_lease()
    # and was fenced there, on waking.
    fenced = workers.events("fenced", first.pid)
    assert all(fenced[e] == 1 for e in eids[2:]), workers.ledger()
    for e in eids:
        rows = await attempts(backend, e)
        assert rows[0]["worker_id"] == "fence-first"
        assert rows[0]["attempt_state"] != "ended_success", rows[0]
        won = [a for a in rows if a["attempt_state"] == "ended_success"]
        assert len(won) == 1 and won[0]["worker_id"] != "fence-first", rows
    print(f"paused {paused_for:.1f}s (lease {LEASE}s); bodies fenced by ensure_lease() "
          f"on waking: {sum(fenced.values())}/4")


async def test_drained_worker_is_fenced_after_hand_back(
    backend: Backend, workers: Workers
) -> None:
    eids = [await submit(backend, t, WORK) for t in (guarded, guarded_shielded, guarded_sync)]
    first = workers.start("fence-first", "--grace-period", "0.3")
    await until(lambda: set(workers.events("start", first.pid)) == set(eids), SLOW_BOX,
                "every body started on the first worker", workers)
    first.send_signal(signal.SIGTERM)
    assert not workers.events("effect") and not workers.events("fenced"), workers.ledger()
    # Handed back at the end of the grace: claimable at once by a new worker.
    second = workers.start("fence-second")
    try:
        first.wait(timeout=WORK + SLOW_BOX)
    except subprocess.TimeoutExpired:
        pytest.fail(f"draining worker still running:\n{workers.log(first)[-3000:]}")
    assert first.returncode == 0, workers.log(first)[-3000:]

    await until(lambda: all_completed(backend, eids), SLOW_BOX + WORK, "all completed", workers)
    assert second.poll() is None
    effects = workers.events("effect")
    assert effects == Counter({e: 1 for e in eids}), workers.ledger()
    assert not workers.events("effect", first.pid)
    # The shielded body outlived the hand-back, and was fenced before its
    # effect (the drain waits for it).
    assert workers.events("fenced", first.pid)[eids[1]] == 1, workers.ledger()
    assert all(workers.events("start", second.pid)[e] == 1 for e in eids)
