"""Budgets and quota admission on both backends: creation, hard/soft
breaches, dedup, the per-execution ledger, resets and admission refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.budgets import (
    CheckAdmissionAndRecord,
    CreateBudget,
    CreateQuotaPolicy,
    RecordSpend,
    ReleaseAdmission,
    ReleaseBudget,
    ReportUsageAndCheck,
    ResetBudget,
)
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import BudgetKeys, QuotaKeys
from flowfabric_worker.protocol.partitions import budget_tag, quota_tag

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000_000


@pytest.fixture
async def b(url: str) -> AsyncIterator[Backend]:
    backend = await Backend.open(url)
    try:
        yield backend
    finally:
        await backend.close()


async def budget(
    b: Backend, limits: dict[str, tuple[int, int]], interval: int = 0
) -> tuple[str, str]:
    bid = new_uuid()
    tag = budget_tag(bid, b.partitions)
    r = await b.call(CreateBudget(tag=tag, budget_id=bid, scope_type="flow", scope_id="f",
                                  reset_interval_ms=interval, now_ms=NOW, limits=limits))
    assert r.created
    return tag, bid


async def usage(b: Backend, tag: str, bid: str) -> dict[str, int]:
    raw = await b.redis.hgetall(BudgetKeys(tag, bid).usage)
    return {k.decode(): int(v) for k, v in raw.items()}


async def test_create_budget_is_idempotent_and_indexed(b: Backend) -> None:
    tag, bid = await budget(b, {"tokens": (100, 80)}, interval=60_000)
    bk = BudgetKeys(tag, bid)
    again = await b.call(CreateBudget(tag=tag, budget_id=bid, scope_type="x", scope_id="y",
                                      now_ms=NOW, limits={"tokens": (1, 1)}))
    assert not again.created
    assert await b.redis.hgetall(bk.limits) == {b"hard:tokens": b"100", b"soft:tokens": b"80"}
    assert await b.redis.zscore(bk.resets, bid) == NOW + 60_000
    assert await b.redis.sismember(bk.policies, bid)


async def test_report_hard_soft_and_dedup(b: Backend) -> None:
    tag, bid = await budget(b, {"tokens": (100, 50), "cost": (0, 0)})

    def report(deltas: dict[str, int], dedup: str = "") -> ReportUsageAndCheck:
        return ReportUsageAndCheck(tag=tag, budget_id=bid, deltas=deltas, now_ms=NOW,
                                   dedup_id=dedup)

    r = await b.call(report({"tokens": 40, "cost": 7}, "d1"))
    assert r.status == "OK" and r.applied
    assert (await b.call(report({"tokens": 40, "cost": 7}, "d1"))).status == "ALREADY_APPLIED"
    r = await b.call(report({"tokens": 20}))
    assert (r.status, r.dimension, r.value, r.limit) == ("SOFT_BREACH", "tokens", 60, 50)
    r = await b.call(report({"tokens": 41, "cost": 1}, "d2"))
    assert (r.status, r.dimension, r.value, r.limit) == ("HARD_BREACH", "tokens", 60, 100)
    assert await usage(b, tag, bid) == {"tokens": 60, "cost": 7}  # nothing applied
    assert (await b.call(report({"tokens": 40}, "d2"))).status == "SOFT_BREACH"  # retry fresh
    d = await b.redis.hgetall(BudgetKeys(tag, bid).definition)
    assert (d[b"breach_count"], d[b"soft_breach_count"], d[b"last_breach_dim"]) == (
        b"1", b"2", b"tokens")
    with pytest.raises(InvalidInput):
        report({"tokens": -1})
    with pytest.raises(InvalidInput):
        report({f"d{i}": 1 for i in range(65)})


async def test_record_spend_ledger_release_and_reset(b: Backend) -> None:
    tag, bid = await budget(b, {"tokens": (0, 0)}, interval=1000)
    eid = mint_execution_id(lane_id="default", config=b.partitions)
    r = await b.call(RecordSpend(tag=tag, budget_id=bid, deltas={"tokens": 5, "cost": 2},
                                 now_ms=NOW, eid=eid))
    assert r.status == "OK"
    await b.call(RecordSpend(tag=tag, budget_id=bid, deltas={"tokens": 3}, now_ms=NOW))
    assert await usage(b, tag, bid) == {"tokens": 8, "cost": 2}
    rel = await b.call(ReleaseBudget(tag=tag, budget_id=bid, eid=eid))
    assert rel.released
    assert await usage(b, tag, bid) == {"tokens": 3, "cost": 0}
    assert not (await b.call(ReleaseBudget(tag=tag, budget_id=bid, eid=eid))).released
    reset = await b.call(ResetBudget(tag=tag, budget_id=bid, now_ms=NOW + 5))
    assert reset.next_reset_at == NOW + 1005
    assert await usage(b, tag, bid) == {"tokens": 0, "cost": 0}
    d = await b.redis.hgetall(BudgetKeys(tag, bid).definition)
    assert d[b"reset_count"] == b"1"


async def test_raw_invalid_dim_count(b: Backend) -> None:
    bk = BudgetKeys(budget_tag(new_uuid()), new_uuid())
    raw = await b.redis.fcall("ff_report_usage_and_check", 3, bk.usage, bk.limits,
                              bk.definition, "x")
    assert raw[0] == 0 and raw[1] == b"invalid_input"


async def quota(b: Backend, window_s: int, rate: int, cap: int) -> tuple[str, str]:
    qid = new_uuid()
    tag = quota_tag(qid, b.partitions)
    r = await b.call(CreateQuotaPolicy(tag=tag, quota_id=qid, window_seconds=window_s,
                                       max_requests_per_window=rate, max_concurrent=cap,
                                       now_ms=NOW))
    assert r.created
    assert not (await b.call(CreateQuotaPolicy(
        tag=tag, quota_id=qid, window_seconds=1, max_requests_per_window=1,
        max_concurrent=1, now_ms=NOW))).created
    return tag, qid


def admit(tag: str, qid: str, eid: str, now: int, *, rate: int = 0, cap: int = 0,
          window: int = 10) -> CheckAdmissionAndRecord:
    return CheckAdmissionAndRecord(tag=tag, quota_id=qid, eid=eid, now_ms=now,
                                   window_seconds=window, rate_limit=rate, concurrency_cap=cap)


async def test_admission_rate_limit(b: Backend) -> None:
    tag, qid = await quota(b, 10, 2, 0)
    e1, e2, e3 = (mint_execution_id(lane_id="default") for _ in range(3))
    assert (await b.call(admit(tag, qid, e1, NOW, rate=2))).status == "ADMITTED"
    assert (await b.call(admit(tag, qid, e1, NOW + 1, rate=2))).status == "ALREADY_ADMITTED"
    assert (await b.call(admit(tag, qid, e2, NOW + 1000, rate=2))).admitted
    r = await b.call(admit(tag, qid, e3, NOW + 4000, rate=2))
    assert (r.status, r.retry_after_ms) == ("RATE_EXCEEDED", 6000)
    assert await b.redis.zcard(QuotaKeys(tag, qid).window("default")) == 2
    # The oldest admission ages out of the window.
    assert (await b.call(admit(tag, qid, e3, NOW + 10_001, rate=2))).status == "ADMITTED"


async def test_admission_concurrency_cap_and_release(b: Backend) -> None:
    tag, qid = await quota(b, 10, 0, 1)
    qk = QuotaKeys(tag, qid)
    e1, e2 = (mint_execution_id(lane_id="default") for _ in range(2))
    assert (await b.call(admit(tag, qid, e1, NOW, cap=1))).status == "ADMITTED"
    assert (await b.call(admit(tag, qid, e2, NOW, cap=1))).status == "CONCURRENCY_EXCEEDED"
    await b.call(ReleaseAdmission(tag=tag, quota_id=qid, eid=e1))
    assert await b.redis.get(qk.concurrency) == b"0"
    assert not await b.redis.sismember(qk.admitted_set, e1)
    await b.call(ReleaseAdmission(tag=tag, quota_id=qid, eid=e1))  # idempotent
    assert await b.redis.get(qk.concurrency) == b"0"
    assert (await b.call(admit(tag, qid, e2, NOW, cap=1))).status == "ADMITTED"


async def test_admission_invalid_input(b: Backend) -> None:
    tag, qid = await quota(b, 10, 0, 0)
    qk = QuotaKeys(tag, qid)
    eid = mint_execution_id(lane_id="default")
    raw = await b.redis.fcall("ff_check_admission_and_record", 5, qk.window("default"),
                              qk.concurrency, qk.definition, qk.admitted(eid),
                              qk.admitted_set, "x", "10", "1", "0", eid)
    with pytest.raises(ContractError) as e:
        admit(tag, qid, eid, NOW).decode(raw)
    assert e.value.code == "invalid_input"
