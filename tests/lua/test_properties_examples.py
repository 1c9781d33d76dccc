"""The holes the library property tests found (issue 12, hole 6), as explicit
examples on both backends: each input used to leave a half-written database
(a script error or a refusal after writes, or an index that disagrees with
its record); now it is refused before the first write, or it works.

Every refusal is checked against a full key census taken before the call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from property_mutations import (
    fcall,
)
from property_support import (
    HOUR,
    LANE,
    NS,
    WIID,
    WORKER,
    Call,
    census,
    index_violations,
    make,
    raw,
)
from property_world import (
    claim_execution,
    create_execution,
)

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import BudgetKeys, ExecKeys, FlowKeys, QuotaKeys
from flowfabric_worker.protocol.partitions import budget_tag, flow_tag, quota_tag
from flowfabric_worker.protocol.streams import StreamMode

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000_000


@pytest.fixture
async def b(url: str) -> AsyncIterator[Backend]:
    backend = await Backend.open(url)
    try:
        yield backend
    finally:
        await backend.close()


def with_argv(fn: Any, **positions: str) -> Call:
    """``fn`` as a raw call with ARGV positions (1-based, ``a<N>``) replaced."""
    name, keys, argv = raw(fn)
    for pos, value in positions.items():
        argv[int(pos[1:]) - 1] = value
    return name, keys, argv


async def refused_clean(b: Backend, call: Call, code: str) -> None:
    before = await census(b.redis)
    outcome, detail = await fcall(b.redis, call)
    assert (outcome, detail) == ("refused", code)
    assert await census(b.redis) == before


async def script_error_clean(b: Backend, call: Call) -> None:
    before = await census(b.redis)
    outcome, _ = await fcall(b.redis, call)
    assert outcome == "script_error"
    assert await census(b.redis) == before


async def accepted_consistent(b: Backend, call: Call) -> Any:
    outcome, reply = await fcall(b.redis, call)
    assert outcome == "ok", reply
    assert index_violations(await census(b.redis)) == []
    return reply


# --- variadic inputs past Lua's unpack() limit ---------------------------------

async def test_create_with_4000_tags_is_whole(b: Backend) -> None:
    eid = mint_execution_id(lane_id=LANE)
    tags = json.dumps({f"t{i}": i for i in range(4000)})
    fn = make("CreateExecution", eid=eid, lane_id=LANE, namespace=NS, tags_json=tags)
    reply = await accepted_consistent(b, raw(fn))
    assert reply[2:] == [eid.encode(), b"waiting"]
    k = ExecKeys(eid)
    assert await b.redis.hlen(k.tags) == 4000
    assert await b.redis.zscore(k.lane_eligible(LANE), eid) is not None


async def test_claim_with_5000_key_attempt_policy(b: Backend) -> None:
    eid = await create_execution(b)
    await b.call(make("IssueClaimGrant", eid=eid, lane_id=LANE, worker_id=WORKER,
                      grant_ttl_ms=HOUR))
    policy = json.dumps({f"p{i}": i for i in range(5000)})
    fn = make("ClaimExecution", eid=eid, lane_id=LANE, worker_id=WORKER,
              worker_instance_id=WIID, lease_id=new_uuid(), attempt_id=new_uuid(),
              lease_ttl_ms=HOUR, attempt_policy_json=policy)
    await accepted_consistent(b, raw(fn))
    assert await b.redis.hlen(ExecKeys(eid).attempt_policy(0)) == 5000


async def test_suspend_on_5000_signal_names(b: Backend) -> None:
    eid = await create_execution(b)
    await b.redis.hset(ExecKeys(eid).hmac_keystore,
                       mapping={"current_kid": "k1", "secret:k1": "ab" * 32})
    c = await claim_execution(b, eid)
    wp = new_uuid()
    fn = make("SuspendExecution", eid=eid, attempt_index=c.attempt_index,
              attempt_id=c.attempt_id, lease_id=c.lease_id, lease_epoch=c.lease_epoch,
              worker_instance_id=WIID, lane=LANE, suspension_id=new_uuid(), waitpoint_id=wp,
              waitpoint_key=f"wpk:{wp}",
              resume_condition_json=C.signal_set([f"s{i}" for i in range(5000)]),
              resume_policy_json=C.resume_policy_json())
    await accepted_consistent(b, raw(fn))
    assert await b.redis.hget(ExecKeys(eid).waitpoint_condition(wp), "total_matchers") == b"5000"


async def test_5000_execution_and_flow_tags(b: Backend) -> None:
    pairs = [x for i in range(5000) for x in (f"app.k{i}", str(i))]
    eid = await create_execution(b)
    name, keys, _ = raw(make("SetExecutionTags", eid=eid, tags={"app.a": "1"}))
    await accepted_consistent(b, (name, keys, list(pairs)))
    assert await b.redis.hlen(ExecKeys(eid).tags) == 5000
    # A flow's first tag call migrates legacy tag fields before writing the
    # tags: 0.15 raised after the migration stood.
    fid = new_uuid()
    tag = flow_tag(fid, b.partitions)
    await b.call(make("CreateFlow", tag=tag, flow_id=fid))
    name, keys, _ = raw(make("SetFlowTags", tag=tag, flow_id=fid, tags={"app.a": "1"}))
    await accepted_consistent(b, (name, keys, list(pairs)))
    assert await b.redis.hlen(FlowKeys(tag, fid).tags) == 5000


# --- numbers the later commands refuse -------------------------------------------

async def test_block_with_non_numeric_now(b: Backend) -> None:
    eid = await create_execution(b)
    fn = make("BlockExecutionForAdmission", eid=eid, lane_id=LANE,
              blocking_reason="waiting_for_quota", now_ms=NOW)
    await refused_clean(b, with_argv(fn, a4="soon"), "invalid_input")


async def test_resolve_with_non_numeric_now(b: Backend) -> None:
    fid = new_uuid()
    tag = flow_tag(fid, b.partitions)
    await b.call(make("CreateFlow", tag=tag, flow_id=fid))
    up, down = (mint_execution_id(flow_id=fid, config=b.partitions) for _ in range(2))
    for eid in (up, down):
        await create_execution(b, eid)
        await b.call(make("AddExecutionToFlow", tag=tag, flow_id=fid, eid=eid))
    edge = new_uuid()
    await b.call(make("StageDependencyEdge", tag=tag, flow_id=fid, edge_id=edge, upstream=up,
                      downstream=down, expected_graph_revision=2, now_ms=NOW))
    await b.call(make("ApplyDependencyToChild", eid=down, lane=LANE, flow_id=fid, edge_id=edge,
                      upstream=up, graph_revision=3, now_ms=NOW))
    fn = make("ResolveDependency", eid=down, lane=LANE, flow_id=fid, edge_id=edge, upstream=up,
              upstream_outcome="failed", now_ms=NOW)
    await refused_clean(b, with_argv(fn, a3="later"), "invalid_input")


async def test_renew_with_ttl_past_2_pow_53(b: Backend) -> None:
    # now + 1e19 rendered with %d wraps negative: PEXPIREAT deleted lease:current.
    eid = await create_execution(b)
    c = await claim_execution(b, eid)
    fn = make("RenewLease", eid=eid, attempt_index=c.attempt_index, attempt_id=c.attempt_id,
              lease_id=c.lease_id, lease_epoch=c.lease_epoch, lease_ttl_ms=HOUR)
    await refused_clean(b, with_argv(fn, a6="10000000000000000000"), "invalid_input")


async def test_signal_maxlen_with_leading_zeros(b: Backend) -> None:
    eid = await create_execution(b)
    c = await claim_execution(b, eid)
    await b.redis.hset(ExecKeys(eid).hmac_keystore,
                       mapping={"current_kid": "k1", "secret:k1": "ab" * 32})
    wp = await b.call(make("CreatePendingWaitpoint", eid=eid, attempt_index=c.attempt_index,
                           waitpoint_id=new_uuid(), waitpoint_key="wpk", expires_at=NOW * 2))
    fn = make("BufferSignal", eid=eid, signal_id=new_uuid(), waitpoint_id=wp.waitpoint_id,
              signal_name="go", token=wp.token)
    await accepted_consistent(b, with_argv(fn, a16="0100"))


async def test_admission_window_below_a_millisecond(b: Backend) -> None:
    qid = new_uuid()
    qtag = quota_tag(qid, b.partitions)
    fn = make("CheckAdmissionAndRecord", tag=qtag, quota_id=qid, eid=await create_execution(b),
              now_ms=NOW, window_seconds=60, rate_limit=10, concurrency_cap=10)
    await refused_clean(b, with_argv(fn, a2="1e300"), "invalid_input")
    # 0.15 sent SET PX 0 after the ZADD; the window now rounds up to 1 ms.
    await accepted_consistent(b, with_argv(fn, a2="0.0001"))
    assert await b.redis.zcard(QuotaKeys(qtag, qid).window("default")) == 1


async def test_best_effort_floor_past_2_pow_53(b: Backend) -> None:
    eid = await create_execution(b)
    c = await claim_execution(b, eid)
    fn = make("AppendFrame", eid=eid, attempt_index=c.attempt_index, lease_id=c.lease_id,
              lease_epoch=c.lease_epoch, frame_type="tick", payload=b"t",
              mode=StreamMode.BEST_EFFORT, ttl_ms=1000)
    await accepted_consistent(b, with_argv(fn, a17="1e300"))


# --- budgets: validate before indexing or incrementing -------------------------------

async def test_budget_refusals_write_nothing(b: Backend) -> None:
    bid = new_uuid()
    btag = budget_tag(bid, b.partitions)
    fn = make("CreateBudget", tag=btag, budget_id=bid, scope_type="flow", scope_id="f",
              now_ms=NOW, limits={"tokens": (10, 5)})
    await refused_clean(b, with_argv(fn, a9="many"), "invalid_input")
    await refused_clean(b, with_argv(fn, a9="7"), "invalid_input")  # more dims than given
    await script_error_clean(b, with_argv(fn, a7="hourly"))
    await b.call(fn)
    usage = make("ReportUsageAndCheck", tag=btag, budget_id=bid,
                 deltas={"calls": 1, "tokens": 2}, now_ms=NOW)
    await script_error_clean(b, with_argv(usage, a5="2.5"))  # HINCRBY refuses it
    await refused_clean(b, with_argv(usage, a1="5"), "invalid_input")
    spend = make("RecordSpend", tag=btag, budget_id=bid, deltas={"calls": 1}, now_ms=NOW,
                 eid=await create_execution(b))
    name, keys, argv = raw(spend)
    await refused_clean(b, (name, keys[:3], argv), "invalid_input")  # no ledger keys
    assert await b.redis.hgetall(BudgetKeys(btag, bid).usage) == {}


# --- ARGV that contradicts KEYS, and missing KEYS ------------------------------------

async def test_execution_id_must_match_the_keys(b: Backend) -> None:
    eid = await create_execution(b)
    c = await claim_execution(b, eid)
    fn = make("CompleteExecution", eid=eid, lane_id=LANE, attempt_index=c.attempt_index,
              worker_instance_id=WIID, lease_id=c.lease_id, lease_epoch=c.lease_epoch,
              attempt_id=c.attempt_id)
    # 0.15 filed "other" in the terminal set and left eid in lane_active.
    await refused_clean(b, with_argv(fn, a1="other"), "invalid_input")
    create = make("CreateExecution", eid=mint_execution_id(lane_id=LANE), lane_id=LANE)
    await refused_clean(b, with_argv(create, a3="other-lane"), "invalid_input")
    fid = new_uuid()
    flow = make("CreateFlow", tag=flow_tag(fid, b.partitions), flow_id=fid)
    await refused_clean(b, with_argv(flow, a1=new_uuid()), "invalid_input")


async def test_missing_keys_are_refused_before_writing(b: Backend) -> None:
    eid = await create_execution(b)
    c = await claim_execution(b, eid)
    fn = make("FailExecution", eid=eid, lane_id=LANE, attempt_index=c.attempt_index,
              worker_instance_id=WIID, lease_id=c.lease_id, lease_epoch=c.lease_epoch,
              attempt_id=c.attempt_id)
    name, keys, argv = raw(fn)
    await refused_clean(b, (name, keys[:2], argv), "invalid_input")
    suspend = make("SuspendExecution", eid=eid, attempt_index=c.attempt_index,
                   attempt_id=c.attempt_id, lease_id=c.lease_id, lease_epoch=c.lease_epoch,
                   worker_instance_id=WIID, lane=LANE, suspension_id=new_uuid(),
                   waitpoint_id=new_uuid(), waitpoint_key="wpk",
                   resume_condition_json=C.signal_set(["go"]),
                   resume_policy_json=C.resume_policy_json())
    name, keys, argv = raw(suspend)
    # Two extra bindings announced, their six KEYS missing.
    argv = [*argv[:19], "2", "wp-a", "key-a", "wp-b", "key-b"]
    await refused_clean(b, (name, keys, argv), "invalid_input")
    fid = new_uuid()
    tag = flow_tag(fid, b.partitions)
    await b.call(make("CreateFlow", tag=tag, flow_id=fid))
    member = mint_execution_id(flow_id=fid, config=b.partitions)
    await create_execution(b, member)
    await b.call(make("AddExecutionToFlow", tag=tag, flow_id=fid, eid=member))
    name, keys, argv = raw(make("CancelFlow", tag=tag, flow_id=fid, policy="cancel_all"))
    await refused_clean(b, (name, keys[:2], argv), "invalid_input")


# --- the operator claim of a parked execution ----------------------------------------

async def test_grant_and_claim_takes_a_parked_execution_out_of_its_set(b: Backend) -> None:
    eid = await create_execution(b)
    c = await claim_execution(b, eid)
    await b.call(make("MoveToWaitingChildren", eid=eid, lane_id=LANE,
                      attempt_index=c.attempt_index, worker_instance_id=WIID,
                      lease_id=c.lease_id, lease_epoch=c.lease_epoch, attempt_id=c.attempt_id))
    fn = make("IssueGrantAndClaim", eid=eid, lane_id=LANE, lease_id=new_uuid(),
              attempt_id=new_uuid(), lease_ttl_ms=HOUR)
    await accepted_consistent(b, raw(fn))
    assert await b.redis.zscore(ExecKeys(eid).lane_blocked(LANE, "dependencies"), eid) is None


# --- refusals after the first write ----------------------------------------------------

async def test_summary_refusal_creates_no_stream_meta(b: Backend) -> None:
    # 0.15 creates stream_meta (check 6) before the summary checks 7-12.
    eid = await create_execution(b)
    c = await claim_execution(b, eid)
    fn = make("AppendFrame", eid=eid, attempt_index=c.attempt_index, lease_id=c.lease_id,
              lease_epoch=c.lease_epoch, frame_type="event", payload=b"{}",
              mode=StreamMode.SUMMARY)
    await refused_clean(b, with_argv(fn, a7="{not json"), "invalid_input")
    await refused_clean(b, with_argv(fn, a7=json.dumps({"a": {"b": {"c": 1}}}), a15="diff"),
                        "invalid_input")


async def test_retry_backoff_that_is_not_finite(b: Backend) -> None:
    # "nan" made the delayed-set score "nan": ZADD refused it after the lease
    # was dropped and the attempt ended.
    for backoff in ({"type": "fixed", "delay_ms": "nan"},
                    {"type": "exponential", "max_delay_ms": "inf"}):
        eid = await create_execution(b)
        c = await claim_execution(b, eid)
        fn = make("FailExecution", eid=eid, lane_id=LANE, attempt_index=c.attempt_index,
                  worker_instance_id=WIID, lease_id=c.lease_id, lease_epoch=c.lease_epoch,
                  attempt_id=c.attempt_id,
                  retry_policy_json=json.dumps({"max_retries": 3, "backoff": backoff}))
        reply = await accepted_consistent(b, raw(fn))
        assert reply[2] == b"retry_scheduled"


async def test_numbers_json_cannot_encode(b: Backend) -> None:
    # cjson (on a real server) decodes 1e400 but refuses to encode it: the
    # claim re-encodes nested attempt-policy members after its first writes,
    # the summary append its document after creating stream_meta.
    eid = await create_execution(b)
    await b.call(make("IssueClaimGrant", eid=eid, lane_id=LANE, worker_id=WORKER,
                      grant_ttl_ms=HOUR))
    fn = make("ClaimExecution", eid=eid, lane_id=LANE, worker_id=WORKER,
              worker_instance_id=WIID, lease_id=new_uuid(), attempt_id=new_uuid(),
              lease_ttl_ms=HOUR)
    policy = '{"limits": {"x": 1e400}}'
    outcome, _ = await fcall(b.redis, with_argv(fn, a10=policy))
    if outcome == "refused":  # the memory backend's cjson encodes it
        await refused_clean(b, with_argv(fn, a10=policy), "invalid_input")
    else:
        assert outcome == "ok"
    other = await create_execution(b)
    c = await claim_execution(b, other)
    frame = make("AppendFrame", eid=other, attempt_index=c.attempt_index, lease_id=c.lease_id,
                 lease_epoch=c.lease_epoch, frame_type="event", payload=b"{}",
                 mode=StreamMode.SUMMARY)
    before = await census(b.redis)
    outcome, detail = await fcall(b.redis, with_argv(frame, a7='{"x": 1e400}'))
    if outcome != "ok":
        assert (outcome, detail) == ("refused", "invalid_input")
        assert await census(b.redis) == before
    # The batch: frame 1 used to be appended before frame 2's encode raised.
    batch = make("AppendFrames", eid=other, attempt_index=c.attempt_index, lease_id=c.lease_id,
                 lease_epoch=c.lease_epoch, frames=(("stdout", b"a", "durable", "", ""),
                                                    ("event", b"{}", "summary", "", "")))
    name, keys, argv = raw(batch)
    blob = b"stdouta" + b"durable" + b"event" + b'{"x": 1e400}' + b"summary"
    argv[-2:] = ["6 0 1 7 0 5 0 12 7 0", blob]
    before = await census(b.redis)
    outcome, detail = await fcall(b.redis, (name, keys, argv))
    if outcome != "ok":
        assert (outcome, detail) == ("refused", "invalid_input")
        assert await census(b.redis) == before


async def test_edge_group_overflow_is_refused_before_writing(b: Backend) -> None:
    # 0.15 answers invariant_violation after resolving the edge and counting it.
    fid = new_uuid()
    tag = flow_tag(fid, b.partitions)
    await b.call(make("CreateFlow", tag=tag, flow_id=fid))
    up, down = (mint_execution_id(flow_id=fid, config=b.partitions) for _ in range(2))
    for eid in (up, down):
        await create_execution(b, eid)
        await b.call(make("AddExecutionToFlow", tag=tag, flow_id=fid, eid=eid))
    await b.call(make("SetEdgeGroupPolicy", tag=tag, flow_id=fid, downstream=down,
                      policy_variant="any_of", on_satisfied="let_run", now_ms=NOW))
    edge = new_uuid()
    await b.call(make("StageDependencyEdge", tag=tag, flow_id=fid, edge_id=edge, upstream=up,
                      downstream=down, expected_graph_revision=2, now_ms=NOW))
    await b.call(make("ApplyDependencyToChild", eid=down, lane=LANE, flow_id=fid, edge_id=edge,
                      upstream=up, graph_revision=3, now_ms=NOW))
    await b.redis.hset(FlowKeys(tag, fid).edge_group(down), "failed", "1")  # n is 1
    fn = make("ResolveDependency", eid=down, lane=LANE, flow_id=fid, edge_id=edge, upstream=up,
              upstream_outcome="success", now_ms=NOW)
    await refused_clean(b, raw(fn), "invariant_violation")
