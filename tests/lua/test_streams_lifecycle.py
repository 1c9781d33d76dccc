"""Streams against real lifecycle transitions: claim, append, complete -> closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import (
    ClaimExecution,
    CompleteExecution,
    CreateExecution,
    IssueClaimGrant,
)
from flowfabric_worker.protocol.streams import AppendFrame, ReadAttemptStream

pytestmark = pytest.mark.anyio

LANE, WORKER, WIID = "default", "w1", "w1-i1"


@pytest.fixture
async def backend(url: str, raw: Any) -> AsyncIterator[Backend]:
    b = await Backend.open(url)
    try:
        yield b
    finally:
        await b.close()


async def test_complete_closes_stream_and_refuses_appends(backend: Backend) -> None:
    eid = mint_execution_id(lane_id=LANE)
    await backend.call(CreateExecution(eid=eid, namespace="ns", execution_kind="k",
                                       lane_id=LANE))
    await backend.call(IssueClaimGrant(eid=eid, lane_id=LANE, worker_id=WORKER,
                                       worker_instance_id=WIID))
    c = await backend.call(ClaimExecution(
        eid=eid, lane_id=LANE, worker_id=WORKER, worker_instance_id=WIID, lease_id=new_uuid(),
        attempt_id=new_uuid(), lease_ttl_ms=30_000, attempt_index=0))

    def frame(text: str) -> AppendFrame:
        return AppendFrame(eid=eid, attempt_index=c.attempt_index, lease_id=c.lease_id,
                           lease_epoch=c.lease_epoch, attempt_id=c.attempt_id,
                           frame_type="stdout", payload=text)

    await backend.append_frame(frame("working"))
    meta = await backend.read_stream_meta(eid, c.attempt_index)
    assert meta is not None and meta.attempt_id == c.attempt_id
    await backend.call(CompleteExecution(
        eid=eid, lane_id=LANE, attempt_index=c.attempt_index, worker_instance_id=WIID,
        lease_id=c.lease_id, lease_epoch=c.lease_epoch, attempt_id=c.attempt_id))
    with pytest.raises(ContractError) as ei:
        await backend.append_frame(frame("late"))
    assert ei.value.code == "stream_closed"
    page = await backend.read_attempt_stream(
        ReadAttemptStream(eid=eid, attempt_index=c.attempt_index))
    assert [f.text for f in page.frames] == ["working"]
    assert page.closed and page.closed_reason == "attempt_success"
    assert await backend.redis.exists(ExecKeys(eid).stream(c.attempt_index)) == 1
