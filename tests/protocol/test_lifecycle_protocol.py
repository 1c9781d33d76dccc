"""Lifecycle structs: KEYS/ARGV built per spec 02 §3, replies decoded,
client-side validation (no Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import (
    CancelExecution,
    ClaimExecution,
    CompleteExecution,
    CreateExecution,
    DelayExecution,
    FailExecution,
    IssueClaimGrant,
    IssueGrantAndClaim,
    MoveToWaitingChildren,
    RenewLease,
    UpdateProgress,
)
from flowfabric_worker.protocol.maintenance import (
    BlockExecutionForAdmission,
    ExpireExecution,
    IssueReclaimGrant,
    MarkLeaseExpiredIfDue,
    PromoteDelayed,
    ReclaimExecution,
    UnblockExecution,
)
from flowfabric_worker.protocol.operator import (
    ChangePriority,
    ReplayExecution,
    RevokeLease,
    SetExecutionTags,
)
from flowfabric_worker.protocol.worker_registry import HeartbeatWorker, RegisterWorker, Version

EID = "{fp:7}:0b6d1234-1234-4234-8234-123456789abc"
K = ExecKeys(EID)
L = "default"
FENCE: dict[str, Any] = dict(
    eid=EID, lane_id=L, attempt_index=2, worker_instance_id="wi", lease_id="l",
    lease_epoch=3, attempt_id="a",
)


def test_create_keys_argv_eligible_and_delayed() -> None:
    c = CreateExecution(eid=EID, lane_id=L, priority=5, idempotency_key="ik", namespace="ns")
    keys = c.keys()
    assert len(keys) == 8 and len(c.argv()) == 13
    assert keys[4] == K.lane_eligible(L)
    assert keys[5] == K.idempotency("ns", "ik")
    assert c.argv()[9] == "86400000"
    d = CreateExecution(eid=EID, lane_id=L, delay_until=123)
    assert d.keys()[4] == K.lane_delayed(L) and d.keys()[5] == K.noop
    assert d.argv()[8] == "123" and d.argv()[9] == ""
    assert c.decode([1, b"OK", EID.encode(), b"waiting"]).public_state == "waiting"
    dup = c.decode([1, b"DUPLICATE", b"other"])
    assert dup.duplicate and dup.execution_id == "other"


@pytest.mark.parametrize("kw", [
    {"policy_json": '{"routing_requirements": null}'},
    {"policy_json": '{"routing_requirements": {"required_capabilities": null}}'},
    {"policy_json": "[1"},
    {"tags_json": '{"a": [1]}'},
    {"priority": "1"},
    {"delay_until": 1.5},
    {"lane_id": ""},
])
def test_create_validation(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"eid": EID, "lane_id": L, **kw}
    with pytest.raises(InvalidInput):
        CreateExecution(**args)


def test_bad_eid_refused() -> None:
    with pytest.raises(InvalidInput):
        MarkLeaseExpiredIfDue(eid="nope")


def test_claim_shapes() -> None:
    c = ClaimExecution(eid=EID, lane_id=L, worker_id="w", worker_instance_id="wi",
                       lease_id="l", attempt_id="a", lease_ttl_ms=3000, attempt_index=4)
    keys = c.keys()
    assert len(keys) == 14 and keys[5] == K.attempt(4) and keys[4] == K.worker_leases("wi")
    argv = c.argv()
    assert len(argv) == 12 and argv[7] == "2000" and argv[9] == "{}"
    r = c.decode([1, b"OK", b"l", b"1", b"99", b"a", b"4", b"retry"])
    got = (r.lease_epoch, r.lease_expires_at, r.attempt_index, r.attempt_type)
    assert got == (1, 99, 4, "retry")
    with pytest.raises(InvalidInput):
        ClaimExecution(eid=EID, lane_id=L, worker_id="w", worker_instance_id="wi",
                       lease_id="l", attempt_id="a", lease_ttl_ms=3000, attempt_policy_json="[]")
    with pytest.raises(ContractError) as ei:
        c.decode([0, b"use_claim_resumed_execution"])
    assert ei.value.code == "use_claim_resumed_execution"


def test_grant_and_claim_and_grants() -> None:
    g = IssueGrantAndClaim(eid=EID, lane_id=L, lease_id="l", attempt_id="a", lease_ttl_ms=10)
    assert len(g.keys()) == 11 and len(g.argv()) == 11 and g.argv()[1] == "operator"
    r = g.decode([1, b"OK", b"l", b"2", b"0"])
    assert (r.lease_epoch, r.attempt_index) == (2, 0)
    ig = IssueClaimGrant(eid=EID, lane_id=L, worker_id="w", worker_capabilities_csv="a,b")
    assert ig.keys() == [K.core, K.claim_grant, K.lane_eligible(L)] and len(ig.argv()) == 9
    assert ig.decode([1, b"OK", EID.encode()]).execution_id == EID
    with pytest.raises(InvalidInput):
        IssueClaimGrant(eid=EID, lane_id=L, worker_id="w", grant_ttl_ms=0)
    rg = IssueReclaimGrant(eid=EID, lane_id=L, worker_id="w")
    assert rg.keys()[2] == K.lease_expiry
    assert rg.decode([1, b"OK", EID.encode(), b"555"]).grant_expires_at == 555


def test_renew_and_progress() -> None:
    r = RenewLease(eid=EID, attempt_index=0, attempt_id="a", lease_id="l", lease_epoch=1,
                   lease_ttl_ms=900)
    assert r.keys() == [K.core, K.lease_current, K.lease_history, K.lease_expiry]
    assert r.argv() == [EID, "0", "a", "l", "1", "900", "5000"]
    assert r.decode([1, b"OK", b"123"]).lease_expires_at == 123
    assert RenewLease.IDEMPOTENT and not ClaimExecution.IDEMPOTENT
    p = UpdateProgress(eid=EID, lease_id="l", lease_epoch=1)
    assert p.argv() == [EID, "l", "1", "", ""]
    assert p.decode([1, b"OK"]).status == "OK"


def test_fenced_calls() -> None:
    c = CompleteExecution(**FENCE, result_payload=b"x")
    assert len(c.keys()) == 12 and c.keys()[1] == K.attempt(2) and c.keys()[8] == K.stream_meta(2)
    assert c.argv() == [EID, "l", "3", "a", b"x", ""]
    f = FailExecution(**FENCE, failure_reason="r", retry_policy_json='{"max_retries": 2}')
    assert len(f.keys()) == 12 and f.keys()[5] == K.lane_delayed(L)
    assert f.decode([1, b"OK", b"retry_scheduled", b"17.5"]).delay_until == 17.5
    assert f.decode([1, b"OK", b"terminal_failed"]).delay_until is None
    d = DelayExecution(**FENCE, delay_until=77)
    assert len(d.keys()) == 9 and d.argv()[4] == "77"
    assert d.decode([1, b"OK", b"77"]).delay_until == 77
    m = MoveToWaitingChildren(**FENCE)
    assert m.keys()[7] == K.lane_blocked(L, "dependencies") and len(m.argv()) == 5
    with pytest.raises(ContractError) as ei:
        c.decode([0, b"execution_not_active", b"success", b"3", b"terminal", b"a"])
    assert ei.value.details == ("success", "3", "terminal", "a")


@pytest.mark.parametrize("kw", [
    {"lease_id": ""},
    {"lease_id": "", "lease_epoch": None, "attempt_id": ""},
    {"lease_epoch": -1},
])
def test_fence_validation(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        CompleteExecution(**{**FENCE, **kw})


def test_override_allows_empty_fence_and_bad_retry_policy() -> None:
    CompleteExecution(eid=EID, lane_id=L, attempt_index=0, worker_instance_id="",
                      source="operator_override")
    with pytest.raises(InvalidInput):
        FailExecution(**FENCE, retry_policy_json='{"max_retries": null}')


def test_cancel_expire_revoke_reclaim() -> None:
    c = CancelExecution(eid=EID, lane_id=L, attempt_index=1, worker_instance_id="wi",
                        waitpoint_id="wp")
    keys = c.keys()
    assert len(keys) == 21 and keys[8] == K.waitpoint("wp")
    assert keys[20] == K.lane_blocked(L, "operator")
    assert c.argv() == [EID, "", "", "", ""]
    assert c.decode([1, b"OK", b"cancelled", b"runnable"]).phase_before == "runnable"
    e = ExpireExecution(eid=EID, lane_id=L)
    assert len(e.keys()) == 14 and e.argv() == [EID, "attempt_timeout"]
    assert e.decode([1, b"OK", b"already_terminal"]).tag == "already_terminal"
    rv = RevokeLease(eid=EID, worker_instance_id="wi")
    r = rv.decode([1, b"OK", b"revoked", b"l", b"4"])
    assert (r.lease_id, r.lease_epoch) == ("l", 4)
    s = rv.decode([1, b"ALREADY_SATISFIED", b"already_revoked"])
    assert (s.status, s.tag) == ("ALREADY_SATISFIED", "already_revoked")
    rc = ReclaimExecution(eid=EID, lane_id=L, worker_id="w", worker_instance_id="wi",
                          lease_id="l", attempt_id="a", lease_ttl_ms=10, old_attempt_index=3)
    keys = rc.keys()
    assert len(keys) == 14 and keys[2] == K.attempt(3) and keys[4] == K.attempt(4)
    assert len(rc.argv()) == 9 and rc.argv()[8] == "1000"


def test_scanner_admin_and_worker_calls() -> None:
    p = PromoteDelayed(eid=EID, lane_id=L, now_ms=5)
    assert p.decode([1, b"OK", b"not_yet_due"]).tag == "not_yet_due"
    m = MarkLeaseExpiredIfDue(eid=EID)
    assert m.keys() == [K.core, K.lease_current, K.lease_expiry, K.lease_history]
    cp = ChangePriority(eid=EID, lane_id=L, new_priority=3)
    assert cp.decode([1, b"OK", b"1", b"3"]).new_priority == 3
    rp = ReplayExecution(eid=EID, lane_id=L)
    assert len(rp.keys()) == 4 and rp.argv() == [EID, "0"]
    t = SetExecutionTags(eid=EID, tags={"a.b": "1"})
    assert t.argv() == ["a.b", "1"]
    with pytest.raises(InvalidInput):
        SetExecutionTags(eid=EID, tags={"Bad": "1"})
    bl = BlockExecutionForAdmission(eid=EID, lane_id=L, blocking_reason="waiting_for_quota",
                                    now_ms=1)
    assert bl.keys()[2] == K.lane_blocked(L, "quota")
    ub = UnblockExecution(eid=EID, lane_id=L, source="route", now_ms=1)
    assert ub.keys()[1] == K.lane_blocked(L, "route")
    rw = RegisterWorker(namespace="ns", instance_id="i", worker_id="w", lanes=("b", "a"),
                        capabilities=("z", "y", "z"), ttl_ms=10, now_ms=1)
    assert rw.argv() == ["i", "w", "a,b", "y,z", "10", "1"]
    hb = HeartbeatWorker(namespace="ns", instance_id="i", now_ms=1)
    assert hb.decode([1, b"OK", b"refreshed", b"10"]).ttl_ms == 10
    assert hb.decode([1, b"OK", b"not_registered"]).ttl_ms is None
    assert Version().decode(b"34") == "34"
