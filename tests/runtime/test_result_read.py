"""``read_core_and_result``: what a woken ``run.result()`` reads, state and
result in one round trip (issue 18)."""

from __future__ import annotations

from typing import Any

import pytest

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.result_listener import read_core_and_result, read_state_and_result
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.lifecycle import (
    ClaimExecution,
    CompleteExecution,
    CreateExecution,
    IssueClaimGrant,
)
from flowfabric_worker.protocol.partitions import solo_partition

pytestmark = pytest.mark.anyio


@task(name="t.result_read")
async def job() -> int:
    return 7


async def test_state_and_result_in_one_read(backend: Backend, monkeypatch: Any) -> None:
    eid = mint_execution_id(lane_id=job.lane)
    await backend.call(CreateExecution(
        eid=eid, namespace="ns", lane_id=job.lane, execution_kind=job.name,
        input_payload=job.encode_args(), partition_id=solo_partition(job.lane)))
    core, data = await read_core_and_result(backend, eid)
    assert core is not None and not core.is_terminal and data is None
    await backend.issue_claim_grant(IssueClaimGrant(eid=eid, lane_id=job.lane, worker_id="w",
                                                    worker_instance_id="w"))
    lease, attempt = new_uuid(), new_uuid()
    await backend.claim_execution(ClaimExecution(
        eid=eid, lane_id=job.lane, worker_id="w", worker_instance_id="w", lease_id=lease,
        attempt_id=attempt, lease_ttl_ms=30_000, attempt_index=0))
    await backend.call(CompleteExecution(
        eid=eid, lane_id=job.lane, attempt_index=0, worker_instance_id="w", lease_id=lease,
        lease_epoch=1, attempt_id=attempt, result_payload=job.encode_result(7)))
    calls: list[list[list[Any]]] = []
    real = backend.read_many

    async def spy(commands: list[list[Any]]) -> list[Any]:
        calls.append(commands)
        return await real(commands)

    monkeypatch.setattr(backend, "read_many", spy)
    core, data = await read_core_and_result(backend, eid)
    assert core is not None and str(core.public_state) == "completed"
    assert job.decode_result(data or b"") == 7
    assert len(calls) == 1  # one round trip
    assert await read_core_and_result(backend, mint_execution_id(lane_id="x")) == (None, None)


async def test_a_waiter_reads_two_fields_and_the_result(backend: Backend,
                                                       monkeypatch: Any) -> None:
    """``run.result()`` reads the phase, the public state and the result in one
    round trip, without decoding the whole record (issue 18, round trip)."""
    eid = mint_execution_id(lane_id=job.lane)
    assert await read_state_and_result(backend, eid) == (None, "", None)
    await backend.call(CreateExecution(
        eid=eid, namespace="ns", lane_id=job.lane, execution_kind=job.name,
        input_payload=job.encode_args(), partition_id=solo_partition(job.lane)))
    calls: list[list[list[Any]]] = []
    real = backend.read_many

    async def spy(commands: list[list[Any]]) -> list[Any]:
        calls.append(commands)
        return await real(commands)

    monkeypatch.setattr(backend, "read_many", spy)
    assert await read_state_and_result(backend, eid) == ("runnable", "waiting", None)
    assert len(calls) == 1 and calls[0][0][0] == "HMGET"
