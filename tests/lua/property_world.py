"""The property tests' world: one database with an execution in every
interesting state, a flow, a budget, a quota policy and a worker, built
through the typed call structs (see property_support.py)."""


from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from property_support import HOUR, LANE, NS, SECRET, WIID, WORKER, make

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.partitions import budget_tag, flow_tag, quota_tag
from flowfabric_worker.protocol.schedules import schedule_tag
from flowfabric_worker.protocol.streams import StreamMode


@dataclass
class World:
    """Ids of the entities ``build_world`` created (see the module docstring)."""

    now: int = 0
    eids: dict[str, str] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    misc: dict[str, Any] = field(default_factory=dict)

    def tag(self) -> str:
        return ExecKeys(self.eids["waiting"]).tag


def _now() -> int:
    return int(time.time() * 1000)


async def create_execution(b: Backend, eid: str | None = None, **kw: Any) -> str:
    eid = eid or mint_execution_id(lane_id=LANE)
    kw.setdefault("lane_id", LANE)
    await b.call(make("CreateExecution", eid=eid, namespace=NS, execution_kind="k", **kw))
    return eid


async def claim_execution(b: Backend, eid: str, wiid: str = WIID) -> Any:
    await b.call(make("IssueClaimGrant", eid=eid, lane_id=LANE, worker_id=WORKER,
                      worker_instance_id=wiid, grant_ttl_ms=HOUR))
    return await b.call(make("ClaimExecution", eid=eid, lane_id=LANE, worker_id=WORKER,
                             worker_instance_id=wiid, lease_id=new_uuid(),
                             attempt_id=new_uuid(), lease_ttl_ms=HOUR))


async def suspend_execution(b: Backend, eid: str, c: Any, timeout_at: int | None) -> Any:
    """Suspend claim ``c`` of ``eid`` on a fresh waitpoint awaiting "go" and "more"."""
    wp_id = new_uuid()
    return await b.call(make(
        "SuspendExecution", eid=eid, attempt_index=c.attempt_index, attempt_id=c.attempt_id,
        lease_id=c.lease_id, lease_epoch=c.lease_epoch, worker_instance_id=WIID, lane=LANE,
        suspension_id=new_uuid(), waitpoint_id=wp_id, waitpoint_key=f"wpk:{wp_id}",
        timeout_at=timeout_at, resume_condition_json=C.signal_set(["go", "more"], mode="all"),
        resume_policy_json=C.resume_policy_json()))


async def build_world(b: Backend) -> World:
    w = World(now=_now())
    e = w.eids
    e["waiting"] = await create_execution(b, priority=5)
    await b.redis.hset(ExecKeys(e["waiting"]).hmac_keystore,
                       mapping={"current_kid": "k1", "secret:k1": SECRET})
    e["granted"] = await create_execution(b)
    await b.call(make("IssueClaimGrant", eid=e["granted"], lane_id=LANE, worker_id=WORKER,
                      worker_instance_id=WIID, grant_ttl_ms=HOUR))
    e["tagged"] = await create_execution(b, tags_json=json.dumps({"a": "1"}),
                                policy_json=json.dumps({"max_replay_count": 3}))

    e["active"] = await create_execution(b)
    c = w.claims["active"] = await claim_execution(b, e["active"])
    await b.call(make("AppendFrame", eid=e["active"], attempt_index=c.attempt_index,
                      lease_id=c.lease_id, lease_epoch=c.lease_epoch, frame_type="stdout",
                      payload=b"hello"))
    await b.call(make("AppendFrame", eid=e["active"], attempt_index=c.attempt_index,
                      lease_id=c.lease_id, lease_epoch=c.lease_epoch, frame_type="event",
                      payload=b'{"k": 1}', mode=StreamMode.SUMMARY))
    await b.call(make("JournalAppend", eid=e["active"], lease_id=c.lease_id,
                      lease_epoch=c.lease_epoch, step_index=0, step_name="s0", result=b"r"))
    pwp = new_uuid()
    w.misc["pending"] = await b.call(make(
        "CreatePendingWaitpoint", eid=e["active"], attempt_index=c.attempt_index,
        waitpoint_id=pwp, waitpoint_key=f"wpk:{pwp}", expires_at=w.now + HOUR))

    # Leased with no frame yet: appends create its stream_meta.
    e["leased"] = await create_execution(b)
    w.claims["leased"] = await claim_execution(b, e["leased"], wiid="w1-i4")

    e["revoked"] = await create_execution(b)
    w.claims["revoked"] = await claim_execution(b, e["revoked"], wiid="w1-i2")
    await b.call(make("RevokeLease", eid=e["revoked"], worker_instance_id="w1-i2"))
    e["reclaimable"] = await create_execution(b)
    w.claims["reclaimable"] = await claim_execution(b, e["reclaimable"], wiid="w1-i3")
    await b.call(make("RevokeLease", eid=e["reclaimable"], worker_instance_id="w1-i3"))
    await b.call(make("IssueReclaimGrant", eid=e["reclaimable"], lane_id=LANE, worker_id="w2",
                      worker_instance_id="w2-i1", grant_ttl_ms=HOUR))

    e["suspended"] = await create_execution(b)
    c = w.claims["suspended"] = await claim_execution(b, e["suspended"])
    w.misc["susp"] = await suspend_execution(b, e["suspended"], c, timeout_at=w.now + HOUR)
    e["due"] = await create_execution(b)
    c = w.claims["due"] = await claim_execution(b, e["due"])
    w.misc["due_susp"] = await suspend_execution(b, e["due"], c, timeout_at=w.now - 1000)

    e["resumed"] = await create_execution(b)
    c = w.claims["resumed"] = await claim_execution(b, e["resumed"])
    r = await suspend_execution(b, e["resumed"], c, timeout_at=None)
    await b.call(make("ResumeExecution", eid=e["resumed"], lane=LANE,
                      current_waitpoint_id=r.primary.waitpoint_id))
    await b.call(make("IssueClaimGrant", eid=e["resumed"], lane_id=LANE, worker_id=WORKER,
                      worker_instance_id=WIID, grant_ttl_ms=HOUR))

    e["delayed"] = await create_execution(b, delay_until=w.now + HOUR)
    e["terminal"] = await create_execution(b)
    c = w.claims["terminal"] = await claim_execution(b, e["terminal"])
    await b.call(make("CompleteExecution", eid=e["terminal"], lane_id=LANE,
                      attempt_index=c.attempt_index, worker_instance_id=WIID,
                      lease_id=c.lease_id, lease_epoch=c.lease_epoch,
                      attempt_id=c.attempt_id, result_payload=b"done"))
    e["blocked"] = await create_execution(b)
    await b.call(make("BlockExecutionForAdmission", eid=e["blocked"], lane_id=LANE,
                      blocking_reason="waiting_for_budget", now_ms=w.now))
    e["parked"] = await create_execution(b)
    c = w.claims["parked"] = await claim_execution(b, e["parked"])
    await b.call(make("MoveToWaitingChildren", eid=e["parked"], lane_id=LANE,
                      attempt_index=c.attempt_index, worker_instance_id=WIID,
                      lease_id=c.lease_id, lease_epoch=c.lease_epoch,
                      attempt_id=c.attempt_id))

    await _build_flow(b, w)
    await _build_budgets(b, w)
    await _build_schedule(b, w)
    await b.call(make("RegisterWorker", namespace=NS, instance_id=WIID, worker_id=WORKER,
                      lanes=(LANE,), ttl_ms=HOUR, now_ms=w.now))
    return w


async def _build_flow(b: Backend, w: World) -> None:
    fid = w.misc["flow"] = new_uuid()
    tag = w.misc["ftag"] = flow_tag(fid, b.partitions)
    e = w.eids
    await b.call(make("CreateFlow", tag=tag, flow_id=fid, namespace=NS))
    rev = 0

    async def member(name: str) -> str:
        nonlocal rev
        eid = e[name] = mint_execution_id(flow_id=fid, config=b.partitions)
        await create_execution(b, eid)
        await b.call(make("AddExecutionToFlow", tag=tag, flow_id=fid, eid=eid))
        rev += 1
        return eid

    async def edge(up: str, down: str, apply: bool = True) -> str:
        nonlocal rev
        edge_id = new_uuid()
        r = await b.call(make("StageDependencyEdge", tag=tag, flow_id=fid, edge_id=edge_id,
                              upstream=up, downstream=down, expected_graph_revision=rev,
                              now_ms=w.now))
        rev = r.graph_revision
        if apply:
            await b.call(make("ApplyDependencyToChild", eid=down, lane=LANE, flow_id=fid,
                              edge_id=edge_id, upstream=up, graph_revision=rev, now_ms=w.now))
        return edge_id

    a, child, loose = await member("f_up"), await member("f_child"), await member("f_loose")
    skipped, fan = await member("f_skipped"), await member("f_fan")
    w.misc["e_child"] = await edge(a, child)
    w.misc["e_staged"] = await edge(a, loose, apply=False)
    e_skip = w.misc["e_skipped"] = await edge(a, skipped)
    await b.call(make("ResolveDependency", eid=skipped, lane=LANE, flow_id=fid, edge_id=e_skip,
                      upstream=a, upstream_outcome="failed", now_ms=w.now))
    await b.call(make("SetEdgeGroupPolicy", tag=tag, flow_id=fid, downstream=fan,
                      policy_variant="any_of", on_satisfied="cancel_remaining", now_ms=w.now))
    e_fan = await edge(a, fan)
    await edge(loose, fan)
    await b.call(make("ResolveDependency", eid=fan, lane=LANE, flow_id=fid, edge_id=e_fan,
                      upstream=a, upstream_outcome="success", now_ms=w.now))
    w.misc["rev"] = rev
    e["f_outsider"] = mint_execution_id(flow_id=fid, config=b.partitions)
    await create_execution(b, e["f_outsider"])
    # A second, cancelled flow: pending member cancels and a backlog entry.
    gone = w.misc["flow2"] = new_uuid()
    tag2 = w.misc["ftag2"] = flow_tag(gone, b.partitions)
    await b.call(make("CreateFlow", tag=tag2, flow_id=gone, namespace=NS))
    e["f2_member"] = mint_execution_id(flow_id=gone, config=b.partitions)
    await create_execution(b, e["f2_member"])
    await b.call(make("AddExecutionToFlow", tag=tag2, flow_id=gone, eid=e["f2_member"]))
    await b.call(make("CancelFlow", tag=tag2, flow_id=gone, policy="cancel_all"))


async def _build_budgets(b: Backend, w: World) -> None:
    bid = w.misc["budget"] = new_uuid()
    btag = w.misc["btag"] = budget_tag(bid, b.partitions)
    await b.call(make("CreateBudget", tag=btag, budget_id=bid, scope_type="flow",
                      scope_id="f", reset_interval_ms=HOUR, now_ms=w.now,
                      limits={"tokens": (1000, 800), "calls": (50, 40)}))
    await b.call(make("RecordSpend", tag=btag, budget_id=bid, deltas={"tokens": 5},
                      now_ms=w.now, eid=w.eids["waiting"]))
    qid = w.misc["quota"] = new_uuid()
    qtag = w.misc["qtag"] = quota_tag(qid, b.partitions)
    await b.call(make("CreateQuotaPolicy", tag=qtag, quota_id=qid, window_seconds=60,
                      max_requests_per_window=100, max_concurrent=10, now_ms=w.now))
    await b.call(make("CheckAdmissionAndRecord", tag=qtag, quota_id=qid, eid=w.eids["waiting"],
                      now_ms=w.now, window_seconds=3600, rate_limit=100, concurrency_cap=10))


async def _build_schedule(b: Backend, w: World) -> None:
    """One active recurring schedule (ffw_schedule_*), due in an hour."""
    sid = w.misc["sched"] = f"s-{new_uuid()}"
    stag = w.misc["stag"] = schedule_tag(sid, b.partitions)
    w.misc["sched_tick"] = w.now + HOUR
    await b.call(make("ScheduleUpsert", tag=stag, schedule_id=sid,
                      spec=json.dumps({"every_ms": HOUR}), next_tick=w.now + HOUR,
                      next_fire=w.now + HOUR,
                      fields={"namespace": NS, "task": "t", "lane": LANE, "priority": "0",
                              "overlap": "allow", "catchup": "skip"}))
