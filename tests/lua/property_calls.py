"""Valid base calls per library function against the property world
(``BASE_CALLS``; see property_support.py)."""


from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from property_support import HOUR, LANE, NS, WIID, WORKER, Call, make
from property_world import World

from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.signals import WaitpointBinding
from flowfabric_worker.protocol.streams import StreamMode

# --- valid base calls per function ---------------------------------------------

def _fence(w: World, name: str) -> dict[str, Any]:
    c = w.claims[name]
    return dict(eid=w.eids[name], lane_id=LANE, attempt_index=c.attempt_index,
                worker_instance_id=WIID, lease_id=c.lease_id, lease_epoch=c.lease_epoch,
                attempt_id=c.attempt_id)


def _lease(w: World, name: str) -> dict[str, Any]:
    c = w.claims[name]
    return dict(eid=w.eids[name], attempt_index=c.attempt_index, lease_id=c.lease_id,
                lease_epoch=c.lease_epoch)


def _signal(w: World, cls: str, name: str, grant: Any, **kw: Any) -> FCall[Any]:
    return make(cls, eid=w.eids[name], signal_id=new_uuid(), waitpoint_id=grant.waitpoint_id,
                signal_name="go", token=grant.token, idempotency_key="ik", **kw)


Builder = Callable[[World], "FCall[Any] | Call"]

BASE_CALLS: dict[str, list[Builder]] = {
    "ff_create_execution": [
        lambda w: make("CreateExecution", eid=mint_execution_id(lane_id=LANE), lane_id=LANE,
                       namespace=NS, tags_json='{"t": "v"}', idempotency_key="idem",
                       dedup_ttl_ms=HOUR, execution_deadline_at=w.now + HOUR,
                       policy_json=json.dumps({"routing_requirements": {
                           "required_capabilities": ["gpu"]}})),
        lambda w: make("CreateExecution", eid=mint_execution_id(lane_id=LANE), lane_id=LANE,
                       delay_until=w.now + HOUR, input_payload=b"in"),
    ],
    "ff_issue_claim_grant": [
        lambda w: make("IssueClaimGrant", eid=w.eids["waiting"], lane_id=LANE, worker_id=WORKER,
                       worker_instance_id=WIID, grant_ttl_ms=HOUR)],
    "ff_claim_execution": [
        lambda w: make("ClaimExecution", eid=w.eids["granted"], lane_id=LANE, worker_id=WORKER,
                       worker_instance_id=WIID, lease_id=new_uuid(), attempt_id=new_uuid(),
                       lease_ttl_ms=HOUR, attempt_policy_json='{"a": 1}',
                       attempt_timeout_ms=HOUR, execution_deadline_at=w.now + HOUR)],
    "ff_issue_grant_and_claim": [
        lambda w: make("IssueGrantAndClaim", eid=w.eids["waiting"], lane_id=LANE,
                       lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=HOUR,
                       attempt_timeout_ms=HOUR),
        lambda w: make("IssueGrantAndClaim", eid=w.eids["parked"], lane_id=LANE,
                       lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=HOUR)],
    "ff_renew_lease": [
        lambda w: make("RenewLease", eid=w.eids["active"],
                       attempt_index=w.claims["active"].attempt_index,
                       attempt_id=w.claims["active"].attempt_id,
                       lease_id=w.claims["active"].lease_id,
                       lease_epoch=w.claims["active"].lease_epoch, lease_ttl_ms=HOUR)],
    "ff_update_progress": [
        lambda w: make("UpdateProgress", eid=w.eids["active"],
                       lease_id=w.claims["active"].lease_id,
                       lease_epoch=w.claims["active"].lease_epoch, progress_pct="50",
                       progress_message="half")],
    "ff_complete_execution": [
        lambda w: make("CompleteExecution", result_payload=b"ok", **_fence(w, "active"))],
    "ff_fail_execution": [
        lambda w: make("FailExecution", failure_reason="boom",
                       retry_policy_json='{"max_retries": 2, "backoff": {"type": "fixed"}}',
                       **_fence(w, "active")),
        lambda w: make("FailExecution", failure_reason="boom", retry_policy_json=json.dumps(
                           {"max_retries": 2, "backoff": {"type": "exponential",
                                                          "initial_delay_ms": 10}}),
                       **_fence(w, "active")),
        lambda w: make("FailExecution", failure_reason="boom", **_fence(w, "active"))],
    "ff_cancel_execution": [
        lambda w: make("CancelExecution", eid=w.eids["active"], lane_id=LANE, reason="r",
                       source="operator_override", attempt_index=0, worker_instance_id=WIID),
        lambda w: make("CancelExecution", eid=w.eids["suspended"], lane_id=LANE, reason="r",
                       attempt_index=0,
                       waitpoint_id=w.misc["susp"].primary.waitpoint_id),
        lambda w: make("CancelExecution", eid=w.eids["waiting"], lane_id=LANE, reason="r")],
    "ff_delay_execution": [
        lambda w: make("DelayExecution", delay_until=w.now + HOUR, **_fence(w, "active"))],
    "ff_move_to_waiting_children": [
        lambda w: make("MoveToWaitingChildren", **_fence(w, "active"))],
    "ff_promote_delayed": [
        lambda w: make("PromoteDelayed", eid=w.eids["delayed"], lane_id=LANE,
                       now_ms=w.now + 2 * HOUR)],
    "ff_mark_lease_expired_if_due": [
        lambda w: make("MarkLeaseExpiredIfDue", eid=w.eids["active"])],
    "ff_revoke_lease": [
        lambda w: make("RevokeLease", eid=w.eids["active"], worker_instance_id=WIID,
                       revoke_reason="ops")],
    "ff_issue_reclaim_grant": [
        lambda w: make("IssueReclaimGrant", eid=w.eids["revoked"], lane_id=LANE, worker_id="w2",
                       worker_instance_id="w2-i1", grant_ttl_ms=HOUR)],
    "ff_reclaim_execution": [
        lambda w: make("ReclaimExecution", eid=w.eids["reclaimable"], lane_id=LANE,
                       worker_id="w2", worker_instance_id="w2-i1", lease_id=new_uuid(),
                       attempt_id=new_uuid(), lease_ttl_ms=HOUR,
                       old_attempt_index=w.claims["reclaimable"].attempt_index)],
    "ff_expire_execution": [
        lambda w: make("ExpireExecution", eid=w.eids["active"], lane_id=LANE,
                       attempt_index=0, worker_instance_id=WIID),
        lambda w: make("ExpireExecution", eid=w.eids["suspended"], lane_id=LANE),
        lambda w: make("ExpireExecution", eid=w.eids["delayed"], lane_id=LANE)],
    "ff_change_priority": [
        lambda w: make("ChangePriority", eid=w.eids["waiting"], lane_id=LANE, new_priority=7)],
    "ff_replay_execution": [
        lambda w: make("ReplayExecution", eid=w.eids["terminal"], lane_id=LANE, now_ms=w.now),
        lambda w: make("ReplayFlowMember", eid=w.eids["f_skipped"], lane=LANE,
                       inbound_edge_ids=(w.misc["e_skipped"],), now_ms=w.now)],
    "ff_set_execution_tags": [
        lambda w: make("SetExecutionTags", eid=w.eids["tagged"],
                       tags={"app.owner": "me", "app.team": "x"})],
    "ff_block_execution_for_admission": [
        lambda w: make("BlockExecutionForAdmission", eid=w.eids["waiting"], lane_id=LANE,
                       blocking_reason="waiting_for_quota", now_ms=w.now)],
    "ff_unblock_execution": [
        lambda w: make("UnblockExecution", eid=w.eids["blocked"], lane_id=LANE,
                       source="budget", now_ms=w.now)],
    "ff_register_worker": [
        lambda w: make("RegisterWorker", namespace=NS, instance_id="w9-i1", worker_id="w9",
                       lanes=(LANE,), capabilities=("gpu",), ttl_ms=HOUR, now_ms=w.now)],
    "ff_heartbeat_worker": [
        lambda w: make("HeartbeatWorker", namespace=NS, instance_id=WIID, now_ms=w.now)],
    "ff_version": [lambda w: make("Version")],
    "ff_create_pending_waitpoint": [
        lambda w: make("CreatePendingWaitpoint", eid=w.eids["active"],
                       attempt_index=w.claims["active"].attempt_index, waitpoint_id=new_uuid(),
                       waitpoint_key="wpk:new", expires_at=w.now + HOUR)],
    "ff_close_waitpoint": [
        lambda w: make("CloseWaitpoint", eid=w.eids["active"],
                       waitpoint_id=w.misc["pending"].waitpoint_id)],
    "ff_suspend_execution": [
        lambda w: make(
            "SuspendExecution", **_lease(w, "active"), attempt_id=w.claims["active"].attempt_id,
            worker_instance_id=WIID, lane=LANE, suspension_id=new_uuid(),
            waitpoint_id=new_uuid(), waitpoint_key="wpk:primary", timeout_at=w.now + HOUR,
            resume_condition_json=C.signal_set(["go"]), resume_policy_json=C.resume_policy_json(),
            idempotency_key="ik", dedup_ttl_ms=HOUR,
            extra_waitpoints=(WaitpointBinding(new_uuid(), "wpk:x"),)),
        lambda w: make(
            "SuspendExecution", **_lease(w, "active"), attempt_id=w.claims["active"].attempt_id,
            worker_instance_id=WIID, lane=LANE, suspension_id=new_uuid(),
            waitpoint_id=w.misc["pending"].waitpoint_id, waitpoint_key="",
            resume_condition_json=C.signal_set(["go"]), resume_policy_json=C.resume_policy_json(),
            use_pending_waitpoint=True)],
    "ff_deliver_signal": [
        lambda w: _signal(w, "DeliverSignal", "suspended", w.misc["susp"].primary, lane=LANE),
        lambda w: _signal(w, "DeliverSignal", "due", w.misc["due_susp"].primary, lane=LANE,
                          resume_delay_ms=500)],
    "ff_buffer_signal_for_pending_waitpoint": [
        lambda w: _signal(w, "BufferSignal", "active", w.misc["pending"])],
    "ff_resume_execution": [
        lambda w: make("ResumeExecution", eid=w.eids["suspended"], lane=LANE,
                       current_waitpoint_id=w.misc["susp"].primary.waitpoint_id,
                       resume_delay_ms=1000)],
    "ff_expire_suspension": [
        lambda w: make("ExpireSuspension", eid=w.eids["due"], lane=LANE,
                       current_waitpoint_id=w.misc["due_susp"].primary.waitpoint_id,
                       current_attempt_index=w.claims["due"].attempt_index)],
    "ff_claim_resumed_execution": [
        lambda w: make("ClaimResumedExecution", eid=w.eids["resumed"], worker_id=WORKER,
                       worker_instance_id=WIID, lane=LANE, lease_id=new_uuid(),
                       lease_ttl_ms=HOUR, attempt_index=w.claims["resumed"].attempt_index,
                       remaining_attempt_timeout_ms=HOUR)],
    "ff_rotate_waitpoint_hmac_secret": [
        lambda w: make("RotateHmacSecret", tag=w.tag(), new_kid="k2", new_secret_hex="ab" * 32)],
    "ff_list_waitpoint_hmac_kids": [lambda w: make("ListHmacKids", tag=w.tag())],
    "ff_append_frame": [
        lambda w: make("AppendFrame", **_lease(w, "active"), frame_type="stdout",
                       payload=b"more"),
        lambda w: make("AppendFrame", **_lease(w, "active"), frame_type="event",
                       payload=b'{"x": {"y": 2}}', mode=StreamMode.SUMMARY),
        lambda w: make("AppendFrame", **_lease(w, "active"), frame_type="tick",
                       payload=b"t", mode=StreamMode.BEST_EFFORT, ttl_ms=60_000),
        lambda w: make("AppendFrame", **_lease(w, "leased"), frame_type="event",
                       payload=b'{"first": 1}', mode=StreamMode.SUMMARY)],
    "ff_read_attempt_stream": [
        lambda w: make("ReadAttemptStream", eid=w.eids["active"],
                       attempt_index=w.claims["active"].attempt_index)],
    "ff_read_summary": [
        lambda w: make("ReadSummary", eid=w.eids["active"],
                       attempt_index=w.claims["active"].attempt_index)],
    "ffw_append_frames": [
        lambda w: make("AppendFrames", **_lease(w, "active"), frames=(
            ("stdout", b"a", "durable", "", ""), ("event", b'{"z": 1}', "summary", "c", ""),
            ("tick", b"t", "best_effort", "", "")), ttl_ms=60_000),
        lambda w: make("AppendFrames", **_lease(w, "leased"), frames=(
            ("event", b'{"z": 1}', "summary", "", ""),))],
    "ffw_journal_append": [
        lambda w: make("JournalAppend", eid=w.eids["active"],
                       lease_id=w.claims["active"].lease_id,
                       lease_epoch=w.claims["active"].lease_epoch, step_index=1,
                       step_name="s1", result=b"r1")],
    "ffw_journal_read": [lambda w: make("JournalRead", eid=w.eids["active"])],
    "ffw_signal_types_set": [
        lambda w: make("RecordSignalTypes", eid=w.eids["active"],
                       lease_id=w.claims["active"].lease_id,
                       lease_epoch=w.claims["active"].lease_epoch, waitpoint_id="wp-1",
                       record=b'{"names": ["go"], "type": "T", "schema": {"type": "object"}}')],
    "ffw_attach_admission": [
        lambda w: make("AttachAdmission", eid=w.eids["waiting"], budget_ids=w.misc["budget"],
                       quota_policy_id=w.misc["quota"])],
    "ffw_flow_quota": [
        lambda w: make("FlowQuota", tag=w.misc["qtag"], quota_id=new_uuid(), window_seconds=600,
                       rate=0, cap=2, now_ms=w.now, strategy="queue", label="t per k=1"),
        lambda w: make("FlowQuota", tag=w.misc["qtag"], quota_id=w.misc["quota"],
                       window_seconds=60, rate=5, cap=3, now_ms=w.now,
                       strategy="cancel_newest", label="t per k=2")],
    "ffw_quota_recount": [
        lambda w: make("QuotaRecount", tag=w.misc["qtag"], quota_id=w.misc["quota"],
                       cutoff_ms=w.now - 60_000)],
    "ffw_debounce": [
        lambda w: make("ReplaceDebounced", idem_key=f"ff:idem:{w.tag()}:{NS}:ffw.debounce:x",
                       payload=b"latest")],
    "ffw_version": [lambda w: ("ffw_version", [], [])],
    # Recurring schedules (our extension).
    "ffw_schedule_upsert": [
        lambda w: make("ScheduleUpsert", tag=w.misc["stag"], schedule_id=w.misc["sched"],
                       spec=json.dumps({"every_ms": 60_000}), next_tick=w.now + 60_000,
                       next_fire=w.now + 60_000, fields={"priority": "3", "overlap": "skip"}),
        lambda w: make("ScheduleUpsert", tag=w.misc["stag"], schedule_id="s-new",
                       spec=json.dumps({"every_ms": 60_000}), next_tick=w.now,
                       next_fire=w.now, only_new=True,
                       fields={"namespace": NS, "task": "t", "lane": LANE})],
    "ffw_schedule_advance": [
        lambda w: make("ScheduleAdvance", tag=w.misc["stag"], schedule_id=w.misc["sched"],
                       expected_tick=w.misc["sched_tick"], next_tick=w.misc["sched_tick"] + HOUR,
                       next_fire=w.misc["sched_tick"] + HOUR, last_tick=w.misc["sched_tick"],
                       last_eid=w.eids["waiting"], fired=1)],
    "ffw_schedule_set_state": [
        lambda w: make("ScheduleSetState", tag=w.misc["stag"], schedule_id=w.misc["sched"],
                       state="paused")],
    "ffw_schedule_delete": [
        lambda w: make("ScheduleDelete", tag=w.misc["stag"], schedule_id=w.misc["sched"])],
    "ffw_publish_done": [
        lambda w: ("ffw_publish_done",
                   [ExecKeys(w.eids["terminal"]).core, ExecKeys(w.eids["terminal"]).result],
                   [f"ffw:done:{w.eids['terminal']}", "4096", "ffw:completed:",
                    w.eids["terminal"]]),
        lambda w: ("ffw_publish_done",
                   [ExecKeys(w.eids["active"]).core, ExecKeys(w.eids["active"]).result],
                   [f"ffw:done:{w.eids['active']}", "0", "ffw:completed:", w.eids["active"]])],
    "ffw_claim_candidates": [
        lambda w: make("ClaimCandidates", lane=LANE, partition=int(w.tag()[4:-1]), limit=8,
                       fields=("lifecycle_phase", "eligibility_state", "total_attempt_count"))],
    # Flows (spec 04 §5).
    "ff_create_flow": [
        lambda w: make("CreateFlow", tag=w.misc["ftag"], flow_id=new_uuid(), namespace=NS)],
    "ff_add_execution_to_flow": [
        lambda w: make("AddExecutionToFlow", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       eid=w.eids["f_outsider"])],
    "ff_set_flow_tags": [
        lambda w: make("SetFlowTags", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       tags={"app.k": "v"})],
    "ff_evaluate_flow_eligibility": [
        lambda w: make("EvaluateFlowEligibility", eid=w.eids["f_child"])],
    "ff_promote_blocked_to_eligible": [
        lambda w: make("PromoteBlockedToEligible", eid=w.eids["parked"], lane=LANE,
                       now_ms=w.now)],
    "ff_stage_dependency_edge": [
        lambda w: make("StageDependencyEdge", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       edge_id=new_uuid(), upstream=w.eids["f_child"],
                       downstream=w.eids["f_loose"], expected_graph_revision=w.misc["rev"],
                       now_ms=w.now)],
    "ff_set_edge_group_policy": [
        lambda w: make("SetEdgeGroupPolicy", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       downstream=w.eids["f_loose"], policy_variant="quorum",
                       on_satisfied="let_run", k=1, now_ms=w.now)],
    "ff_apply_dependency_to_child": [
        lambda w: make("ApplyDependencyToChild", eid=w.eids["f_loose"], lane=LANE,
                       flow_id=w.misc["flow"], edge_id=w.misc["e_staged"],
                       upstream=w.eids["f_up"], graph_revision=w.misc["rev"], now_ms=w.now)],
    "ff_resolve_dependency": [
        lambda w: make("ResolveDependency", eid=w.eids["f_child"], lane=LANE,
                       flow_id=w.misc["flow"], edge_id=w.misc["e_child"],
                       upstream=w.eids["f_up"], upstream_outcome="success", now_ms=w.now),
        lambda w: make("ResolveDependency", eid=w.eids["f_child"], lane=LANE,
                       flow_id=w.misc["flow"], edge_id=w.misc["e_child"],
                       upstream=w.eids["f_up"], upstream_outcome="failed", now_ms=w.now)],
    "ff_cancel_flow": [
        lambda w: make("CancelFlow", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       policy="cancel_all", grace_ms=1000)],
    "ff_ack_cancel_member": [
        lambda w: make("AckCancelMember", tag=w.misc["ftag2"], flow_id=w.misc["flow2"],
                       eid=w.eids["f2_member"])],
    "ff_drain_sibling_cancel_group": [
        lambda w: make("DrainSiblingCancelGroup", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       downstream=w.eids["f_fan"])],
    "ff_reconcile_sibling_cancel_group": [
        lambda w: make("ReconcileSiblingCancelGroup", tag=w.misc["ftag"],
                       flow_id=w.misc["flow"], downstream=w.eids["f_fan"])],
    # Budgets and quotas (spec 04 §6-§7).
    "ff_create_budget": [
        lambda w: make("CreateBudget", tag=w.misc["btag"], budget_id=new_uuid(),
                       scope_type="flow", scope_id="f", reset_interval_ms=HOUR, now_ms=w.now,
                       limits={"tokens": (10, 5)})],
    "ff_report_usage_and_check": [
        lambda w: make("ReportUsageAndCheck", tag=w.misc["btag"], budget_id=w.misc["budget"],
                       deltas={"tokens": 3, "calls": 1}, now_ms=w.now, dedup_id="d1")],
    "ff_record_spend": [
        lambda w: make("RecordSpend", tag=w.misc["btag"], budget_id=w.misc["budget"],
                       deltas={"tokens": 3, "calls": 1}, now_ms=w.now,
                       eid=w.eids["active"])],
    "ff_release_budget": [
        lambda w: make("ReleaseBudget", tag=w.misc["btag"], budget_id=w.misc["budget"],
                       eid=w.eids["waiting"])],
    "ff_reset_budget": [
        lambda w: make("ResetBudget", tag=w.misc["btag"], budget_id=w.misc["budget"],
                       now_ms=w.now)],
    "ff_create_quota_policy": [
        lambda w: make("CreateQuotaPolicy", tag=w.misc["qtag"], quota_id=new_uuid(),
                       window_seconds=60, max_requests_per_window=5, max_concurrent=2,
                       now_ms=w.now)],
    "ff_check_admission_and_record": [
        lambda w: make("CheckAdmissionAndRecord", tag=w.misc["qtag"], quota_id=w.misc["quota"],
                       eid=w.eids["active"], now_ms=w.now, window_seconds=60, rate_limit=100,
                       concurrency_cap=10)],
    "ff_release_admission": [
        lambda w: make("ReleaseAdmission", tag=w.misc["qtag"], quota_id=w.misc["quota"],
                       eid=w.eids["waiting"])],
}
