"""KEYS/ARGV vectors and reply decoding of the flow, budget and quota
structs (spec 04 §5-§7), without Redis."""

from __future__ import annotations

import pytest

from flowfabric_worker.errors import ContractError, InvalidInput, ScriptError
from flowfabric_worker.protocol.budgets import (
    CheckAdmissionAndRecord,
    CreateBudget,
    RecordSpend,
    ReportUsageAndCheck,
)
from flowfabric_worker.protocol.dependencies import (
    ApplyDependencyToChild,
    ReplayFlowMember,
    ResolveDependency,
)
from flowfabric_worker.protocol.errors import AlreadyMemberOfDifferentFlow, ExecutionAlreadyInFlow
from flowfabric_worker.protocol.flows import AddExecutionToFlow, CancelFlow, StageDependencyEdge
from flowfabric_worker.protocol.ids import mint_execution_id
from flowfabric_worker.protocol.partitions import budget_tag, flow_tag, quota_tag

FLOW = "5e0c2a34-1111-4222-8333-444455556666"
EDGE = "0f0f0f0f-aaaa-4bbb-8ccc-dddddddddddd"
BUDGET = "11111111-2222-4333-8444-555555555555"
QUOTA = "99999999-2222-4333-8444-555555555555"
TAG = flow_tag(FLOW)
A = mint_execution_id(flow_id=FLOW, uuid_text="aaaaaaaa-0000-4000-8000-000000000001")
D = mint_execution_id(flow_id=FLOW, uuid_text="aaaaaaaa-0000-4000-8000-000000000002")


def test_add_member_vectors_and_colocation() -> None:
    call = AddExecutionToFlow(tag=TAG, flow_id=FLOW, eid=A, now_ms=5)
    assert call.keys() == [
        f"ff:flow:{TAG}:{FLOW}:core", f"ff:flow:{TAG}:{FLOW}:members",
        f"ff:idx:{TAG}:flow_index", f"ff:exec:{TAG}:{A}:core"]
    assert call.argv() == [FLOW, A, "5"]
    solo = mint_execution_id(lane_id="lane-x")
    if not solo.startswith(TAG + ":"):
        with pytest.raises(InvalidInput, match="partition"):
            AddExecutionToFlow(tag=TAG, flow_id=FLOW, eid=solo)


def test_member_of_other_flow_maps_to_already_in_flow() -> None:
    call = AddExecutionToFlow(tag=TAG, flow_id=FLOW, eid=A)
    with pytest.raises(ExecutionAlreadyInFlow) as e:
        call.decode([0, b"already_member_of_different_flow:other-flow"])
    assert isinstance(e.value, AlreadyMemberOfDifferentFlow)
    assert e.value.flow_id == "other-flow"
    ok = call.decode([1, b"ALREADY_SATISFIED", A.encode(), b"3"])
    assert (ok.added, ok.node_count) == (False, 3)


def test_stage_edge_vectors_and_kind_check() -> None:
    call = StageDependencyEdge(tag=TAG, flow_id=FLOW, edge_id=EDGE, upstream=A, downstream=D,
                               expected_graph_revision=7, now_ms=9)
    pre = f"ff:flow:{TAG}:{FLOW}:"
    assert call.keys() == [pre + "core", pre + "members", pre + f"edge:{EDGE}",
                           pre + f"out:{A}", pre + f"in:{D}", pre + f"grant:{EDGE}"]
    assert call.argv() == [FLOW, EDGE, A, D, "success_only", "", "7", "9"]
    assert call.decode([1, b"OK", EDGE.encode(), b"8"]).graph_revision == 8
    with pytest.raises(InvalidInput):
        StageDependencyEdge(tag=TAG, flow_id=FLOW, edge_id=EDGE, upstream=A, downstream=D,
                            expected_graph_revision=7, now_ms=9, dependency_kind="any")


def test_apply_and_resolve_vectors() -> None:
    apply = ApplyDependencyToChild(eid=D, lane="l1", flow_id=FLOW, edge_id=EDGE, upstream=A,
                                   graph_revision=3, now_ms=1, with_edge_group=False)
    assert apply.keys()[4:] == [f"ff:idx:{TAG}:lane:l1:eligible",
                                f"ff:idx:{TAG}:lane:l1:blocked:dependencies",
                                f"ff:exec:{TAG}:{D}:deps:all_edges", ""]
    assert apply.decode([1, b"OK", b"already_applied"]).unsatisfied_count is None
    assert apply.decode([1, b"OK", b"2"]).unsatisfied_count == 2
    res = ResolveDependency(eid=D, flow_id=FLOW, edge_id=EDGE, upstream=A,
                            upstream_outcome="failed", now_ms=4, attempt_index=2)
    keys = res.keys()
    assert len(keys) == 14
    assert keys[7] == f"ff:attempt:{TAG}:{D}:2"
    assert keys[10] == f"ff:exec:{TAG}:{A}:result"
    assert keys[13] == f"ff:idx:{TAG}:pending_cancel_groups"
    assert res.argv() == [EDGE, "failed", "4", FLOW, D]
    assert res.decode([1, b"OK", b"impossible", b"child_skipped"]).child_skipped
    assert not res.decode([1, b"OK", b"satisfied", b"child_skipped"]).child_skipped


def test_cancel_flow_grace_and_reply() -> None:
    call = CancelFlow(tag=TAG, flow_id=FLOW, reason="r", policy="flow_only")
    assert call.argv() == [FLOW, "r", "flow_only", "0", ""]
    r = CancelFlow(tag=TAG, flow_id=FLOW, grace_ms=0).decode([1, b"OK", b"cancel_all", A.encode()])
    assert r.members == (A,)
    with pytest.raises(InvalidInput):
        CancelFlow(tag=TAG, flow_id=FLOW, grace_ms=-1)
    with pytest.raises(InvalidInput):
        CancelFlow(tag=TAG, flow_id=FLOW, policy="everything")


def test_replay_flow_member_vectors() -> None:
    call = ReplayFlowMember(eid=D, inbound_edge_ids=(EDGE,))
    assert call.keys()[-1] == f"ff:exec:{TAG}:{D}:dep:{EDGE}"
    assert call.argv() == [D, "0", EDGE]


def test_budget_vectors_sorted_and_dedup_key() -> None:
    tag = budget_tag(BUDGET)
    create = CreateBudget(tag=tag, budget_id=BUDGET, scope_type="flow", scope_id="f",
                          now_ms=1, limits={"tokens": (10, 5), "cost": (0, 3)})
    assert create.argv()[8:] == ["2", "cost", "tokens", "0", "10", "3", "5"]
    rep = ReportUsageAndCheck(tag=tag, budget_id=BUDGET, deltas={"z": 1, "a": 2}, now_ms=3,
                              dedup_id="k")
    assert rep.argv() == ["2", "a", "z", "2", "1", "3", f"ff:usagededup:{tag}:k"]
    hb = rep.decode([1, b"HARD_BREACH", b"a", b"9", b"10"])
    assert (hb.status, hb.dimension, hb.value, hb.limit, hb.applied) == (
        "HARD_BREACH", "a", 9, 10, False)
    spend = RecordSpend(tag=tag, budget_id=BUDGET, deltas={"b": 1, "a": 2}, now_ms=3, eid=A)
    assert spend.argv() == ["2", "a", "2", "b", "1", "3", "", A]
    with pytest.raises(ScriptError):
        rep.decode([1, b"WEIRD"])


def test_admission_bare_replies() -> None:
    tag = quota_tag(QUOTA)
    call = CheckAdmissionAndRecord(tag=tag, quota_id=QUOTA, eid=A, now_ms=1, window_seconds=60,
                                   rate_limit=5, concurrency_cap=0)
    assert call.keys()[0] == f"ff:quota:{tag}:{QUOTA}:window:default"
    assert call.argv() == ["1", "60", "5", "0", A, "0"]
    assert call.decode([b"ADMITTED"]).admitted
    assert call.decode([b"RATE_EXCEEDED", 1200]).retry_after_ms == 1200
    assert call.decode([b"RATE_EXCEEDED", b"7"]).retry_after_ms == 7
    assert not call.decode([b"CONCURRENCY_EXCEEDED"]).admitted
    with pytest.raises(ContractError):
        call.decode([0, b"invalid_input", b"now_ms must be a number, got: x"])
    with pytest.raises(ScriptError):
        call.decode([b"MAYBE"])
