"""Pure protocol tests for the signal / suspend structs and condition builders."""

from __future__ import annotations

import json

import pytest

from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.signals import (
    ClaimResumedExecution,
    DeliverSignal,
    SuspendExecution,
    Token,
    WaitpointBinding,
)

EID = "{fp:7}:6f1c0000-0000-4000-8000-000000000000"
TOK = "k1:" + "ab" * 20


def _suspend(**kw: object) -> SuspendExecution:
    base: dict[str, object] = dict(
        eid=EID, attempt_index=0, attempt_id="a", lease_id="l", lease_epoch=1,
        worker_instance_id="w", lane="default", suspension_id="s", waitpoint_id="wp",
        waitpoint_key="wpk:wp", resume_condition_json=C.signal_set(["go"]),
        resume_policy_json=C.resume_policy_json())
    base.update(kw)
    return SuspendExecution(**base)  # type: ignore[arg-type]


def test_suspend_keys_and_argv_layout() -> None:
    s = _suspend(extra_waitpoints=(WaitpointBinding("x", "wpk:x"),), timeout_at=5)
    keys, argv = s.keys(), s.argv()
    assert len(keys) == 21 and len(argv) == 22
    assert keys[0] == f"ff:exec:{{fp:7}}:{EID}:core"
    assert keys[17] == "ff:noop:{fp:7}"
    assert keys[18] == "ff:wp:{fp:7}:x"
    assert argv[10] == "5" and argv[16] == "1000" and argv[18] == "0" and argv[19] == "1"
    assert all(k.count("{") >= 1 and "{fp:7}" in k for k in keys)


def test_suspend_dedup_ttl_rule() -> None:
    s = _suspend(idempotency_key="ik", timeout_at=100_000, now_ms=40_000)
    assert s.argv()[18] == str(60_000 + 60_000)
    assert _suspend(idempotency_key="ik").argv()[18] == "604800000"
    assert s.keys()[17] == f"ff:dedup:suspend:{{fp:7}}:{EID}:ik"


def test_suspend_refuses_bad_input() -> None:
    with pytest.raises(InvalidInput):
        _suspend(resume_condition_json="{not json")
    with pytest.raises(InvalidInput):
        _suspend(use_pending_waitpoint=True, extra_waitpoints=(WaitpointBinding("x", "k"),))
    with pytest.raises(InvalidInput):
        _suspend(extra_waitpoints=(WaitpointBinding("", "k"),))


def test_suspend_decode_and_error() -> None:
    s = _suspend()
    r = s.decode([1, b"OK", b"s", b"wp", b"wpk:wp", TOK.encode(), b"1", b"x", b"k", TOK.encode()])
    assert r.suspended and r.extras[0].waitpoint_id == "x"
    assert TOK not in repr(r)
    with pytest.raises(ContractError) as e:
        s.decode([0, b"already_suspended"])
    assert e.value.code == "already_suspended"


def test_deliver_argv_and_redacted_repr() -> None:
    d = DeliverSignal(eid=EID, signal_id="sig", waitpoint_id="wp", signal_name="go",
                      token=Token(TOK), lane="default", idempotency_key="ik")
    argv = d.argv()
    assert len(argv) == 18 and argv[17] == TOK and argv[14] == "0" and argv[16] == "10000"
    assert d.keys()[6] == "ff:sigdedup:{fp:7}:wp:ik"
    assert len(d.keys()) == 15
    assert TOK not in repr(d)
    assert d.decode([1, b"DUPLICATE", b"first"]).duplicate


def test_claim_resumed_layout() -> None:
    c = ClaimResumedExecution(eid=EID, worker_id="w", worker_instance_id="wi", lane="l",
                              lease_id="lid", lease_ttl_ms=1000, attempt_index=2)
    assert c.keys()[5] == f"ff:attempt:{{fp:7}}:{EID}:2"
    assert c.argv()[6:] == ["1000", ""]
    r = c.decode([1, b"OK", b"lid", b"3", b"99", b"aid", b"2", b"resumed"])
    assert (r.lease_epoch, r.attempt_index) == (3, 2)


def test_condition_shapes_match_reference() -> None:
    assert json.loads(C.signal_set(["go"])) == {
        "condition_type": "signal_set", "required_signal_names": ["go"],
        "signal_match_mode": "any", "minimum_signal_count": 1, "timeout_behavior": "fail",
        "allow_operator_override": True}
    assert json.loads(C.operator_only())["required_signal_names"] == ["__operator_only__"]
    with pytest.raises(InvalidInput):
        C.signal_set(["__operator_only__"])
    tree = json.loads(C.composite(C.all_of(C.single("k", C.wildcard()),
                                           C.count(1, "DistinctSignals", ["k"]))))["tree"]
    assert tree["path"] == "" and [m["path"] for m in tree["members"]] == [
        "members[0]", "members[1]"]
    with pytest.raises(InvalidInput):
        C.composite(C.all_of(C.all_of(C.all_of(C.single("k")))))
    with pytest.raises(InvalidInput):
        C.count(3, "DistinctWaitpoints", ["a", "b"])
    assert json.loads(C.resume_policy_json(5))["resume_delay_ms"] == 5
