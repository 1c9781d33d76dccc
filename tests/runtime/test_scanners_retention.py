"""The retention trimmer on both backends (spec 05 §7.2 #17): a terminal
execution past its retention loses every record, journal and frames
included; one within its retention is left alone."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.engine.roles import default_scanners
from flowfabric_worker.engine.runner import Scanner, ScanRunner
from flowfabric_worker.protocol.journal import JournalAppend
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.worker.backend_port import BackendEngine

pytestmark = pytest.mark.anyio

LANE = "retention"


@task(name="retention.noop", lane=LANE)
async def noop() -> int:
    return 1


def _trimmer() -> Scanner:
    s = next(s for s in default_scanners() if s.name == "retention_trimmer")
    return dataclasses.replace(s, lag_ms=0)  # look at every terminal entry


async def _keys_of(client: Client, eid: str) -> list[str]:
    uuid_part = eid.rsplit(":", 1)[-1]
    found = [k.decode() async for k in client.backend.redis.scan_iter(
        match=f"*{uuid_part}*", count=1000)]
    return sorted(found)


async def _finished(client: Client, policy: dict[str, Any] | None) -> str:
    """A completed execution with a journal entry and a frame on its stream."""
    b = client.backend
    handle = await noop.submit(client)
    engine = BackendEngine(b)
    lease = await engine.claim(handle.id, LANE, "w1", "w1-i", frozenset(), 30_000, 5000)
    await b.call(JournalAppend(eid=handle.id, lease_id=lease.lease_id,
                               lease_epoch=lease.lease_epoch, step_index=0,
                               step_name="s", result=b"1"))
    writer = engine.frame_writer(lease)
    await writer.stdout("hello")
    await writer.aclose()
    await engine.complete(lease, b"1")
    if policy is not None:
        await b.redis.set(ExecKeys(handle.id).policy, json.dumps(policy))
    return handle.id


async def test_expired_terminal_execution_is_purged_entirely(url: str) -> None:
    async with Client.connect(url) as client:
        eid = await _finished(client, {"stream_policy": {"retention_ttl_ms": 0}})
        k = ExecKeys(eid)
        before = await _keys_of(client, eid)
        assert k.journal in before and k.stream(0) in before and k.core in before
        runner = ScanRunner(client.backend, [_trimmer()], lanes=[LANE])
        assert await runner.tick(runner.scanners[0]) == 1
        assert await _keys_of(client, eid) == []
        assert await client.backend.redis.sismember(k.all_executions, eid) == 0
        assert await client.backend.redis.zscore(k.lane_terminal(LANE), eid) is None


async def test_execution_within_its_retention_is_kept(url: str) -> None:
    async with Client.connect(url) as client:
        eid = await _finished(client, None)  # default: 24 h
        before = await _keys_of(client, eid)
        runner = ScanRunner(client.backend, [_trimmer()], lanes=[LANE])
        assert await runner.tick(runner.scanners[0]) == 0
        assert await _keys_of(client, eid) == before
