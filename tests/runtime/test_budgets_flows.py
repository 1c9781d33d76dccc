"""Budgets and quotas reach flow members and children (redis-server and
memory://): a static flow's members get their task's budgets (or the ones
given to ``add``), and a child is charged to its parent's budgets as well as
its own task's."""

from __future__ import annotations

import anyio
import pytest
from worker_support import lane_worker

from flowfabric_worker import Client, Limit, TaskContext, flow, task
from flowfabric_worker.errors import TaskFailed
from flowfabric_worker.protocol.keys import ExecKeys

pytestmark = pytest.mark.anyio

LANE = "bq-flows"


@task(name="bqf.spend", lane=LANE)
async def spend(ctx: TaskContext, n: int) -> int:
    await ctx.report_usage(tokens=n)
    return n


@flow(name="bqf.parent", lane=LANE)
async def parent(ctx: TaskContext, n: int) -> int:
    await ctx.report_usage(tokens=1)
    parts = await ctx.gather(ctx.child(spend, n), ctx.child(spend, n + 1))
    return sum(parts)


@pytest.fixture
def client(keyed_client: Client) -> Client:
    return keyed_client


async def test_flow_members_are_charged_to_the_budgets_they_are_given(client: Client) -> None:
    shared = await client.create_budget({"tokens": Limit(hard=1000)})
    other = await client.create_budget({"tokens": Limit(hard=1000)})
    builder = client.flow()
    a = builder.add(spend, 3, budgets=[shared])
    builder.add(spend, 4, after=[a], budgets=[shared, other])
    c = builder.add(spend, 5, after=[a])  # the task has no budget: none attached
    worker = lane_worker(client, [spend], LANE)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        handle = await builder.submit()
        state = await handle.wait(timeout=20)
        worker.stop()
    assert state.state == "completed"
    assert (await shared.info()).usage == {"tokens": 7}
    assert (await other.info()).usage == {"tokens": 4}
    raw = await client.backend.redis.hget(ExecKeys(c.id).core, "budget_ids")
    assert (raw or b"") == b""


async def test_children_are_charged_to_the_parents_budgets(client: Client) -> None:
    budget = await client.create_budget({"tokens": Limit(hard=1000)})
    run = await parent.submit(client, 10, budgets=[budget])
    worker = lane_worker(client, [parent, spend], LANE)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        assert await run.result(timeout=20) == 21
        worker.stop()
    # The parent's own report (once, though it ran twice) and both children's.
    assert (await budget.info()).usage == {"tokens": 1 + 10 + 11}


async def test_a_child_is_held_to_the_parents_hard_limit(client: Client) -> None:
    budget = await client.create_budget({"tokens": Limit(hard=5)})
    run = await parent.submit(client, 10, budgets=[budget])
    worker = lane_worker(client, [parent, spend], LANE)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with pytest.raises(TaskFailed) as info:
            await run.result(timeout=20)
        worker.stop()
    # A child's report of 10 would pass the parent's hard limit of 5: the
    # child fails without retry, and the parent with ChildFailed.
    assert "ChildFailed" in info.value.reason
    assert "budget_hard_breach: BudgetExceeded" in info.value.reason
    assert (await budget.info()).usage == {"tokens": 1}
