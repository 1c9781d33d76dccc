"""Suspend, deliver, resume and resume-claim on both backends (spec 03 §5–§6)."""

from __future__ import annotations

import pytest
from lifecycle_support import LANE, WIID, WORKER, b, claim, core
from signals_support import SECRET, active, buffer, deliver, expected_token, hall, suspend

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import IssueClaimGrant
from flowfabric_worker.protocol.signals import (
    ClaimResumedExecution,
    CloseWaitpoint,
    CreatePendingWaitpoint,
    ResumeExecution,
)

pytestmark = pytest.mark.anyio
__all__ = ["b"]


def code(exc: pytest.ExceptionInfo[ContractError]) -> str:
    return exc.value.code


async def test_suspend_then_signal_resumes_and_resume_claim_continues_attempt(b: Backend) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c)
    assert s.suspended and s.extras == ()
    k = ExecKeys(eid)
    wp = await hall(b, k.waitpoint(s.primary.waitpoint_id))
    assert s.primary.token.secret() == expected_token(
        SECRET, "k1", wp["waitpoint_id"], wp["waitpoint_key"], wp["created_at"])
    assert "<redacted:40>" in repr(s)
    st = await core(b, eid)
    assert (st["lifecycle_phase"], st["public_state"], st["current_lease_id"]) == (
        "suspended", "suspended", "")
    assert await b.redis.exists(k.lease_current) == 0
    assert await b.redis.zscore(k.lane_suspended(LANE), eid) is not None

    r = await deliver(b, eid, s.primary.waitpoint_id, s.primary.token.secret(), "other")
    assert r.effect == "no_op"
    r = await deliver(b, eid, s.primary.waitpoint_id, s.primary.token.secret())
    assert r.effect == "resume_condition_satisfied"
    st = await core(b, eid)
    assert (st["lifecycle_phase"], st["public_state"], st["attempt_state"]) == (
        "runnable", "waiting", "attempt_interrupted")
    assert await b.redis.zscore(k.lane_eligible(LANE), eid) is not None
    assert (await hall(b, k.suspension_current))["close_reason"] == "resumed"

    # A plain claim is refused; the resume claim continues the same attempt.
    with pytest.raises(ContractError) as e:
        await claim(b, eid)
    assert code(e) == "use_claim_resumed_execution"
    # (the grant issued by that attempt is still there for the resume claim)
    rc = await b.call(ClaimResumedExecution(
        eid=eid, worker_id=WORKER, worker_instance_id=WIID, lane=LANE, lease_id=new_uuid(),
        lease_ttl_ms=30_000, attempt_index=c.attempt_index))
    assert (rc.attempt_id, rc.attempt_index, rc.lease_epoch) == (
        c.attempt_id, c.attempt_index, c.lease_epoch + 1)
    st = await core(b, eid)
    assert (st["lifecycle_phase"], st["attempt_state"]) == ("active", "running_attempt")
    # Replay: grant consumed.
    with pytest.raises(ContractError) as e:
        await b.call(ClaimResumedExecution(
            eid=eid, worker_id=WORKER, worker_instance_id=WIID, lane=LANE,
            lease_id=new_uuid(), lease_ttl_ms=30_000, attempt_index=c.attempt_index))
    assert code(e) == "execution_not_leaseable"


async def test_resume_claim_refuses_non_resumed_and_wrong_grant(b: Backend) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c)
    await b.call(ResumeExecution(eid=eid, lane=LANE,
                                 current_waitpoint_id=s.primary.waitpoint_id))
    await b.call(IssueClaimGrant(eid=eid, lane_id=LANE, worker_id="other",
                                 worker_instance_id=WIID))
    with pytest.raises(ContractError) as e:
        await b.call(ClaimResumedExecution(
            eid=eid, worker_id=WORKER, worker_instance_id=WIID, lane=LANE,
            lease_id=new_uuid(), lease_ttl_ms=30_000, attempt_index=0))
    assert code(e) == "invalid_claim_grant"


async def test_operator_resume_with_delay_and_replay(b: Backend) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c)
    r = await b.call(ResumeExecution(eid=eid, lane=LANE, resume_delay_ms=5000,
                                     current_waitpoint_id=s.primary.waitpoint_id))
    assert r.public_state == "delayed"
    k = ExecKeys(eid)
    assert await b.redis.zscore(k.lane_delayed(LANE), eid) is not None
    assert (await hall(b, k.waitpoint(s.primary.waitpoint_id)))["close_reason"] == "resumed"
    # Spec 03 §5.3: the primary condition stays open after an operator resume.
    assert (await hall(b, k.waitpoint_condition(s.primary.waitpoint_id)))["closed"] == "0"
    with pytest.raises(ContractError) as e:
        await b.call(ResumeExecution(eid=eid, lane=LANE,
                                     current_waitpoint_id=s.primary.waitpoint_id))
    assert code(e) == "execution_not_suspended"


async def test_suspend_fencing_and_already_suspended(b: Backend) -> None:
    eid, c = await active(b)
    with pytest.raises(ContractError) as e:
        await suspend(b, eid, c.__class__(
            lease_id=new_uuid(), lease_epoch=c.lease_epoch, lease_expires_at=0,
            attempt_id=c.attempt_id, attempt_index=c.attempt_index, attempt_type=""))
    assert code(e) == "stale_lease"
    await suspend(b, eid, c)
    with pytest.raises(ContractError) as e:
        await suspend(b, eid, c)
    assert code(e) == "execution_not_active"
    assert e.value.details[2] == "suspended"


async def test_pending_waitpoint_buffer_then_activate_already_satisfied(b: Backend) -> None:
    eid, c = await active(b)
    wp_id = new_uuid()
    k = ExecKeys(eid)
    pw = await b.call(CreatePendingWaitpoint(
        eid=eid, attempt_index=c.attempt_index, waitpoint_id=wp_id,
        waitpoint_key=f"wpk:{wp_id}", expires_at=2**41))
    created = (await hall(b, k.waitpoint(wp_id)))["created_at"]
    assert pw.token.secret() == expected_token(SECRET, "k1", wp_id, f"wpk:{wp_id}", created)
    with pytest.raises(ContractError) as e:
        await b.call(CreatePendingWaitpoint(
            eid=eid, attempt_index=c.attempt_index, waitpoint_id=wp_id,
            waitpoint_key=f"wpk:{wp_id}", expires_at=2**41))
    assert code(e) == "waitpoint_already_exists"
    # Deliver to a pending waitpoint is redirected to buffering.
    with pytest.raises(ContractError) as e:
        await deliver(b, eid, wp_id, pw.token.secret())
    assert code(e) == "waitpoint_pending_use_buffer_script"
    r = await buffer(b, eid, wp_id, pw.token.secret(), "a")
    assert r.effect == "buffered_for_pending_waitpoint"
    s = await suspend(b, eid, c, C.signal_set(["a"]), wp_id=wp_id, pending=True)
    assert s.status == "ALREADY_SATISFIED" and not s.suspended
    assert s.primary.token.secret() == pw.token.secret()
    st = await core(b, eid)
    assert st["lifecycle_phase"] == "active"
    assert (await hall(b, k.waitpoint(wp_id)))["state"] == "closed"


async def test_pending_waitpoint_partial_buffer_then_suspend_and_finish(b: Backend) -> None:
    eid, c = await active(b)
    wp_id = new_uuid()
    pw = await b.call(CreatePendingWaitpoint(
        eid=eid, attempt_index=c.attempt_index, waitpoint_id=wp_id,
        waitpoint_key=f"wpk:{wp_id}", expires_at=2**41))
    await buffer(b, eid, wp_id, pw.token.secret(), "a")
    s = await suspend(b, eid, c, C.signal_set(["a", "b"], mode="all"), wp_id=wp_id,
                      pending=True)
    assert s.suspended
    cond = await hall(b, ExecKeys(eid).waitpoint_condition(wp_id))
    assert (cond["satisfied_count"], cond["matcher:0:satisfied"]) == ("1", "1")
    r = await deliver(b, eid, wp_id, pw.token.secret(), "b")
    assert r.effect == "resume_condition_satisfied"


async def test_pending_waitpoint_errors_and_close(b: Backend) -> None:
    eid, c = await active(b)
    wp_id = new_uuid()
    await b.call(CreatePendingWaitpoint(
        eid=eid, attempt_index=c.attempt_index, waitpoint_id=wp_id,
        waitpoint_key=f"wpk:{wp_id}", expires_at=1))
    with pytest.raises(ContractError) as e:
        await suspend(b, eid, c, wp_id=wp_id, pending=True)
    assert code(e) == "pending_waitpoint_expired"
    with pytest.raises(ContractError) as e:
        await suspend(b, eid, c, wp_id=new_uuid(), pending=True)
    assert code(e) == "waitpoint_not_found"
    k = ExecKeys(eid)
    assert await b.redis.zscore(k.pending_waitpoint_expiry, wp_id) is not None
    r = await b.call(CloseWaitpoint(eid=eid, waitpoint_id=wp_id, reason="never_committed"))
    assert not r.already_closed
    assert await b.redis.zscore(k.pending_waitpoint_expiry, wp_id) is None
    assert (await b.call(CloseWaitpoint(eid=eid, waitpoint_id=wp_id))).already_closed
    with pytest.raises(ContractError) as e:
        await suspend(b, eid, c, wp_id=wp_id, pending=True)
    assert code(e) == "waitpoint_not_pending"


async def test_suspend_idempotency_key_replays_reply(b: Backend) -> None:
    eid, c = await active(b)
    s1 = await suspend(b, eid, c, idempotency_key="ik1")
    s2 = await suspend(b, eid, c, idempotency_key="ik1")
    assert s1 == s2
    assert s2.primary.token.secret() == s1.primary.token.secret()


async def test_missing_secret_refuses_mint(b: Backend) -> None:
    eid, c = await active(b, seed=False)
    with pytest.raises(ContractError) as e:
        await suspend(b, eid, c)
    assert code(e) == "hmac_secret_not_initialized"
    assert (await core(b, eid))["lifecycle_phase"] == "active"


async def test_buffer_refuses_closed_waitpoint_and_bad_token(b: Backend) -> None:
    eid, c = await active(b)
    wp_id = new_uuid()
    pw = await b.call(CreatePendingWaitpoint(
        eid=eid, attempt_index=c.attempt_index, waitpoint_id=wp_id,
        waitpoint_key=f"wpk:{wp_id}", expires_at=2**41))
    with pytest.raises(ContractError) as e:
        await buffer(b, eid, wp_id, "k1:" + "0" * 40)
    assert code(e) == "invalid_token"
    with pytest.raises(ContractError) as e:
        await buffer(b, eid, new_uuid(), pw.token.secret())
    assert code(e) == "waitpoint_not_found"
    await b.call(CloseWaitpoint(eid=eid, waitpoint_id=wp_id))
    with pytest.raises(ContractError) as e:
        await buffer(b, eid, wp_id, pw.token.secret())
    assert code(e) == "waitpoint_closed"
    assert await b.redis.zcard(ExecKeys(eid).signals) == 0
