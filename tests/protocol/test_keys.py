"""Key templates of spec 01 §3, spelled out literally."""

from __future__ import annotations

from flowfabric_worker.protocol import keys as k
from flowfabric_worker.protocol.keys import BudgetKeys, ExecKeys, PartitionKeys, QuotaKeys

TAG = "{fp:86}"
EID = "{fp:86}:3b1f0c2e-6a4d-4e2b-9d7c-0f5a1c2b3d4e"
X = f"ff:exec:{TAG}:{EID}"
A = f"ff:attempt:{TAG}:{EID}"


def test_execution_keys() -> None:
    e = ExecKeys(EID)
    assert e.tag == TAG
    got = {
        e.core: f"{X}:core", e.payload: f"{X}:payload", e.result: f"{X}:result",
        e.policy: f"{X}:policy", e.tags: f"{X}:tags", e.claim_grant: f"{X}:claim_grant",
        e.lease_current: f"{X}:lease:current", e.lease_history: f"{X}:lease:history",
        e.attempts: f"{X}:attempts", e.suspension_current: f"{X}:suspension:current",
        e.satisfied_set: f"{X}:suspension:current:satisfied_set",
        e.satisfied_signals: f"{X}:suspension:current:satisfied_set:signals",
        e.member_map: f"{X}:suspension:current:member_map",
        e.waitpoints: f"{X}:waitpoints", e.signals: f"{X}:signals",
        e.deps_meta: f"{X}:deps:meta", e.deps_unresolved: f"{X}:deps:unresolved",
        e.deps_all_edges: f"{X}:deps:all_edges", e.dep("E1"): f"{X}:dep:E1",
        e.attempt(3): f"{A}:3", e.attempt_usage(3): f"{A}:3:usage",
        e.attempt_policy(3): f"{A}:3:policy", e.attempt_summary(3): f"{A}:3:summary",
        e.stream(3): f"ff:stream:{TAG}:{EID}:3", e.stream_meta(3): f"ff:stream:{TAG}:{EID}:3:meta",
    }
    for actual, expected in got.items():
        assert actual == expected
    assert len(got) == 25  # no two builders collide


def test_partition_scoped_records() -> None:
    p = PartitionKeys(TAG)
    assert p.waitpoint("W") == f"ff:wp:{TAG}:W"
    assert p.waitpoint_signals("W") == f"ff:wp:{TAG}:W:signals"
    assert p.waitpoint_condition("W") == f"ff:wp:{TAG}:W:condition"
    assert p.signal("S") == f"ff:signal:{TAG}:S"
    assert p.signal_payload("S") == f"ff:signal:{TAG}:S:payload"
    assert p.signal_dedup("W", "K") == f"ff:sigdedup:{TAG}:W:K"
    assert p.suspend_dedup(EID, "K") == f"ff:dedup:suspend:{TAG}:{EID}:K"
    assert p.idempotency("default", "K") == f"ff:idem:{TAG}:default:K"


def test_partition_indexes() -> None:
    p = PartitionKeys(TAG)
    i = f"ff:idx:{TAG}"
    assert p.lane_eligible("L") == f"{i}:lane:L:eligible"
    assert p.lane_delayed("L") == f"{i}:lane:L:delayed"
    assert p.lane_active("L") == f"{i}:lane:L:active"
    assert p.lane_suspended("L") == f"{i}:lane:L:suspended"
    assert p.lane_terminal("L") == f"{i}:lane:L:terminal"
    for reason in ("dependencies", "budget", "quota", "route", "operator"):
        assert p.lane_blocked("L", reason) == f"{i}:lane:L:blocked:{reason}"
    assert p.lease_expiry == f"{i}:lease_expiry"
    assert p.worker_leases("wi") == f"{i}:worker:wi:leases"
    assert p.attempt_timeout == f"{i}:attempt_timeout"
    assert p.execution_deadline == f"{i}:execution_deadline"
    assert p.suspension_timeout == f"{i}:suspension_timeout"
    assert p.pending_waitpoint_expiry == f"{i}:pending_waitpoint_expiry"
    assert p.all_executions == f"{i}:all_executions"
    assert p.flow_index == f"{i}:flow_index"
    assert p.cancel_backlog == f"{i}:cancel_backlog"
    assert p.pending_cancel_groups == f"{i}:pending_cancel_groups"
    assert p.hmac_keystore == f"ff:sec:{TAG}:waitpoint_hmac"
    assert p.signal_delivery == f"ff:part:{TAG}:signal_delivery"
    assert p.lease_history_aggregate == f"ff:part:{TAG}:lease_history"
    assert p.noop == f"ff:noop:{TAG}"


def test_flow_keys() -> None:
    f = PartitionKeys(TAG).flow("F")
    base = f"ff:flow:{TAG}:F"
    assert f.core == f"{base}:core"
    assert f.members == f"{base}:members"
    assert f.tags == f"{base}:tags"
    assert f.edge("E") == f"{base}:edge:E"
    assert f.outgoing(EID) == f"{base}:out:{EID}"
    assert f.incoming(EID) == f"{base}:in:{EID}"
    assert f.edge_group(EID) == f"{base}:edgegroup:{EID}"
    assert f.pending_cancels == f"{base}:pending_cancels"
    assert f.summary == f"{base}:summary"
    assert f.grant("E") == f"{base}:grant:E"


def test_budget_and_quota_keys() -> None:
    b = BudgetKeys("{b:3}", "B")
    assert b.definition == "ff:budget:{b:3}:B"
    assert b.limits == "ff:budget:{b:3}:B:limits"
    assert b.usage == "ff:budget:{b:3}:B:usage"
    assert b.by_exec(EID) == f"ff:budget:{{b:3}}:B:by_exec:{EID}"
    assert b.by_exec_index == "ff:budget:{b:3}:B:by_exec:index"
    assert b.resets == "ff:idx:{b:3}:budget_resets"
    assert b.policies == "ff:idx:{b:3}:budget_policies"
    assert b.usage_dedup("D") == "ff:usagededup:{b:3}:D"
    q = QuotaKeys("{q:5}", "Q")
    assert q.definition == "ff:quota:{q:5}:Q"
    assert q.window("default") == "ff:quota:{q:5}:Q:window:default"
    assert q.concurrency == "ff:quota:{q:5}:Q:concurrency"
    assert q.admitted(EID) == f"ff:quota:{{q:5}}:Q:admitted:{EID}"
    assert q.admitted_set == "ff:quota:{q:5}:Q:admitted_set"
    assert q.policies == "ff:idx:{q:5}:quota_policies"


def test_global_keys_and_extensions() -> None:
    assert k.CONFIG_PARTITIONS == "ff:config:partitions"
    assert k.LANES_INDEX == "ff:idx:lanes"
    assert k.DAG_COMPLETIONS == "ff:dag:completions"
    assert k.worker_alive("ns", "wi") == "ff:worker:ns:wi:alive"
    assert k.worker_caps("ns", "wi") == "ff:worker:ns:wi:caps"
    assert k.workers_index("ns") == "ff:idx:ns:workers"
    # our extensions never live under ff: and carry the partition tag
    j = ExecKeys(EID).journal
    assert j.startswith("ffw:") and TAG in j
