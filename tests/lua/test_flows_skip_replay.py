"""Skip of a child that is already running, apply to a running child, and the
flow-aware replay of a skipped member (H1's ff_replay_execution) driven by
:class:`ReplayFlowMember`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lifecycle_support import LANE, core
from test_flows_graph import NOW, Flow, eligible

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.dependencies import (
    ApplyDependencyToChild,
    ReplayFlowMember,
    ResolveDependency,
)
from flowfabric_worker.protocol.flows import StageDependencyEdge
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import ExecKeys

pytestmark = pytest.mark.anyio


@pytest.fixture
async def b(url: str) -> AsyncIterator[Backend]:
    backend = await Backend.open(url)
    try:
        yield backend
    finally:
        await backend.close()


async def test_running_child_is_skipped_and_its_attempt_closed(b: Backend) -> None:
    f = await Flow(b).create()
    a, c = await f.member(), await f.member()
    k = ExecKeys(c)
    await b.redis.hset(k.core, mapping={
        "lifecycle_phase": "active", "ownership_state": "leased",
        "attempt_state": "running_attempt", "current_attempt_index": "0"})
    await b.redis.hset(k.stream_meta(0), "opened_at", "1")
    edge_id = new_uuid()
    r = await b.call(StageDependencyEdge(tag=f.tag, flow_id=f.flow_id, edge_id=edge_id,
                                         upstream=a, downstream=c,
                                         expected_graph_revision=f.rev, now_ms=NOW))
    await b.call(ApplyDependencyToChild(eid=c, flow_id=f.flow_id, edge_id=edge_id, upstream=a,
                                        graph_revision=r.graph_revision, now_ms=NOW))
    assert (await core(b, c))["lifecycle_phase"] == "active"  # apply keeps a running child
    res = await b.call(ResolveDependency(eid=c, flow_id=f.flow_id, edge_id=edge_id, upstream=a,
                                         upstream_outcome="expired", now_ms=NOW + 1))
    assert res.child_skipped
    c_core = await core(b, c)
    assert (c_core["terminal_outcome"], c_core["attempt_state"]) == ("skipped", "attempt_terminal")
    att = await b.redis.hgetall(k.attempt(0))
    assert att[b"attempt_state"] == b"ended_cancelled"
    assert att[b"failure_reason"] == b"dependency_impossible"
    assert (await b.redis.hget(k.stream_meta(0), "closed_reason")) == b"dependency_impossible"


async def test_replay_of_skipped_all_of_member_reopens_its_edge(b: Backend) -> None:
    f = await Flow(b).create()
    a, m = await f.member(), await f.member()
    edge_id = await f.edge(a, m)
    [(_, r)] = await f.finish(a, "failed")
    assert r.child_skipped
    out = await b.call(ReplayFlowMember(eid=m, lane=LANE, inbound_edge_ids=(edge_id,)))
    assert out.unsatisfied_count == 1
    c = await core(b, m)
    assert (c["lifecycle_phase"], c["eligibility_state"]) == (
        "runnable", "blocked_by_dependencies")
    # The upstream is replayed too and now succeeds: the member is released.
    res = await b.call(ResolveDependency(eid=m, flow_id=f.flow_id, edge_id=edge_id, upstream=a,
                                         upstream_outcome="success", now_ms=NOW))
    assert res.status == "satisfied" and await eligible(b, m)
