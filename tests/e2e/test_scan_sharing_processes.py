"""Two worker processes share the scanning (issue 18 item 7): each partition
range is leased by one of them, and a holder killed with SIGKILL has its
ranges taken over, so a delayed execution on them is still promoted."""

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
from flowfabric_worker.client.client import Client
from flowfabric_worker.engine.roles import default_scanners
from flowfabric_worker.engine.scan_leases import lease_group
from flowfabric_worker.protocol.ids import parse_execution_id, partition_of

sys.path.insert(0, str(Path(__file__).parent))

from sample_tasks import echo

pytestmark = pytest.mark.anyio

MAIN = str(Path(__file__).parent / "worker_main.py")
#: fp 0-255, b 0-31, q 0-31 in ranges of 32.
RANGES = 10


@pytest.fixture
def procs(redis_url: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        stop_processes(started, timeout=10)


def _start(url: str, started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([sys.executable, MAIN, url, "5", "2", "4"],
                         env=dict(os.environ), stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
    started.append(p)
    return p


async def _holders(b: Backend) -> tuple[dict[str, str], set[str]]:
    """Range -> holding token (live leases only) and the live members."""
    key = f"ffw:scan:{{ffw:scan}}:{lease_group([s.name for s in default_scanners()])}"
    now = await b.server_time_ms()
    ranges: dict[str, str] = {}
    members: set[str] = set()
    for f, v in (await b.redis.hgetall(key)).items():
        field, value = f.decode(), v.decode()
        if field.startswith("m:") and int(value) > now:
            members.add(field[2:])
        elif field.startswith("r:"):
            token, expiry = value.split(" ")
            if int(expiry) > now:
                ranges[field[2:]] = token
    return ranges, members


async def _until(b: Backend, limit: float, ok: object) -> tuple[dict[str, str], set[str]]:
    with anyio.fail_after(limit):
        while True:
            ranges, members = await _holders(b)
            if ok(ranges, members):  # type: ignore[operator]
                return ranges, members
            await anyio.sleep(0.1)


async def test_two_workers_share_the_ranges_and_a_killed_holders_are_taken_over(
        backend: Backend, redis_url: str, procs: list[subprocess.Popen[bytes]]) -> None:
    a = _start(redis_url, procs)
    ranges, _ = await _until(backend, 20, lambda r, m: len(r) == RANGES and len(m) == 1)
    (token_a,) = set(ranges.values())
    b = _start(redis_url, procs)
    # Shared: every range held, by one of two members each, about half each.
    ranges, members = await _until(
        backend, 30, lambda r, m: len(m) == 2 and len(r) == RANGES
        and len(set(r.values())) == 2 and max(list(r.values()).count(t) for t in m) <= 5)
    assert token_a in members
    async with Client.connect(redis_url) as client:
        run = await echo.submit(client, 7, delay=3.0)
        part = partition_of(parse_execution_id(run.id))
        held_by = ranges[f"fp:{part // 32 * 32}-{part // 32 * 32 + 31}"]
        # Kill the process whose range the delayed execution is on.
        victim, survivor = (a, b) if held_by == token_a else (b, a)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # Its ranges come back (TTL 6 s + a keeper cycle), all to the survivor.
        ranges, members = await _until(
            backend, 30, lambda r, m: len(m) == 1 and len(r) == RANGES
            and set(r.values()) == m and held_by not in m)
        assert survivor.poll() is None
        # And the delayed execution on the dead holder's range was promoted
        # and run.
        with anyio.fail_after(30):
            assert await run.result() == 7
