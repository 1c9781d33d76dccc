"""Issue 19's done-when, with real processes: three workers running an
``Every(seconds=1)`` schedule create one execution per tick, never two; all
of them killed (SIGKILL) for 10 s and started again, the missed ticks follow
the default catch-up policy (``skip``: of the ticks more than
``MISSED_AFTER_MS`` late, only the latest runs; the later ones were only late
and run)."""

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
from schedule_support import scheduled_runs

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.schedule_firing import MISSED_AFTER_MS

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MAIN = str(Path(__file__).parent / "schedule_worker_main.py")
# Up long enough for several ticks (a tick run twice would show in any of
# them); down for the 10 s; up again for a few ticks.
RUN_S, DOWN_S, AFTER_S = 8.0, 10.0, 4.0


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
            p.wait()


def _start_three(url: str, started: list[subprocess.Popen[bytes]]) -> None:
    batch = [subprocess.Popen([sys.executable, MAIN, url], env=dict(os.environ),
                              stdout=subprocess.PIPE) for _ in range(3)]
    started.extend(batch)
    for p in batch:
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"


def _runs(ticks: list[int]) -> list[list[int]]:
    """Ticks split into runs of consecutive seconds."""
    out: list[list[int]] = []
    for t in ticks:
        if out and t - out[-1][-1] == 1000:
            out[-1].append(t)
        else:
            out.append([t])
    return out


@pytest.mark.parametrize("url", ["redis"], indirect=True)
async def test_three_workers_one_run_per_tick_and_catch_up_after_all_were_down(
        url: str, procs: list[subprocess.Popen[bytes]]) -> None:
    _start_three(url, procs)
    await anyio.sleep(RUN_S)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()
    killed_at = time.time()
    await anyio.sleep(DOWN_S)
    _start_three(url, procs)
    await anyio.sleep(AFTER_S)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    backend = await Backend.open(url)
    try:
        ticks = [t for _, t in await scheduled_runs(backend, "sched-e2e")]
    finally:
        await backend.close()
    assert len(ticks) == len(set(ticks)), "a tick ran twice"
    runs = _runs(ticks)
    print(f"ticks: {len(ticks)}; runs of consecutive seconds: {[len(r) for r in runs]}")
    # Up: one execution per second, none missing (a slow start may cost the first).
    assert len(runs) == 2, runs
    before, after = runs
    assert RUN_S - 4 <= len(before) <= RUN_S + 1
    # Down: nothing ran, and the gap's missed ticks were skipped but the latest;
    # the ticks under MISSED_AFTER_MS old at restart ran, late, then one a second.
    late_s = MISSED_AFTER_MS // 1000
    assert before[-1] <= killed_at * 1000 + 1000
    assert after[0] - before[-1] >= (DOWN_S - late_s - 2) * 1000
    assert AFTER_S - 3 <= len(after) <= AFTER_S + late_s + 6
