"""The claim path's pre-read made with the candidate read (issue 18):
``BackendEngine.candidate_reads`` + ``claim_many(pre_read=...)`` against the
real library (redis-server and memory://), including pre-reads that went
stale before the claim."""

from __future__ import annotations

from typing import Any

import pytest
from worker_support import attempts, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.lifecycle import ClaimExecution, DelayExecution, IssueClaimGrant
from flowfabric_worker.protocol.maintenance import PromoteDelayed
from flowfabric_worker.protocol.partitions import solo_partition
from flowfabric_worker.worker.backend_port import BackendEngine
from flowfabric_worker.worker.scheduler import ClaimIdentity, Permits, Scheduler

pytestmark = pytest.mark.anyio

LANE = "pre-read"
CAPS: frozenset[str] = frozenset()


@task(name="t.pre_read", lane=LANE)
async def job(n: int) -> int:
    return n


def _parts(b: Backend) -> list[int]:
    n = int(b.partitions.num_flow_partitions)
    solo = solo_partition(LANE) % n
    return [solo, (solo + 1) % n]


async def _claim_by_hand(b: Backend, eid: str, worker: str) -> Any:
    await b.issue_claim_grant(IssueClaimGrant(eid=eid, lane_id=LANE, worker_id=worker,
                                              worker_instance_id=worker))
    return await b.claim_execution(ClaimExecution(
        eid=eid, lane_id=LANE, worker_id=worker, worker_instance_id=worker,
        lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=30_000, attempt_index=0))


async def _claim_many(engine: BackendEngine, eids: list[str], pre: Any) -> list[Any]:
    return await engine.claim_many(LANE, eids, "w-me", "w-me", CAPS, 30_000, 5_000,
                                   pre_read=pre)


async def test_one_call_reads_heads_with_payload_and_tags(backend: Backend) -> None:
    engine = BackendEngine(backend)
    first = await submit(backend, job, 1)
    second = await submit(backend, job, 2)
    heads, pre = await engine.candidate_reads(LANE, _parts(backend), 8)
    assert sorted(heads[0]) == sorted([first, second]) and heads[1] == []
    assert pre[first].payload == job.encode_args(1) and pre[first].tags == {}
    assert pre[first].core["total_attempt_count"] == "0"
    got = await _claim_many(engine, heads[0], pre)
    assert sorted(g.payload for g in got if isinstance(g, Claimed)) == [job.encode_args(1),
                                                                         job.encode_args(2)]
    assert all(g.attempt_index == 0 and g.execution_kind == "t.pre_read" for g in got)


async def test_claimed_elsewhere_after_the_pre_read_is_skipped(backend: Backend) -> None:
    engine = BackendEngine(backend)
    eid = await submit(backend, job, 3)
    _heads, pre = await engine.candidate_reads(LANE, _parts(backend), 8)
    other = await _claim_by_hand(backend, eid, "w-other")
    (got,) = await _claim_many(engine, [eid], pre)
    assert isinstance(got, ContractError)  # refused by the server, not double-claimed
    (only,) = await attempts(backend, eid)
    assert only["lease_id"] == other.lease_id


async def test_interrupted_after_the_pre_read_is_claimed_as_a_resume(backend: Backend) -> None:
    engine = BackendEngine(backend)
    eid = await submit(backend, job, 4)
    _heads, pre = await engine.candidate_reads(LANE, _parts(backend), 8)
    assert pre[eid].core["attempt_state"] == "pending_first_attempt"
    # Another worker claims it and hands it back (drain), and it is promoted:
    # the attempt is interrupted and eligible again, which the pre-read did
    # not see.
    other = await _claim_by_hand(backend, eid, "w-other")
    now = await backend.server_time_ms()
    await backend.delay_execution(DelayExecution(
        eid=eid, lane_id=LANE, attempt_index=other.attempt_index,
        worker_instance_id="w-other", lease_id=other.lease_id, lease_epoch=other.lease_epoch,
        attempt_id=other.attempt_id, delay_until=now, source="worker"))
    await backend.call(PromoteDelayed(eid=eid, lane_id=LANE, now_ms=now + 1))
    (got,) = await _claim_many(engine, [eid], pre)
    assert isinstance(got, Claimed), got
    assert got.resumed and got.attempt_index == 0 and got.attempt_id == other.attempt_id
    assert got.payload == job.encode_args(4)
    assert len(await attempts(backend, eid)) == 1


async def test_a_scheduler_round_sends_no_separate_pre_read(backend: Backend,
                                                            monkeypatch: Any) -> None:
    engine = BackendEngine(backend)
    eids = [await submit(backend, job, i) for i in range(3)]
    sent: list[list[Any]] = []
    real = backend.read_many

    async def spy(commands: list[list[Any]]) -> list[Any]:
        sent.extend(commands)
        return await real(commands)

    monkeypatch.setattr(backend, "read_many", spy)
    sched = Scheduler(engine, [LANE], ClaimIdentity("w-me", "w-me", CAPS, 30_000), Permits(8))
    got = await sched.claim_batch()
    assert sorted(c.execution_id for c in got) == sorted(eids)
    # Only the other partitions' ZRANGEs (and the reclaim look's "any lease
    # at all?" EXISTS and TIME): no HMGET / GET / HGETALL per candidate.
    assert sent and {c[0] for c in sent} <= {"ZRANGE", "TIME", "EXISTS"}
