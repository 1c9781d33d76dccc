"""Refusal codes, scanner outcomes, admission parking and the worker
registry on both backends (spec 02 §3, §5.3)."""

from __future__ import annotations

import time

import anyio
import pytest
from lifecycle_support import LANE, WIID, WORKER, b, claim, core, create, fenced

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.function import as_str
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import (
    ClaimResult,
    CompleteExecution,
    IssueClaimGrant,
    IssueGrantAndClaim,
    RenewLease,
    UpdateProgress,
)
from flowfabric_worker.protocol.maintenance import (
    BlockExecutionForAdmission,
    IssueReclaimGrant,
    MarkLeaseExpiredIfDue,
    PromoteDelayed,
    UnblockExecution,
)
from flowfabric_worker.protocol.operator import RevokeLease, SetExecutionTags
from flowfabric_worker.protocol.worker_registry import HeartbeatWorker, RegisterWorker, Version

pytestmark = pytest.mark.anyio
__all__ = ["b"]


async def code(b: Backend, fn: object) -> str:
    with pytest.raises(ContractError) as ei:
        await b.call(fn)  # type: ignore[arg-type]
    return ei.value.code


async def test_grant_and_claim_fresh_path_and_repeat(b: Backend) -> None:
    eid = await create(b)
    g = await b.call(IssueGrantAndClaim(eid=eid, lane_id=LANE, lease_id=new_uuid(),
                                        attempt_id=new_uuid(), lease_ttl_ms=5000))
    assert (g.lease_epoch, g.attempt_index) == (1, 0)
    st = await core(b, eid)
    assert st["current_worker_id"] == "operator" and st["public_state"] == "active"
    assert not await b.redis.exists(ExecKeys(eid).claim_grant)
    again = IssueGrantAndClaim(eid=eid, lane_id=LANE, lease_id=new_uuid(),
                               attempt_id=new_uuid(), lease_ttl_ms=5000)
    assert await code(b, again) == "execution_not_eligible"


async def test_grant_requires_eligible_set_membership(b: Backend) -> None:
    eid = await create(b)
    await b.redis.zrem(ExecKeys(eid).lane_eligible(LANE), eid)
    assert await code(b, IssueClaimGrant(eid=eid, lane_id=LANE, worker_id=WORKER)) == (
        "execution_not_in_eligible_set"
    )


async def test_renew_and_progress_fencing(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    bad = RenewLease(eid=eid, attempt_index=1, attempt_id=c.attempt_id, lease_id=c.lease_id,
                     lease_epoch=1, lease_ttl_ms=1000)
    assert await code(b, bad) == "stale_lease"
    k = ExecKeys(eid)
    reply = await b.redis.execute_command(
        "FCALL", "ff_renew_lease", 4, k.core, k.lease_current, k.lease_history, k.lease_expiry,
        eid, "0", "", c.lease_id, "1", "1000", "0")
    assert [as_str(x) for x in reply[1:]] == ["partial_fence_triple"]
    reply = await b.redis.execute_command(
        "FCALL", "ff_renew_lease", 4, k.core, k.lease_current, k.lease_history, k.lease_expiry,
        eid, "0", "", "", "", "1000", "0")
    assert [as_str(x) for x in reply[1:]] == ["fence_required"]
    assert await code(b, UpdateProgress(eid=eid, lease_id="x", lease_epoch=1)) == "stale_lease"
    # renew is repeatable and re-scores lease_expiry only
    ok1 = await b.call(RenewLease(eid=eid, attempt_index=0, attempt_id=c.attempt_id,
                                  lease_id=c.lease_id, lease_epoch=1, lease_ttl_ms=90_000))
    assert await b.redis.zscore(k.lease_expiry, eid) == ok1.lease_expires_at
    assert await b.redis.zscore(k.lane_active(LANE), eid) == c.lease_expires_at
    assert await b.redis.pttl(k.lease_current) > 90_000


async def test_complete_without_fence_needs_override(b: Backend) -> None:
    eid = await create(b)
    await claim(b, eid)
    k = ExecKeys(eid)
    fn = CompleteExecution(eid=eid, lane_id=LANE, attempt_index=0, worker_instance_id=WIID,
                           source="operator_override")
    keys = fn.keys()
    reply = await b.redis.execute_command("FCALL", fn.NAME, len(keys), *keys,
                                          eid, "", "", "", "", "")
    assert as_str(reply[1]) == "fence_required"
    missing = f"{k.tag}:{new_uuid()}"
    assert await code(b, CompleteExecution(**fenced(missing, await _dummy_claim(b)))) == (
        "execution_not_found"
    )


async def _dummy_claim(b: Backend) -> ClaimResult:
    eid = await create(b)
    return await claim(b, eid)


async def test_mark_expired_outcomes(b: Backend) -> None:
    eid = await create(b)
    r = await b.call(MarkLeaseExpiredIfDue(eid=eid))
    assert (r.status, r.tag) == ("ALREADY_SATISFIED", "not_active")
    await claim(b, eid)
    assert (await b.call(MarkLeaseExpiredIfDue(eid=eid))).tag == "not_yet_expired"
    missing = f"{ExecKeys(eid).tag}:{new_uuid()}"
    await b.redis.zadd(ExecKeys(eid).lease_expiry, {missing: 1})
    assert (await b.call(MarkLeaseExpiredIfDue(eid=missing))).tag == "execution_not_found"
    assert await b.redis.zscore(ExecKeys(eid).lease_expiry, missing) is None


async def test_revoke_and_reclaim_grant_preconditions(b: Backend) -> None:
    eid = await create(b)
    assert await code(b, RevokeLease(eid=eid, worker_instance_id=WIID)) == "execution_not_active"
    assert await code(b, IssueReclaimGrant(eid=eid, lane_id=LANE, worker_id="w2")) == (
        "execution_not_reclaimable"
    )
    c = await claim(b, eid, ttl=50)
    await anyio.sleep(0.08)
    await b.call(MarkLeaseExpiredIfDue(eid=eid))
    r = await b.call(RevokeLease(eid=eid, worker_instance_id=WIID))
    assert (r.status, r.tag) == ("ALREADY_SATISFIED", "already_expired")
    await b.call(IssueReclaimGrant(eid=eid, lane_id=LANE, worker_id="w2"))
    assert await code(b, IssueReclaimGrant(eid=eid, lane_id=LANE, worker_id="w2")) == (
        "grant_already_exists"
    )
    assert c.lease_epoch == 1


async def test_promote_cleanup_tags(b: Backend) -> None:
    eid = await create(b)
    k = ExecKeys(eid)
    await b.redis.zadd(k.lane_delayed(LANE), {eid: 1})
    r = await b.call(PromoteDelayed(eid=eid, lane_id=LANE, now_ms=int(time.time() * 1000)))
    assert r.tag == "not_delayed_cleaned"
    assert await b.redis.zscore(k.lane_delayed(LANE), eid) is None
    missing = f"{k.tag}:{new_uuid()}"
    assert (await b.call(PromoteDelayed(eid=missing, lane_id=LANE, now_ms=1))).tag == (
        "not_found_cleaned"
    )


async def test_set_tags_rules(b: Backend) -> None:
    eid = await create(b)
    k = ExecKeys(eid)
    reply = await b.redis.execute_command("FCALL", "ff_set_execution_tags", 2, k.core, k.tags,
                                          "app.x", "1", "Bad", "2")
    assert [as_str(x) for x in reply[1:]] == ["invalid_tag_key", "Bad"]
    assert not await b.redis.exists(k.tags)
    reply = await b.redis.execute_command("FCALL", "ff_set_execution_tags", 2, k.core, k.tags,
                                          "app.x")
    assert as_str(reply[1]) == "invalid_input"
    await b.call(SetExecutionTags(eid=eid, tags={"app.x": "1"}))
    assert await b.redis.hget(k.tags, "app.x") == b"1"


async def test_block_and_unblock(b: Backend) -> None:
    eid = await create(b)
    k = ExecKeys(eid)
    await b.call(BlockExecutionForAdmission(eid=eid, lane_id=LANE,
                                            blocking_reason="waiting_for_capable_worker",
                                            blocking_detail="no worker", now_ms=42))
    st = await core(b, eid)
    assert (st["eligibility_state"], st["public_state"]) == ("blocked_by_route", "rate_limited")
    assert await b.redis.zscore(k.lane_blocked(LANE, "route"), eid) == 42
    assert await b.redis.zscore(k.lane_eligible(LANE), eid) is None
    wrong = UnblockExecution(eid=eid, lane_id=LANE, source="route", now_ms=43,
                             expected_blocking_reason="waiting_for_budget")
    assert await code(b, wrong) == "execution_not_eligible"
    await b.call(UnblockExecution(eid=eid, lane_id=LANE, source="route", now_ms=43))
    assert await b.redis.zscore(k.lane_eligible(LANE), eid) == int(st["created_at"])
    assert await code(b, UnblockExecution(eid=eid, lane_id=LANE, source="route", now_ms=44)) == (
        "execution_not_eligible"
    )


async def test_worker_registry(b: Backend) -> None:
    reg = RegisterWorker(namespace="ns", instance_id="i1", worker_id="w", lanes=("a",),
                         capabilities=("gpu",), ttl_ms=5000, now_ms=1)
    assert (await b.call(reg)).tag == "registered"
    assert (await b.call(reg)).tag == "refreshed"
    hb = await b.call(HeartbeatWorker(namespace="ns", instance_id="i1", now_ms=2))
    assert (hb.tag, hb.ttl_ms) == ("refreshed", 5000)
    caps = await b.redis.hgetall("ff:worker:ns:i1:caps")
    assert caps[b"caps_csv"] == b"gpu" and caps[b"last_heartbeat_ms"] == b"2"
    assert await b.redis.sismember("ff:idx:ns:workers", "i1")
    gone = await b.call(HeartbeatWorker(namespace="ns", instance_id="nobody", now_ms=2))
    assert gone.tag == "not_registered"
    assert await b.call(Version()) == "34"
