"""``task.child(...)``, the spelling of design.md's sketch: a child of the
task running now, found through ``TaskContext.current()`` (redis-server and
memory://, async and sync parents)."""

from __future__ import annotations

import anyio
import pytest
from worker_support import lane_worker

from flowfabric_worker import Client, TaskContext, flow, task
from flowfabric_worker.errors import ConfigurationError

pytestmark = pytest.mark.anyio

LANE = "task-child"


@task(name="tc.summarize", lane=LANE)
async def summarize(doc: str) -> str:
    return doc[:3]


@task(name="tc.square", lane=LANE)
def square(n: int) -> int:
    return n * n


@flow(name="tc.review_all", lane=LANE)
async def review_all(ctx: TaskContext, docs: list[str]) -> list[str]:
    assert TaskContext.current() is ctx
    return await ctx.gather(*(summarize.child(d) for d in docs))


@flow(name="tc.squares", lane=LANE)
def squares(ctx: TaskContext, n: int) -> list[int]:
    assert TaskContext.current() is ctx  # the worker thread sees it too
    return ctx.sync.gather(*(square.child(i) for i in range(n)))


@pytest.fixture
def client(keyed_client: Client) -> Client:
    return keyed_client


async def test_children_spawned_as_task_child(client: Client) -> None:
    docs = ["alpha", "beta", "gamma"]
    async_run = await review_all.submit(client, docs)
    sync_run = await squares.submit(client, 4)
    worker = lane_worker(client, [review_all, squares, summarize, square], LANE)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        assert await async_run.result(timeout=20) == ["alp", "bet", "gam"]
        assert await sync_run.result(timeout=20) == [0, 1, 4, 9]
        worker.stop()


def test_task_child_outside_a_task_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="no task is running"):
        square.child(3)
    with pytest.raises(ConfigurationError):
        TaskContext.current()
