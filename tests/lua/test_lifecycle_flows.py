"""Lifecycle transitions on both backends: records, index membership and
scores, retries, parking, expiry, reclaim and fencing (spec 02)."""

from __future__ import annotations

import json
import time

import anyio
import pytest
from lifecycle_support import LANE, WIID, WORKER, b, claim, core, create, fenced, history

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import (
    CancelExecution,
    ClaimExecution,
    CompleteExecution,
    DelayExecution,
    FailExecution,
    IssueClaimGrant,
    IssueGrantAndClaim,
    MoveToWaitingChildren,
    RenewLease,
    UpdateProgress,
)
from flowfabric_worker.protocol.maintenance import (
    ExpireExecution,
    IssueReclaimGrant,
    MarkLeaseExpiredIfDue,
    PromoteDelayed,
    ReclaimExecution,
)
from flowfabric_worker.protocol.operator import (
    ChangePriority,
    ReplayExecution,
    RevokeLease,
    SetExecutionTags,
)

pytestmark = pytest.mark.anyio
__all__ = ["b"]


def code_of(exc: BaseException) -> str:
    assert isinstance(exc, ContractError), exc
    return exc.code


async def refused(b: Backend, fn: object) -> ContractError:
    with pytest.raises(ContractError) as ei:
        await b.call(fn)  # type: ignore[arg-type]
    return ei.value


async def test_create_records_and_queue_score(b: Backend) -> None:
    eid = await create(b, priority=12000, tags_json='{"a": 1, "b": "x"}')
    st = await core(b, eid)
    assert st["priority"] == "9000"  # clamped
    assert (st["lifecycle_phase"], st["public_state"], st["attempt_state"]) == (
        "runnable", "waiting", "pending_first_attempt",
    )
    k = ExecKeys(eid)
    score = await b.redis.zscore(k.lane_eligible(LANE), eid)
    assert score == -9000 * 10**12 + int(st["created_at"])
    assert await b.redis.sismember(k.all_executions, eid)
    assert await b.redis.hgetall(k.tags) == {b"a": b"1", b"b": b"x"}
    again = await b.call(__import__("flowfabric_worker.protocol.lifecycle", fromlist=["x"])
                         .CreateExecution(eid=eid, lane_id=LANE))
    assert again.duplicate and again.execution_id == eid


async def test_create_delayed_and_idempotency_key(b: Backend) -> None:
    from flowfabric_worker.protocol.lifecycle import CreateExecution

    future = int(time.time() * 1000) + 60_000
    eid = await create(b, delay_until=future, idempotency_key="k1")
    k = ExecKeys(eid)
    assert await b.redis.zscore(k.lane_delayed(LANE), eid) == future
    assert (await core(b, eid))["blocking_detail"] == f"delayed until {future}"
    other = await b.call(CreateExecution(
        eid=f"{k.tag}:{new_uuid()}", lane_id=LANE, namespace="ns", idempotency_key="k1",
    ))
    assert other.duplicate and other.execution_id == eid


async def test_create_capabilities_sorted_and_grant_mismatch(b: Backend) -> None:
    pol = json.dumps({"routing_requirements": {"required_capabilities": ["gpu", "avx"]}})
    eid = await create(b, policy_json=pol)
    assert (await core(b, eid))["required_capabilities"] == "avx,gpu"
    err = await refused(b, IssueClaimGrant(
        eid=eid, lane_id=LANE, worker_id=WORKER, worker_capabilities_csv="gpu",
    ))
    assert err.code == "capability_mismatch" and err.details[0] == "avx"
    assert (await core(b, eid))["last_capability_mismatch_at"] != ""
    await b.call(IssueClaimGrant(
        eid=eid, lane_id=LANE, worker_id=WORKER, worker_capabilities_csv="avx,gpu,x",
    ))
    err = await refused(b, IssueClaimGrant(eid=eid, lane_id=LANE, worker_id=WORKER,
                                           worker_capabilities_csv="avx,gpu"))
    assert err.code == "grant_already_exists"


async def test_claim_effects_and_repeat(b: Backend) -> None:
    eid = await create(b, execution_deadline_at=int(time.time() * 1000) + 999_000)
    c = await claim(b, eid, attempt_timeout_ms=5000, attempt_policy_json='{"t": 5, "n": {"a": 1}}')
    k = ExecKeys(eid)
    st = await core(b, eid)
    assert st["current_lease_id"] == c.lease_id and st["current_lease_epoch"] == "1"
    assert st["total_attempt_count"] == "1" and st["started_at"] != ""
    assert await b.redis.zscore(k.lane_eligible(LANE), eid) is None
    assert await b.redis.zscore(k.lane_active(LANE), eid) == c.lease_expires_at
    assert await b.redis.zscore(k.lease_expiry, eid) == c.lease_expires_at
    assert await b.redis.sismember(k.worker_leases(WIID), eid)
    assert await b.redis.zscore(k.attempt_timeout, eid) is not None
    assert not await b.redis.exists(k.claim_grant)
    assert await b.redis.hgetall(k.attempt_policy(0)) == {b"t": b"5", b"n": b'{"a":1}'}
    att = await b.redis.hgetall(k.attempt(0))
    assert att[b"attempt_type"] == b"initial" and att[b"attempt_state"] == b"started"
    assert (await history(b, eid))[-1]["event"] == "acquired"
    err = await refused(b, ClaimExecution(
        eid=eid, lane_id=LANE, worker_id=WORKER, worker_instance_id=WIID,
        lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=1000,
    ))
    assert err.code == "execution_not_leaseable"


async def test_claim_preconditions(b: Backend) -> None:
    eid = await create(b)
    mk = dict(eid=eid, lane_id=LANE, worker_instance_id=WIID, lease_id=new_uuid(),
              attempt_id=new_uuid(), lease_ttl_ms=1000)
    assert (await refused(b, ClaimExecution(worker_id=WORKER, **mk))).code == "invalid_claim_grant"
    await b.call(IssueClaimGrant(eid=eid, lane_id=LANE, worker_id=WORKER))
    assert (await refused(b, ClaimExecution(worker_id="other", **mk))).code == "invalid_claim_grant"
    missing = f"{ExecKeys(eid).tag}:{new_uuid()}"
    err = await refused(b, IssueClaimGrant(eid=missing, lane_id=LANE, worker_id=WORKER))
    assert err.code == "execution_not_found"


async def test_retry_path_full(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    policy = json.dumps({"max_retries": 1, "backoff": {"type": "fixed", "delay_ms": 50}})
    before = int(time.time() * 1000)
    r = await b.call(FailExecution(**fenced(eid, c), failure_reason="boom",
                                   retry_policy_json=policy))
    assert r.outcome == "retry_scheduled" and r.delay_until is not None
    assert before + 50 <= r.delay_until <= int(time.time() * 1000) + 50
    k = ExecKeys(eid)
    assert await b.redis.zscore(k.lane_delayed(LANE), eid) == r.delay_until
    st = await core(b, eid)
    assert (st["public_state"], st["attempt_state"], st["current_attempt_id"]) == (
        "delayed", "pending_retry_attempt", "",
    )
    # repeat → execution_not_active with phase runnable
    err = await refused(b, FailExecution(**fenced(eid, c), retry_policy_json=policy))
    assert err.code == "execution_not_active" and err.details[2] == "runnable"
    early = await b.call(PromoteDelayed(eid=eid, lane_id=LANE, now_ms=int(r.delay_until) - 1))
    assert early.tag == "not_yet_due"
    p = await b.call(PromoteDelayed(eid=eid, lane_id=LANE, now_ms=int(r.delay_until)))
    assert p.tag == "promoted"
    assert (await b.call(PromoteDelayed(eid=eid, lane_id=LANE, now_ms=int(r.delay_until)))).tag == (
        "not_delayed_cleaned"
    )
    c2 = await claim(b, eid)
    assert (c2.attempt_index, c2.attempt_type, c2.lease_epoch) == (1, "retry", 2)
    att = await b.redis.hgetall(k.attempt(1))
    assert att[b"retry_reason"] == b"boom" and att[b"previous_attempt_index"] == b"0"
    # the old holder is fenced out by the new attempt
    assert (await refused(b, CompleteExecution(**fenced(eid, c)))).code == "stale_lease"
    r2 = await b.call(FailExecution(**fenced(eid, c2), failure_reason="again",
                                    retry_policy_json=policy))
    assert r2.outcome == "terminal_failed"
    assert await b.redis.zscore(k.lane_terminal(LANE), eid) is not None
    err = await refused(b, FailExecution(**fenced(eid, c2), retry_policy_json=policy))
    assert err.code == "execution_not_active"
    assert err.details == ("failed", "2", "terminal", c2.attempt_id)


async def test_exponential_backoff_delay(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    pol = json.dumps({"max_retries": 3, "backoff": {
        "type": "exponential", "initial_delay_ms": 200, "multiplier": 3, "max_delay_ms": 10_000}})
    t0 = int(time.time() * 1000)
    r = await b.call(FailExecution(**fenced(eid, c), retry_policy_json=pol))
    assert r.delay_until is not None and t0 + 200 <= r.delay_until <= t0 + 200 + 1000
    await b.call(PromoteDelayed(eid=eid, lane_id=LANE, now_ms=int(r.delay_until)))
    c2 = await claim(b, eid)
    t1 = int(time.time() * 1000)
    r2 = await b.call(FailExecution(**fenced(eid, c2), retry_policy_json=pol))
    assert r2.delay_until is not None and t1 + 600 <= r2.delay_until <= t1 + 600 + 1000


async def test_complete_repeat_reconciles(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    await b.call(CompleteExecution(**fenced(eid, c)))
    err = await refused(b, CompleteExecution(**fenced(eid, c)))
    assert err.code == "execution_not_active"
    assert err.details == ("success", "1", "terminal", c.attempt_id)
    hist = await history(b, eid)
    assert [h["event"] for h in hist] == ["acquired", "released"]
    assert hist[-1]["reason"] == "completed"


async def test_expiry_mark_reclaim_and_fencing(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid, ttl=60)
    k = ExecKeys(eid)
    await b.redis.hset(k.stream_meta(0), mapping={"closed_at": "", "frame_count": "0"})
    await anyio.sleep(0.1)
    m = await b.call(MarkLeaseExpiredIfDue(eid=eid))
    assert (m.status, m.tag) == ("OK", "marked_expired")
    again = await b.call(MarkLeaseExpiredIfDue(eid=eid))
    assert (again.status, again.tag) == ("ALREADY_SATISFIED", "already_expired")
    st = await core(b, eid)
    assert st["ownership_state"] == "lease_expired_reclaimable"
    assert st["current_lease_id"] == c.lease_id  # old owner still identifiable
    assert (await b.redis.hget(k.stream_meta(0), "closed_reason")) == b"lease_expired"
    # stale holder after expiry
    assert (await refused(b, CompleteExecution(**fenced(eid, c)))).code == "lease_expired"
    g = await b.call(IssueReclaimGrant(eid=eid, lane_id=LANE, worker_id="w2",
                                       worker_instance_id="w2-i"))
    assert g.grant_expires_at is not None
    r = await b.call(ReclaimExecution(
        eid=eid, lane_id=LANE, worker_id="w2", worker_instance_id="w2-i", lease_id=new_uuid(),
        attempt_id=new_uuid(), lease_ttl_ms=30_000, old_attempt_index=0, new_attempt_index=1,
    ))
    assert (r.attempt_index, r.attempt_type, r.lease_epoch) == (1, "reclaim", 2)
    assert not await b.redis.sismember(k.worker_leases(WIID), eid)
    assert await b.redis.sismember(k.worker_leases("w2-i"), eid)
    old = await b.redis.hgetall(k.attempt(0))
    assert old[b"attempt_state"] == b"interrupted_reclaimed"
    assert (await b.redis.hget(k.stream_meta(0), "closed_reason")) == b"reclaimed"
    assert (await core(b, eid))["lease_reclaim_count"] == "1"
    # stale holder after reclaim
    assert (await refused(b, CompleteExecution(**fenced(eid, c)))).code == "stale_lease"
    assert [h["event"] for h in await history(b, eid)] == ["acquired", "expired", "reclaimed"]
    err = await refused(b, ReclaimExecution(
        eid=eid, lane_id=LANE, worker_id="w2", worker_instance_id="w2-i", lease_id=new_uuid(),
        attempt_id=new_uuid(), lease_ttl_ms=30_000, old_attempt_index=1,
    ))
    assert err.code == "execution_not_reclaimable"


async def test_renew_after_expiry_marks(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid, ttl=50)
    await anyio.sleep(0.08)
    err = await refused(b, RenewLease(eid=eid, attempt_index=0, attempt_id=c.attempt_id,
                                      lease_id=c.lease_id, lease_epoch=1, lease_ttl_ms=1000))
    assert err.code == "lease_expired"
    assert (await core(b, eid))["ownership_state"] == "lease_expired_reclaimable"
    err = await refused(b, UpdateProgress(eid=eid, lease_id=c.lease_id, lease_epoch=1))
    assert err.code == "lease_expired"


async def test_revoke_then_stale_holder(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    k = ExecKeys(eid)
    err = await refused(b, RevokeLease(eid=eid, worker_instance_id=WIID, expected_lease_id="x"))
    assert err.code == "stale_lease"
    r = await b.call(RevokeLease(eid=eid, worker_instance_id=WIID, revoke_reason="op"))
    assert (r.tag, r.lease_id, r.lease_epoch) == ("revoked", c.lease_id, 1)
    again = await b.call(RevokeLease(eid=eid, worker_instance_id=WIID))
    assert (again.status, again.tag) == ("ALREADY_SATISFIED", "already_revoked")
    assert await b.redis.zscore(k.lease_expiry, eid) is None
    assert await b.redis.zscore(k.lane_active(LANE), eid) is not None
    assert (await refused(b, CompleteExecution(**fenced(eid, c)))).code == "lease_revoked"
    assert (await refused(b, RenewLease(
        eid=eid, attempt_index=0, attempt_id=c.attempt_id, lease_id=c.lease_id,
        lease_epoch=1, lease_ttl_ms=1000))).code == "lease_revoked"
    # revoked executions are reclaimable
    await b.call(IssueReclaimGrant(eid=eid, lane_id=LANE, worker_id="w2"))
    r2 = await b.call(ReclaimExecution(
        eid=eid, lane_id=LANE, worker_id="w2", worker_instance_id="w2-i", lease_id=new_uuid(),
        attempt_id=new_uuid(), lease_ttl_ms=30_000, old_attempt_index=0,
    ))
    att = await b.redis.hgetall(k.attempt(1))
    assert att[b"reclaim_reason"] == b"lease_lease_revoked" and r2.attempt_index == 1


async def test_reclaim_cap_commits_terminal_failure(b: Backend) -> None:
    eid = await create(b)
    await claim(b, eid)
    await b.call(RevokeLease(eid=eid, worker_instance_id=WIID))
    await b.call(IssueReclaimGrant(eid=eid, lane_id=LANE, worker_id="w2"))
    err = await refused(b, ReclaimExecution(
        eid=eid, lane_id=LANE, worker_id="w2", worker_instance_id="w2-i", lease_id=new_uuid(),
        attempt_id=new_uuid(), lease_ttl_ms=1000, old_attempt_index=0,
        default_max_reclaim_count=0,
    ))
    assert err.code == "max_retries_exhausted"
    st = await core(b, eid)
    assert (st["public_state"], st["failure_reason"]) == ("failed", "max_reclaims_exceeded")


async def test_stale_fence_variants(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    args = fenced(eid, c)
    args["lease_epoch"] = 7
    assert (await refused(b, CompleteExecution(**args))).code == "stale_lease"
    args = fenced(eid, c)
    args["attempt_id"] = new_uuid()
    assert (await refused(b, DelayExecution(delay_until=1, **args))).code == "stale_lease"
    ov = await b.call(CompleteExecution(eid=eid, lane_id=LANE, attempt_index=0,
                                        worker_instance_id=WIID, source="operator_override"))
    assert ov.status == "completed"


async def test_delay_then_resume_via_grant_and_claim(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    k = ExecKeys(eid)
    d = await b.call(DelayExecution(**fenced(eid, c), delay_until=int(time.time() * 1000) - 5))
    assert await b.redis.zscore(k.lane_delayed(LANE), eid) == d.delay_until
    err = await refused(b, DelayExecution(**fenced(eid, c), delay_until=1))
    assert err.code == "execution_not_active"
    assert err.details == ("none", "1", "runnable", c.attempt_id)
    assert (await b.redis.hget(k.attempt(0), "suspension_id")) == b"worker_delay"
    await b.call(PromoteDelayed(eid=eid, lane_id=LANE, now_ms=int(time.time() * 1000)))
    err = await refused(b, ClaimExecution(
        eid=eid, lane_id=LANE, worker_id="operator", worker_instance_id="operator",
        lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=1000, attempt_index=1,
    ))
    assert err.code == "invalid_claim_grant" or err.code == "use_claim_resumed_execution"
    g = await b.call(IssueGrantAndClaim(eid=eid, lane_id=LANE, lease_id=new_uuid(),
                                        attempt_id=new_uuid(), lease_ttl_ms=30_000))
    assert (g.attempt_index, g.lease_epoch) == (0, 2)
    st = await core(b, eid)
    assert st["current_attempt_id"] == c.attempt_id and st["attempt_state"] == "running_attempt"
    assert (await history(b, eid))[-1]["reason"] == "issue_grant_and_claim_resumed"


async def test_move_to_waiting_children(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    await b.call(MoveToWaitingChildren(**fenced(eid, c)))
    k = ExecKeys(eid)
    st = await core(b, eid)
    assert st["public_state"] == "waiting_children"
    score = await b.redis.zscore(k.lane_blocked(LANE, "dependencies"), eid)
    assert score == int(st["created_at"])
    assert (await history(b, eid))[-1]["reason"] == "waiting_children"


async def test_cancel_runnable_and_active(b: Backend) -> None:
    eid = await create(b)
    r = await b.call(CancelExecution(eid=eid, lane_id=LANE, reason="no"))
    assert r.phase_before == "runnable"
    k = ExecKeys(eid)
    assert await b.redis.zscore(k.lane_eligible(LANE), eid) is None
    assert (await core(b, eid))["cancelled_by"] == eid
    err = await refused(b, CancelExecution(eid=eid, lane_id=LANE))
    assert err.code == "execution_not_active" and err.details[0] == "cancelled"
    eid2 = await create(b)
    c = await claim(b, eid2)
    err = await refused(b, CancelExecution(eid=eid2, lane_id=LANE, lease_id=new_uuid(),
                                           lease_epoch=1, worker_instance_id=WIID))
    assert err.code == "stale_lease"
    r2 = await b.call(CancelExecution(eid=eid2, lane_id=LANE, source="worker",
                                      lease_id=c.lease_id, lease_epoch=1,
                                      worker_instance_id=WIID))
    assert r2.phase_before == "active"
    k2 = ExecKeys(eid2)
    assert await b.redis.zscore(k2.lane_active(LANE), eid2) is None
    assert not await b.redis.sismember(k2.worker_leases(WIID), eid2)
    assert (await b.redis.hget(k2.attempt(0), "attempt_state")) == b"ended_cancelled"


async def test_cancel_suspended_closes_waitpoint(b: Backend) -> None:
    eid = await create(b)
    await claim(b, eid)
    k = ExecKeys(eid)
    wp = new_uuid()
    # The suspend side (part 03) writes these records; reproduce their layout.
    await b.redis.hset(k.core, mapping={"lifecycle_phase": "suspended",
                                        "current_waitpoint_id": wp})
    await b.redis.hset(k.suspension_current, mapping={
        "suspension_id": new_uuid(), "waitpoint_id": wp, "additional_waitpoints_json": "[]",
        "closed_at": ""})
    await b.redis.hset(k.waitpoint(wp), mapping={"state": "active"})
    await b.redis.hset(k.waitpoint_condition(wp), mapping={"closed": "0"})
    r = await b.call(CancelExecution(eid=eid, lane_id=LANE, waitpoint_id=wp,
                                     source="operator_override"))
    assert r.phase_before == "suspended"
    assert await b.redis.hget(k.waitpoint(wp), "state") == b"closed"
    assert await b.redis.hget(k.waitpoint_condition(wp), "closed") == b"1"
    assert await b.redis.hget(k.suspension_current, "close_reason") == b"cancelled"


async def test_flow_member_publishes_completion(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    await b.redis.hset(ExecKeys(eid).core, "flow_id", "f-1")
    ps = b.redis.pubsub()
    await ps.subscribe("ff:dag:completions")
    await ps.get_message(timeout=1)
    await b.call(CompleteExecution(**fenced(eid, c)))
    msg = None
    for _ in range(20):
        msg = await ps.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if msg:
            break
    await ps.aclose()
    assert msg is not None
    assert json.loads(msg["data"]) == {"execution_id": eid, "flow_id": "f-1", "outcome": "success"}


async def test_expire_active(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    r = await b.call(ExpireExecution(eid=eid, lane_id=LANE, expire_reason="execution_deadline"))
    assert (r.tag, r.phase_before) == ("expired", "active")
    k = ExecKeys(eid)
    assert not await b.redis.sismember(k.worker_leases(WIID), eid)
    assert (await core(b, eid))["public_state"] == "expired"
    assert (await b.call(ExpireExecution(eid=eid, lane_id=LANE))).tag == "already_terminal"
    err = await refused(b, CompleteExecution(**fenced(eid, c)))
    assert err.code == "execution_not_active" and err.details[0] == "expired"


async def test_change_priority_replay_tags(b: Backend) -> None:
    eid = await create(b, priority=1)
    r = await b.call(ChangePriority(eid=eid, lane_id=LANE, new_priority=-5))
    assert (r.old_priority, r.new_priority) == (1, 0)
    k = ExecKeys(eid)
    st = await core(b, eid)
    assert await b.redis.zscore(k.lane_eligible(LANE), eid) == int(st["created_at"])
    t = await b.call(SetExecutionTags(eid=eid, tags={"app.x": "1", "app.y": "2"}))
    assert t.tag == "2"
    err = await refused(b, ReplayExecution(eid=eid, lane_id=LANE))
    assert err.code == "execution_not_terminal"
    c = await claim(b, eid)
    await b.call(CompleteExecution(**fenced(eid, c)))
    rp = await b.call(ReplayExecution(eid=eid, lane_id=LANE))
    assert rp.tag == "0"
    assert await b.redis.zscore(k.lane_eligible(LANE), eid) == int(st["created_at"])
    c2 = await claim(b, eid)
    assert (c2.attempt_type, c2.attempt_index) == ("replay", 1)
