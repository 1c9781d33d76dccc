"""Flows and dependency edges on both backends: membership, staging, cycle
and revision checks, apply, resolution (all_of diamond, skip propagation,
any_of / quorum with sibling cancellation), flow cancellation and tags."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from lifecycle_support import LANE, core, create

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.dependencies import (
    ApplyDependencyToChild,
    EvaluateFlowEligibility,
    PromoteBlockedToEligible,
    ResolveDependency,
    ResolveResult,
)
from flowfabric_worker.protocol.errors import AlreadyMemberOfDifferentFlow, ExecutionAlreadyInFlow
from flowfabric_worker.protocol.flows import (
    AckCancelMember,
    AddExecutionToFlow,
    CancelFlow,
    CreateFlow,
    DrainSiblingCancelGroup,
    ReconcileSiblingCancelGroup,
    SetEdgeGroupPolicy,
    SetFlowTags,
    StageDependencyEdge,
)
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import ExecKeys, FlowKeys, PartitionKeys
from flowfabric_worker.protocol.partitions import flow_tag

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000_000


@pytest.fixture
async def b(url: str) -> AsyncIterator[Backend]:
    backend = await Backend.open(url)
    try:
        yield backend
    finally:
        await backend.close()


class Flow:
    """A flow under construction: tracks the graph revision like a builder."""

    def __init__(self, b: Backend) -> None:
        self.b = b
        self.flow_id = new_uuid()
        self.tag = flow_tag(self.flow_id, b.partitions)
        self.keys = FlowKeys(self.tag, self.flow_id)
        self.rev = 0

    async def create(self) -> Flow:
        await self.b.call(CreateFlow(tag=self.tag, flow_id=self.flow_id, namespace="ns"))
        return self

    async def member(self) -> str:
        eid = mint_execution_id(flow_id=self.flow_id, config=self.b.partitions)
        await create(self.b, eid)
        await self.b.call(AddExecutionToFlow(tag=self.tag, flow_id=self.flow_id, eid=eid))
        self.rev += 1
        return eid

    async def policy(self, down: str, variant: Any, on: str = "", k: int = 0) -> str:
        r = await self.b.call(SetEdgeGroupPolicy(
            tag=self.tag, flow_id=self.flow_id, downstream=down, policy_variant=variant,
            on_satisfied=on, k=k, now_ms=NOW))
        return r.status

    async def edge(self, up: str, down: str, ref: str = "") -> str:
        edge_id = new_uuid()
        r = await self.b.call(StageDependencyEdge(
            tag=self.tag, flow_id=self.flow_id, edge_id=edge_id, upstream=up, downstream=down,
            expected_graph_revision=self.rev, data_passing_ref=ref, now_ms=NOW))
        self.rev = r.graph_revision
        await self.b.call(ApplyDependencyToChild(
            eid=down, lane=LANE, flow_id=self.flow_id, edge_id=edge_id, upstream=up,
            graph_revision=self.rev, data_passing_ref=ref, now_ms=NOW))
        return edge_id

    async def finish(self, eid: str, outcome: str) -> list[tuple[str, ResolveResult]]:
        """Mark `eid` terminal and resolve its outgoing edges, cascading skips
        like the engine's completion dispatch (spec 04 §4.5)."""
        await self.b.redis.hset(ExecKeys(eid).core, mapping={
            "lifecycle_phase": "terminal", "terminal_outcome": outcome})
        out: list[tuple[str, ResolveResult]] = []
        for raw_edge in await self.b.redis.smembers(self.keys.outgoing(eid)):
            edge_id = raw_edge.decode()
            child = (await self.b.redis.hget(
                self.keys.edge(edge_id), "downstream_execution_id")).decode()
            r = await self.b.call(ResolveDependency(
                eid=child, lane=LANE, flow_id=self.flow_id, edge_id=edge_id, upstream=eid,
                upstream_outcome=outcome, now_ms=NOW))
            out.append((child, r))
            if r.child_skipped:
                out.extend(await self.finish(child, "skipped"))
        return out


async def state(b: Backend, eid: str) -> tuple[str, str, str]:
    c = await core(b, eid)
    return c["lifecycle_phase"], c["eligibility_state"], c.get("terminal_outcome", "")


async def eligible(b: Backend, eid: str) -> bool:
    return await b.redis.zscore(ExecKeys(eid).lane_eligible(LANE), eid) is not None


async def test_create_and_membership_rules(b: Backend) -> None:
    f = await Flow(b).create()
    again = await b.call(CreateFlow(tag=f.tag, flow_id=f.flow_id))
    assert not again.created
    a = await f.member()
    re = await b.call(AddExecutionToFlow(tag=f.tag, flow_id=f.flow_id, eid=a))
    assert (re.added, re.node_count) == (False, 1)
    flow = await b.redis.hgetall(f.keys.core)
    assert flow[b"graph_revision"] == b"1" and flow[b"public_flow_state"] == b"open"

    other = await Flow(b).create()
    with pytest.raises(InvalidInput):  # co-location checked client-side
        AddExecutionToFlow(tag=other.tag if other.tag != f.tag else "{fp:99999}",
                           flow_id=other.flow_id, eid=a)
    # Same partition, different flow: AlreadyMemberOfDifferentFlow, an
    # ExecutionAlreadyInFlow that carries the owning flow.
    twin = Flow(b)
    twin.flow_id, twin.tag = new_uuid(), f.tag
    twin.keys = FlowKeys(f.tag, twin.flow_id)
    await twin.create()
    with pytest.raises(AlreadyMemberOfDifferentFlow) as e:
        await b.call(AddExecutionToFlow(tag=f.tag, flow_id=twin.flow_id, eid=a))
    assert isinstance(e.value, ExecutionAlreadyInFlow) and e.value.flow_id == f.flow_id

    missing = Flow(b)
    with pytest.raises(ContractError) as e:
        await b.call(AddExecutionToFlow(tag=missing.tag, flow_id=missing.flow_id,
                                        eid=mint_execution_id(flow_id=missing.flow_id,
                                                              config=b.partitions)))
    assert e.value.code == "flow_not_found"
    with pytest.raises(ContractError) as e:
        await b.call(AddExecutionToFlow(tag=f.tag, flow_id=f.flow_id,
                                        eid=mint_execution_id(flow_id=f.flow_id,
                                                              config=b.partitions)))
    assert e.value.code == "execution_not_found"


async def test_stage_checks_revision_cycle_and_duplicates(b: Backend) -> None:
    f = await Flow(b).create()
    a, c = await f.member(), await f.member()

    def stage(up: str, down: str, rev: int, edge_id: str | None = None) -> StageDependencyEdge:
        return StageDependencyEdge(tag=f.tag, flow_id=f.flow_id, edge_id=edge_id or new_uuid(),
                                   upstream=up, downstream=down, expected_graph_revision=rev,
                                   now_ms=NOW)

    for call, code in [
        (stage(a, a, f.rev), "self_referencing_edge"),
        (stage(a, c, f.rev - 1), "stale_graph_revision"),
    ]:
        with pytest.raises(ContractError) as e:
            await b.call(call)
        assert e.value.code == code
    edge = new_uuid()
    r = await b.call(stage(a, c, f.rev, edge))
    assert r.graph_revision == f.rev + 1
    with pytest.raises(ContractError) as e:
        await b.call(stage(c, a, r.graph_revision))
    assert e.value.code == "cycle_detected"
    with pytest.raises(ContractError) as e:
        await b.call(stage(a, c, r.graph_revision, edge))
    assert e.value.code == "dependency_already_exists"
    stranger = mint_execution_id(flow_id=f.flow_id, config=b.partitions)
    with pytest.raises(ContractError) as e:
        await b.call(stage(a, stranger, r.graph_revision))
    assert e.value.code == "execution_not_in_flow"
    assert (await b.redis.hget(f.keys.core, "edge_count")) == b"1"


async def test_diamond_all_of_releases_join_after_both(b: Backend) -> None:
    f = await Flow(b).create()
    a, b1, c, d = [await f.member() for _ in range(4)]
    await f.edge(a, b1)
    await f.edge(a, c)
    await f.edge(b1, d)
    await f.edge(c, d, ref="in")
    assert await state(b, d) == ("runnable", "blocked_by_dependencies", "none")
    assert not await eligible(b, d)
    ev = await b.call(EvaluateFlowEligibility(eid=d))
    assert ev.status == "blocked_by_dependencies"

    res = await f.finish(a, "success")
    assert sorted(r.status for _, r in res) == ["satisfied", "satisfied"]
    assert await eligible(b, b1) and await eligible(b, c)
    await f.finish(b1, "success")
    assert not await eligible(b, d)
    await b.redis.set(ExecKeys(c).result, b"c-out")
    [(child, r)] = await f.finish(c, "success")
    assert (child, r.status, r.marker) == (d, "satisfied", "data_injected")
    assert await eligible(b, d)
    assert await b.redis.get(ExecKeys(d).payload) == b"c-out"
    assert (await core(b, d))["public_state"] == "waiting"
    # duplicate delivery is harmless
    [(_, again)] = [x for x in await f.finish(c, "success")]
    assert again.status == "already_resolved"


async def test_skip_propagates_two_levels(b: Backend) -> None:
    f = await Flow(b).create()
    a, m, z = [await f.member() for _ in range(3)]
    await f.edge(a, m)
    await f.edge(m, z)
    res = await f.finish(a, "failed")
    assert [(e, r.status, r.marker) for e, r in res] == [
        (m, "impossible", "child_skipped"), (z, "impossible", "child_skipped")]
    for eid in (m, z):
        c = await core(b, eid)
        assert (c["terminal_outcome"], c["public_state"]) == ("skipped", "skipped")
        assert await b.redis.zscore(ExecKeys(eid).lane_terminal(LANE), eid) is not None
    assert (await b.call(EvaluateFlowEligibility(eid=z))).status == "not_runnable"


async def test_any_of_cancel_remaining_records_siblings_and_drains(b: Backend) -> None:
    f = await Flow(b).create()
    u1, u2, u3, d = [await f.member() for _ in range(4)]
    assert await f.policy(d, "any_of", "cancel_remaining") == "set"
    for u in (u1, u2, u3):
        await f.edge(u, d)
    with pytest.raises(ContractError) as e:  # frozen once an edge is applied
        await f.policy(d, "any_of", "cancel_remaining")
    assert e.value.code == "invalid_input"

    [(_, r)] = await f.finish(u2, "failed")
    assert r.status == "pending"
    [(_, r)] = await f.finish(u1, "success")
    assert r.status == "satisfied" and await eligible(b, d)
    # Python deviation: the verdict agrees with exec_core once the group fired.
    assert (await b.call(EvaluateFlowEligibility(eid=d))).status == "eligible"
    group = await b.redis.hgetall(f.keys.edge_group(d))
    assert group[b"cancel_siblings_pending_flag"] == b"true"
    assert group[b"cancel_siblings_pending_members"].decode() == u3
    assert group[b"cancel_siblings_reason"] == b"sibling_quorum_satisfied"
    pcg = PartitionKeys(f.tag).pending_cancel_groups
    assert await b.redis.sismember(pcg, f"{f.flow_id}|{d}")

    rec = ReconcileSiblingCancelGroup(tag=f.tag, flow_id=f.flow_id, downstream=d)
    assert (await b.call(rec)).detail == "siblings_running"
    [(_, late)] = await f.finish(u3, "cancelled")
    assert late.status == "already_fired"
    assert (await b.call(rec)).action == "completed_drain"
    drain = DrainSiblingCancelGroup(tag=f.tag, flow_id=f.flow_id, downstream=d)
    assert (await b.call(drain)).action == "already_drained"
    assert not await b.redis.hexists(f.keys.edge_group(d), "cancel_siblings_pending_flag")


async def test_quorum_impossible_skips_and_drain(b: Backend) -> None:
    f = await Flow(b).create()
    ups = [await f.member() for _ in range(3)]
    d = await f.member()
    await f.policy(d, "quorum", "cancel_remaining", k=2)
    for u in ups:
        await f.edge(u, d)
    [(_, r)] = await f.finish(ups[0], "failed")
    assert r.status == "pending"
    [(_, r), *_] = await f.finish(ups[1], "skipped")
    assert (r.status, r.marker) == ("impossible", "child_skipped")
    group = await b.redis.hgetall(f.keys.edge_group(d))
    assert group[b"cancel_siblings_reason"] == b"sibling_quorum_impossible"
    assert (group[b"failed"], group[b"skipped"]) == (b"1", b"1")
    drain = DrainSiblingCancelGroup(tag=f.tag, flow_id=f.flow_id, downstream=d)
    assert (await b.call(drain)).action == "drained"


async def test_quorum_two_of_three_satisfies(b: Backend) -> None:
    f = await Flow(b).create()
    ups = [await f.member() for _ in range(3)]
    d = await f.member()
    await f.policy(d, "quorum", "let_run", k=2)
    for u in ups:
        await f.edge(u, d)
    [(_, r)] = await f.finish(ups[0], "success")
    assert r.status == "pending" and not await eligible(b, d)
    [(_, r)] = await f.finish(ups[1], "success")
    assert r.status == "satisfied" and await eligible(b, d)
    assert not await b.redis.hexists(f.keys.edge_group(d), "cancel_siblings_pending_flag")


async def test_policy_validation(b: Backend) -> None:
    f = await Flow(b).create()
    d = await f.member()
    with pytest.raises(InvalidInput):
        SetEdgeGroupPolicy(tag=f.tag, flow_id=f.flow_id, downstream=d, policy_variant="quorum",
                           on_satisfied="let_run", k=0, now_ms=NOW)
    assert await f.policy(d, "any_of", "let_run") == "set"
    assert await f.policy(d, "any_of", "cancel_remaining") == "already_set"
    raw = await b.redis.fcall("ff_set_edge_group_policy", 2, f.keys.core,
                              f.keys.edge_group(d), "bogus", "", "0", str(NOW))
    assert raw[0] == 0 and raw[1] == b"invalid_input"


async def test_promote_and_errors(b: Backend) -> None:
    f = await Flow(b).create()
    a, c = await f.member(), await f.member()
    edge = await f.edge(a, c)
    promote = PromoteBlockedToEligible(eid=c, lane=LANE, now_ms=NOW)
    with pytest.raises(ContractError) as e:
        await b.call(promote)
    assert e.value.code == "deps_not_satisfied" and e.value.details == ("1", "1")
    with pytest.raises(ContractError) as e:
        await b.call(ResolveDependency(eid=c, flow_id=f.flow_id, edge_id=new_uuid(),
                                       upstream=a, upstream_outcome="success", now_ms=NOW))
    assert e.value.code == "invalid_dependency"
    again = await b.call(ApplyDependencyToChild(eid=c, flow_id=f.flow_id, edge_id=edge,
                                                upstream=a, graph_revision=1, now_ms=NOW))
    assert again.unsatisfied_count is None
    # An operator clears the edge by hand; promote then releases the child.
    await b.redis.delete(ExecKeys(c).deps_unresolved)
    await b.redis.hset(ExecKeys(c).deps_meta, "unsatisfied_required_count", "0")
    await b.call(promote)
    assert await eligible(b, c)
    with pytest.raises(ContractError) as e:
        await b.call(promote)
    assert e.value.code == "not_blocked_by_deps"


async def test_cancel_flow_policies_and_ack(b: Backend) -> None:
    f = await Flow(b).create()
    a, c = await f.member(), await f.member()
    pk = PartitionKeys(f.tag)
    r = await b.call(CancelFlow(tag=f.tag, flow_id=f.flow_id, reason="stop",
                                policy="cancel_all", grace_ms=1000))
    assert r.policy == "cancel_all" and sorted(r.members) == sorted([a, c])
    assert await b.redis.scard(f.keys.pending_cancels) == 2
    assert await b.redis.zscore(pk.cancel_backlog, f.flow_id) is not None
    with pytest.raises(ContractError) as e:
        await b.call(CancelFlow(tag=f.tag, flow_id=f.flow_id, policy="cancel_all"))
    assert e.value.code == "flow_already_terminal"
    with pytest.raises(ContractError) as e:  # no member or edge after a cancel
        await f.member()
    assert e.value.code == "flow_already_terminal"
    for m in (a, c):
        await b.call(AckCancelMember(tag=f.tag, flow_id=f.flow_id, eid=m))
    assert await b.redis.zscore(pk.cancel_backlog, f.flow_id) is None

    g = await Flow(b).create()
    await g.member()
    r = await b.call(CancelFlow(tag=g.tag, flow_id=g.flow_id, policy="flow_only"))
    assert len(r.members) == 1 and not await b.redis.exists(g.keys.pending_cancels)
    raw = await b.redis.fcall("ff_cancel_flow", 5, g.keys.core, g.keys.members, pk.flow_index,
                              g.keys.pending_cancels, pk.cancel_backlog, g.flow_id, "", "x",
                              "0", "1.5")
    assert list(raw) == [0, b"invalid_grace_ms"]


async def test_flow_tags(b: Backend) -> None:
    f = await Flow(b).create()
    await b.redis.hset(f.keys.core, "legacy.owner", "ann")
    r = await b.call(SetFlowTags(tag=f.tag, flow_id=f.flow_id, tags={"team.name": "x"}))
    assert r.pair_count == 1
    tags = await b.redis.hgetall(f.keys.tags)
    assert tags == {b"team.name": b"x", b"legacy.owner": b"ann"}
    assert not await b.redis.hexists(f.keys.core, "legacy.owner")
    raw = await b.redis.fcall("ff_set_flow_tags", 2, f.keys.core, f.keys.tags, "Bad", "v")
    assert list(raw) == [0, b"invalid_tag_key", b"Bad"]
    raw = await b.redis.fcall("ff_set_flow_tags", 2, f.keys.core, f.keys.tags, "a.b")
    assert raw[1] == b"invalid_input"


async def test_cancel_pending_targets_only_unstarted_members(b: Backend) -> None:
    f = await Flow(b).create()
    waiting, running, done = [await f.member() for _ in range(3)]
    await b.redis.hset(ExecKeys(running).core, "lifecycle_phase", "active")
    await b.redis.hset(ExecKeys(done).core, "lifecycle_phase", "terminal")
    r = await b.call(CancelFlow(tag=f.tag, flow_id=f.flow_id, policy="cancel_pending"))
    assert sorted(r.members) == sorted([waiting, running, done])  # reply as in 0.15
    assert await b.redis.smembers(f.keys.pending_cancels) == {waiting.encode()}
    assert await b.redis.zscore(PartitionKeys(f.tag).cancel_backlog, f.flow_id) is not None


async def test_stage_retry_and_idempotent_cancel(b: Backend) -> None:
    f = await Flow(b).create()
    a, c = await f.member(), await f.member()
    call = StageDependencyEdge(tag=f.tag, flow_id=f.flow_id, edge_id=new_uuid(), upstream=a,
                               downstream=c, expected_graph_revision=0, now_ms=NOW)
    r = await b.stage_edge_with_retry(call)  # revision 0 is stale: re-read and retry
    assert r.graph_revision == 3
    again = await b.stage_edge_with_retry(call)  # lost-reply replay counts as success
    assert again == r
    clash = StageDependencyEdge(tag=f.tag, flow_id=f.flow_id, edge_id=call.edge_id,
                                upstream=c, downstream=a, expected_graph_revision=3,
                                now_ms=NOW)
    with pytest.raises(ContractError):
        await b.stage_edge_with_retry(clash)
    first = await b.cancel_flow_idempotent(
        CancelFlow(tag=f.tag, flow_id=f.flow_id, reason="r", policy="flow_only"))
    second = await b.cancel_flow_idempotent(
        CancelFlow(tag=f.tag, flow_id=f.flow_id, policy="cancel_all"))
    assert (second.policy, sorted(second.members)) == ("flow_only", sorted(first.members))
