"""Helpers for the lifecycle Lua tests: build calls and take key censuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import (
    ClaimExecution,
    ClaimResult,
    CreateExecution,
    IssueClaimGrant,
)

LANE = "default"
WORKER = "w1"
WIID = "w1-i1"


def new_eid() -> str:
    return mint_execution_id(lane_id=LANE)


async def create(b: Backend, eid: str | None = None, **kw: Any) -> str:
    eid = eid or new_eid()
    kw.setdefault("lane_id", LANE)
    await b.call(CreateExecution(eid=eid, namespace="ns", execution_kind="k", **kw))
    return eid


async def claim(
    b: Backend, eid: str, *, ttl: int = 30_000, worker: str = WORKER, wiid: str = WIID,
    **kw: Any,
) -> ClaimResult:
    await b.call(IssueClaimGrant(eid=eid, lane_id=LANE, worker_id=worker, worker_instance_id=wiid))
    total = await b.redis.hget(ExecKeys(eid).core, "total_attempt_count")
    return await b.call(ClaimExecution(
        eid=eid, lane_id=LANE, worker_id=worker, worker_instance_id=wiid,
        lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=ttl,
        attempt_index=int(total or 0), **kw,
    ))


async def core(b: Backend, eid: str) -> dict[str, str]:
    raw = await b.redis.hgetall(ExecKeys(eid).core)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def census(r: Any) -> dict[str, Any]:
    """Every key with its type and full contents (TTL-free)."""
    out: dict[str, Any] = {}
    async for key in r.scan_iter(count=1000):
        t = (await r.type(key)).decode()
        if t == "string":
            v: Any = await r.get(key)
        elif t == "hash":
            v = await r.hgetall(key)
        elif t == "zset":
            v = await r.zrange(key, 0, -1, withscores=True)
        elif t == "set":
            v = sorted(await r.smembers(key))
        elif t == "stream":
            v = await r.xrange(key)
        elif t == "list":
            v = await r.lrange(key, 0, -1)
        else:
            v = None
        out[key.decode()] = (t, v)
    return out


@pytest.fixture
async def b(url: str) -> AsyncIterator[Backend]:
    """A typed backend on the ``url`` database (libraries loaded by open)."""
    backend = await Backend.open(url)
    try:
        yield backend
    finally:
        await backend.close()


def fenced(eid: str, c: ClaimResult, **kw: Any) -> dict[str, Any]:
    """The common arguments of a fenced terminal/parking call for claim ``c``."""
    return dict(
        eid=eid, lane_id=LANE, attempt_index=c.attempt_index,
        worker_instance_id=kw.pop("wiid", WIID), lease_id=c.lease_id,
        lease_epoch=c.lease_epoch, attempt_id=c.attempt_id, **kw,
    )


async def history(b: Backend, eid: str) -> list[dict[str, str]]:
    entries = await b.redis.xrange(ExecKeys(eid).lease_history)
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]
