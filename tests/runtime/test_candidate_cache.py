"""Heads a claim round read but did not claim are claimed by the next rounds
without reading the index again (worker/candidate_cache.py), on the real
library (redis-server and memory://): fewer index reads in a backlog, and a
kept head someone else claimed meanwhile is refused by the server, never
claimed twice."""

from __future__ import annotations

import time
from typing import Any

import pytest
from worker_support import attempts, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.lifecycle import ClaimExecution, IssueClaimGrant
from flowfabric_worker.worker import candidate_cache
from flowfabric_worker.worker.backend_port import BackendEngine
from flowfabric_worker.worker.candidate_cache import CandidateCache
from flowfabric_worker.worker.scheduler import ClaimIdentity, Permits, Scheduler

pytestmark = pytest.mark.anyio

LANE = "kept-heads"
CAPS: frozenset[str] = frozenset()


@task(name="t.kept_heads", lane=LANE)
async def job(n: int) -> int:
    return n


class _CountingEngine(BackendEngine):
    """Counts index reads (``candidate_reads``)."""

    reads = 0

    async def candidate_reads(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await super().candidate_reads(*args, **kwargs)


def _scheduler(engine: BackendEngine, permits: Permits) -> Scheduler:
    # reclaim=False: only the index reads this test is about.
    return Scheduler(engine, [LANE], ClaimIdentity("w-me", "w-me", CAPS, 30_000), permits,
                     reclaim=False)


async def test_a_backlog_is_claimed_with_fewer_index_reads(backend: Backend) -> None:
    eids = {await submit(backend, job, i) for i in range(40)}
    engine = _CountingEngine(backend)
    permits = Permits(16)
    sched = _scheduler(engine, permits)
    claimed: list[str] = []
    rounds = 0
    while len(claimed) < len(eids):
        got = await sched.claim_batch()
        assert got, "a round found nothing while work was left"
        claimed += [c.execution_id for c in got]
        rounds += 1
        # Tasks finish a few at a time: the next round has few free permits.
        for _ in range(min(permits.in_use, 4)):
            permits.release()
    assert sorted(claimed) == sorted(eids)  # each exactly once
    # 40 executions, 4 per round after the first: 10 rounds, and the heads
    # each read keeps serve the following ones (16 + 4 read, 4 claimed).
    assert engine.reads < rounds / 2, (engine.reads, rounds)


async def test_a_kept_head_claimed_elsewhere_is_skipped_not_claimed_twice(
        backend: Backend) -> None:
    eids = [await submit(backend, job, i) for i in range(30)]
    engine = _CountingEngine(backend)
    permits = Permits(16)
    sched = _scheduler(engine, permits)
    for _ in range(12):  # the first round fills only 4 permits: 12 + 4 heads kept
        assert permits.try_acquire()
    first = await sched.claim_batch()
    assert len(first) == 4 and engine.reads == 1
    mine = {c.execution_id for c in first}
    # Another worker claims every execution left, kept heads included.
    for eid in eids:
        if eid in mine:
            continue
        await backend.issue_claim_grant(IssueClaimGrant(
            eid=eid, lane_id=LANE, worker_id="w-other", worker_instance_id="w-other"))
        await backend.claim_execution(ClaimExecution(
            eid=eid, lane_id=LANE, worker_id="w-other", worker_instance_id="w-other",
            lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=30_000,
            attempt_index=0))
    for _ in first:
        permits.release()
    second = await sched.claim_batch()
    assert second == []  # the server refused every kept head
    for eid in eids:
        assert len(await attempts(backend, eid)) == 1  # nothing claimed twice
    assert len(sched._kept) == 0  # the refusals dropped what was kept


def test_kept_heads_go_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = CandidateCache()
    pre: dict[str, Any] = {"a": 1, "b": 2, "c": 3}
    cache.keep(LANE, ["a", "b", "c", "gone"], pre)  # "gone" has no pre-read: not kept
    assert len(cache) == 3
    assert cache.take(LANE, 2) == (["a", "b"], {"a": 1, "b": 2, "c": 3})
    assert cache.take(LANE, 2) is None  # one left: not enough, and forgotten
    assert len(cache) == 0
    cache.keep(LANE, ["a", "b"], pre)
    now = time.monotonic()
    monkeypatch.setattr(candidate_cache.time, "monotonic",
                        lambda: now + candidate_cache.MAX_AGE + 1)
    assert cache.take(LANE, 1) is None  # too old: the index is read again

