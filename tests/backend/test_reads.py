"""Typed plain reads on the backend."""

from __future__ import annotations

import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.keys import ExecKeys, PartitionKeys

pytestmark = pytest.mark.anyio

EID = "{fp:1}:0b4d3c0e-7f62-4a53-9a8e-0c1d2e3f4a5b"


async def test_reads_absent_and_present(url: str) -> None:
    async with await Backend.open(url) as b:
        assert await b.get_exec_core(EID) is None
        assert await b.get_payload(EID) is None
        assert await b.list_attempts(EID) == []
        k = ExecKeys(EID)
        await b.redis.hset(k.core, mapping={"execution_id": EID, "priority": "5",
                                            "current_lease_id": ""})
        await b.redis.set(k.payload, b"\x00\xffbin")
        await b.redis.hset(k.tags, mapping={"a": "b"})
        for i in (1, 0):
            await b.redis.hset(k.attempt(i), mapping={"attempt_index": str(i)})
            await b.redis.zadd(k.attempts, {str(i): 100 + i})
        core = await b.get_exec_core(EID)
        assert core is not None and core.priority == 5 and core.current_lease_id is None
        assert await b.get_payload(EID) == b"\x00\xffbin"
        assert await b.get_tags(EID) == {"a": "b"}
        assert [a.attempt_index for a in await b.list_attempts(EID)] == [0, 1]
        att = await b.get_attempt(EID, 1)
        assert att is not None and att.attempt_index == 1
        p = PartitionKeys("{fp:1}")
        await b.redis.zadd(p.lane_eligible("l"), {"x": 1, "y": 2, "z": 3})
        rows = await b.partition_members(p.lane_eligible("l"), 2, "+inf")
        assert rows == [("y", 2.0), ("z", 3.0)]
        assert await b.partition_members(p.lane_eligible("l"), limit=1) == [("x", 1.0)]
