"""The done-when of issue 19's flow control, with three separate
``flowfabric-worker run`` processes on a real redis-server: 50 submissions
for one key under ``Limit(max=2)`` never run more than 2 at once (start/end
recorded in a ledger file outside Redis), and 20 submissions for one key
within a debounce period run once, with the last arguments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from flowfabric_worker import Client

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from flow_control_tasks import debounced, limited  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.redis_only]


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    r = redis.Redis.from_url(redis_server_url)
    r.flushall()
    r.close()
    return redis_server_url


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


@pytest.fixture
def workers(redis_url: str, ledger: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = dict(os.environ, FC_LEDGER=str(ledger),
               PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    procs = [subprocess.Popen(
        [sys.executable, "-m", "flowfabric_worker.cli", "run", "flow_control_tasks", "--url",
         redis_url, "--lease-ttl", "2", "--grace-period", "1", "--concurrency", "8",
         "--scanner-interval-scale", "0.05", "--log-level", "WARNING"], env=env)
        for _ in range(3)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    async with Client.connect(redis_url) as c:
        yield c


def _entries(ledger: Path, event: str) -> list[tuple[str, int, int]]:
    out = []
    for line in ledger.read_text().splitlines():
        what, key, n, at = line.split()
        if what == event:
            out.append((key, int(n), int(at)))
    return out


async def test_limit_and_debounce_across_three_workers(
        client: Client, workers: list[subprocess.Popen[bytes]], ledger: Path) -> None:
    runs = [await limited.submit(client, "u", n) for n in range(50)]
    versions = [await debounced.submit(client, "doc-1", v) for v in range(20)]
    assert len({r.id for r in versions}) == 1
    assert sorted([await r.result(timeout=60) for r in runs]) == list(range(50))
    assert await versions[0].result(timeout=60) == 19
    # Every limited run started and ended; never more than 2 at once.
    events = sorted([(at, +1) for _k, _n, at in _entries(ledger, "start")]
                    + [(at, -1) for _k, _n, at in _entries(ledger, "end")],
                    key=lambda e: (e[0], e[1]))  # an end before a start at the same ns
    assert sum(1 for _at, d in events if d > 0) == 50
    running = peak = 0
    for _at, d in events:
        running += d
        peak = max(peak, running)
    assert 1 <= peak <= 2, peak
    # Which processes ran them: the limit held across processes, not inside one.
    assert [(k, n) for k, n, _at in _entries(ledger, "debounced")] == [("doc-1", 19)]
    assert all(p.poll() is None for p in workers)


async def test_inspect_and_ls_name_the_key_and_limit(client: Client, redis_url: str) -> None:
    from flowfabric_worker.engine.admission import AdmissionRequest, admit

    runs = [await limited.submit(client, "u", n) for n in range(3)]
    qid = (await client.backend.get_exec_core_raw(runs[0].id) or {})["quota_policy_id"]
    # The claim-time admission of a worker's scheduler, for all three at once.
    verdicts = await admit(client.backend, [AdmissionRequest(r.id, "fc-e2e", "", qid)
                                            for r in runs])
    assert [v.admitted for v in verdicts] == [True, True, False]
    detail = f"flow control: fc.e2e.limited per user=u: concurrency 2 reached (quota {qid})"

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "flowfabric_worker.cli", *args,
                               "--url", redis_url], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"waiting    waiting_for_quota: {detail}" in cli("inspect", runs[2].id)
    listing = cli("ls")
    assert "WAITING ON" in listing and detail in listing
