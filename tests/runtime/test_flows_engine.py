"""Static flows end to end on both backends with an in-process worker running
the engine roles: ordering, skip propagation, joins, cancellation, the flow
state, and the repairs done by the reconcilers when push dispatch is absent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest
from flow_support import core, running_worker, wait_for
from flow_tasks import await_go, boom, slow, step

from flowfabric_worker import Client
from flowfabric_worker.client.flow_graph import any_of, quorum
from flowfabric_worker.client.flow_handle import completions
from flowfabric_worker.client.keystore import init_secrets
from flowfabric_worker.engine.flows import flow_scanners
from flowfabric_worker.engine.runner import ScanRunner
from flowfabric_worker.errors import InvalidInput, ResultTimeout, TaskSkipped
from flowfabric_worker.protocol.flows import CancelFlow
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import DAG_COMPLETIONS, PartitionKeys

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(url: str) -> AsyncIterator[Client]:
    async with Client.connect(url) as c:
        yield c


async def tick(client: Client, name: str) -> int:
    """One cycle of one flow scanner in this process."""
    scanner = next(s for s in flow_scanners() if s.name == name)
    runner = ScanRunner(client.backend, [scanner], lanes=["flows"], token=f"t-{name}")
    return await runner.tick(scanner)


async def test_diamond_runs_in_dependency_order(client: Client) -> None:
    flow = client.flow()
    a = flow.add(step, "a")
    b = flow.add(step, "b", after=[a])
    c = flow.add(step, "c", after=[a])
    d = flow.add(step, "d", after=[b, c])
    # Every member is minted on the flow's partition (co-location, spec 04 §2.2).
    assert {n.id[: n.id.index("}") + 1] for n in (a, b, c, d)} == {flow.tag}
    async with running_worker(client):
        handle = await flow.submit()
        st = await handle.wait(timeout=30)
    assert st.state == "completed" and st.settled
    assert await handle.run(d).result() == "d"
    cores = {n.name: await core(client, n.id) for n in (a, b, c, d)}
    assert int(cores["flows.step-2"]["started_at"]) >= int(cores["flows.step"]["completed_at"])
    assert int(cores["flows.step-3"]["started_at"]) >= int(cores["flows.step"]["completed_at"])
    assert int(cores["flows.step-4"]["started_at"]) >= max(
        int(cores["flows.step-2"]["completed_at"]), int(cores["flows.step-3"]["completed_at"]))
    edges = await handle.edges()
    assert len(edges) == 4 and {e.state for e in edges} == {"satisfied"}


async def test_completion_subscription_sees_each_member_end(client: Client) -> None:
    flow = client.flow()
    a = flow.add(step, "a")
    bad = flow.add(boom, "bad", after=[a])
    skipped = flow.add(step, "skipped", after=[bad])
    probe = f"{flow.tag}:{new_uuid()}"  # not an execution: the cascade ignores it
    seen: dict[str, str] = {}

    async def listen() -> None:
        async for done in completions(client, flow_id=flow.flow_id):
            seen[done.execution_id] = done.outcome
            if len(seen) == 4:
                return

    async with running_worker(client), anyio.create_task_group() as tg:
        tg.start_soon(listen)
        with anyio.fail_after(30):
            # At-most-once delivery: make sure the listener is subscribed
            # (it saw a probe) before anything real ends.
            while probe not in seen:
                await client.backend.publish(DAG_COMPLETIONS, json.dumps(
                    {"execution_id": probe, "flow_id": flow.flow_id, "outcome": "probe"}))
                await anyio.sleep(0.05)
            await flow.submit()
            while len(seen) < 4:  # noqa: ASYNC110
                await anyio.sleep(0.05)
    del seen[probe]
    assert seen == {a.id: "success", bad.id: "failed", skipped.id: "skipped"}


async def test_failure_skips_downstream_two_levels(client: Client) -> None:
    flow = client.flow()
    a = flow.add(boom, "a")
    b = flow.add(step, "b", after=[a])
    c = flow.add(step, "c", after=[b])
    other = flow.add(step, "independent")
    async with running_worker(client):
        handle = await flow.submit()
        st = await handle.wait(timeout=30)
    assert st.state == "failed"
    assert st.members == {a.id: "failed", b.id: "skipped", c.id: "skipped",
                          other.id: "completed"}
    with pytest.raises(TaskSkipped):
        await handle.run(c).result(timeout=1)
    assert (await core(client, b.id)).get("started_at", "") == ""


async def test_any_of_cancel_remaining_cancels_the_slow_sibling(client: Client) -> None:
    flow = client.flow()
    fast = flow.add(step, "fast")
    lag = flow.add(slow, 60.0)
    d = flow.add(step, "d", after=[fast, lag], join=any_of(cancel_remaining=True))
    async with running_worker(client):
        handle = await flow.submit()
        st = await handle.wait(timeout=30)
    assert st.state == "completed", st
    assert st.members[lag.id] == "cancelled" and st.members[d.id] == "completed"
    assert (await core(client, lag.id))["cancellation_reason"] == "sibling_quorum_satisfied"
    groups = await client.backend.sample_sets([PartitionKeys(flow.tag).pending_cancel_groups], 50)
    assert groups == [[]]  # drained


async def test_quorum_met_and_quorum_impossible(client: Client) -> None:
    flow = client.flow()
    ok1, ok2, bad = flow.add(step, "1"), flow.add(step, "2"), flow.add(boom, "3")
    met = flow.add(step, "met", after=[ok1, ok2, bad], join=quorum(2))
    bad2 = flow.add(boom, "4")
    lost = flow.add(step, "lost", after=[ok1, bad, bad2], join=quorum(2))
    async with running_worker(client):
        handle = await flow.submit()
        st = await handle.wait(timeout=30)
    assert st.members[met.id] == "completed"
    assert st.members[lost.id] == "skipped"
    assert st.state == "failed"  # two members failed


async def test_cancel_all_reaches_running_and_waiting_members(client: Client) -> None:
    flow = client.flow()
    running = flow.add(slow, 60.0)
    waiting = flow.add(step, "never", after=[running])
    async with running_worker(client):
        handle = await flow.submit()

        async def active() -> bool:
            return (await core(client, running.id)).get("public_state") == "active"

        await wait_for(active)
        result = await handle.cancel("cancel_all", reason="user asked")
        assert result.policy == "cancel_all" and not result.pending
        assert sorted(result.cancelled) == sorted([running.id, waiting.id])
        st = await handle.wait(timeout=5)
    assert st.state == "cancelled" and st.cancel_reason == "user asked"
    assert st.members == {running.id: "cancelled", waiting.id: "cancelled"}
    again = await handle.cancel("cancel_all")  # idempotent answer from the record
    assert again.policy == "cancel_all"
    pk = PartitionKeys(flow.tag)
    assert await client.backend.redis.zscore(pk.cancel_backlog, flow.flow_id) is None


async def test_cancel_all_reaches_a_suspended_member(client: Client) -> None:
    await init_secrets(client.backend)
    flow = client.flow()
    waiting = flow.add(await_go)
    after = flow.add(step, "after", after=[waiting])
    async with running_worker(client):
        handle = await flow.submit()
        await wait_for(lambda: _state_is(client, waiting.id, "suspended"))
        wp = (await core(client, waiting.id))["current_waitpoint_id"]
        result = await handle.cancel("cancel_all")
        assert sorted(result.cancelled) == sorted([waiting.id, after.id])
        st = await handle.wait(timeout=10)
    assert set(st.members.values()) == {"cancelled"}
    record = await client.backend.get_waitpoint(flow.tag, wp)
    assert record is not None and record.state == "closed"


async def test_cancel_pending_spares_the_running_member(client: Client) -> None:
    flow = client.flow()
    running = flow.add(slow, 0.5)
    waiting = flow.add(step, "never", after=[running])
    async with running_worker(client):
        handle = await flow.submit()

        async def active() -> bool:
            return (await core(client, running.id)).get("public_state") == "active"

        await wait_for(active)
        result = await handle.cancel("cancel_pending")
        assert result.cancelled == [waiting.id]
        await wait_for(lambda: _state_is(client, running.id, "completed"))


async def _state_is(client: Client, eid: str, want: str) -> bool:
    return (await core(client, eid)).get("public_state") == want


async def test_lost_completion_is_repaired_by_the_dependency_reconciler(client: Client) -> None:
    flow = client.flow()
    a = flow.add(step, "a")
    b = flow.add(step, "b", after=[a])
    bad = flow.add(boom, "x")
    s1 = flow.add(step, "s1", after=[bad])
    s2 = flow.add(step, "s2", after=[s1])
    # No engine roles anywhere: the completion messages are lost.
    async with running_worker(client, scanners=False):
        handle = await flow.submit()
        await wait_for(lambda: _state_is(client, a.id, "completed"))
        await wait_for(lambda: _state_is(client, bad.id, "failed"))
    assert (await handle.state()).members[b.id] == "waiting_children"
    assert await tick(client, "dependency_reconciler") >= 2
    st = await handle.state()
    assert st.members[b.id] == "waiting"  # released, claimable
    assert st.members[s1.id] == "skipped" and st.members[s2.id] == "skipped"
    async with running_worker(client, scanners=False):
        st = await handle.wait(timeout=30)
    assert st.state == "failed" and st.members[b.id] == "completed"


async def test_cancel_reconciler_finishes_an_undispatched_cancel(client: Client) -> None:
    flow = client.flow()
    a = flow.add(step, "a")
    b = flow.add(step, "b", after=[a])
    handle = await flow.submit()  # no worker: both wait
    await client.backend.cancel_flow(CancelFlow(tag=flow.tag, flow_id=flow.flow_id,
                                                reason="crashed", grace_ms=0))
    assert (await handle.state()).members[a.id] == "waiting"
    assert await tick(client, "cancel_reconciler") == 2
    st = await handle.state()
    assert st.state == "cancelled" and set(st.members.values()) == {"cancelled"}
    assert (await core(client, b.id))["cancellation_reason"] == "crashed"
    pk = PartitionKeys(flow.tag)
    assert await client.backend.redis.zscore(pk.cancel_backlog, flow.flow_id) is None


async def test_projector_writes_the_summary_and_retires_settled_flows(client: Client) -> None:
    flow = client.flow()
    a = flow.add(step, "a")
    flow.add(step, "b", after=[a])
    async with running_worker(client, disabled_scanners=["flow_projector"]):
        handle = await flow.submit()
        await handle.wait(timeout=30)
    pk = PartitionKeys(flow.tag)
    assert await client.backend.redis.sismember(pk.flow_index, flow.flow_id)
    assert await tick(client, "flow_projector") == 1
    summary = (await client.backend.hashes([handle.keys.summary]))[0]
    assert summary["public_flow_state"] == "completed"
    assert summary["total_members"] == "2" and summary["members_completed"] == "2"
    assert not await client.backend.redis.sismember(pk.flow_index, flow.flow_id)
    # The record itself stays open (0.15: only a cancel writes it).
    assert (await client.backend.flow_core(handle.keys) or {})["public_flow_state"] == "open"


async def test_builder_refuses_bad_graphs(client: Client) -> None:
    flow = client.flow()
    a = flow.add(step, "a")
    other = client.flow().add(step, "elsewhere")
    with pytest.raises(InvalidInput):
        flow.add(step, "x", after=[other])
    with pytest.raises(InvalidInput):
        flow.add(step, "x", after=[a, a])
    with pytest.raises(InvalidInput):
        flow.add(step, "x", after=[a], join=quorum(2))
    with pytest.raises(InvalidInput):
        flow.add(step, "x", join=any_of())
    with pytest.raises(InvalidInput):
        await client.flow().submit()


async def test_waiting_for_an_unfinished_flow_times_out_with_a_typed_error(client: Client) -> None:
    flow = client.flow()
    flow.add(step, "never-run")  # no worker: it stays waiting
    handle = await flow.submit()
    with anyio.fail_after(5), pytest.raises(ResultTimeout, match=r"1 waiting"):
        await handle.wait(timeout=0.3)
    assert (await handle.state()).state == "running"
