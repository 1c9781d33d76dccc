"""``flow.add(..., input_from=node)``: a member takes an upstream's result as
its argument, passed along the edge (``data_passing_ref``) by the library
(redis-server and memory://)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest
from worker_support import lane_worker

from flowfabric_worker import Client, task
from flowfabric_worker.client.flow_graph import any_of
from flowfabric_worker.errors import InvalidInput, TaskFailed
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

LANE = "data-passing"


class Page(msgspec.Struct):
    url: str
    text: str


@task(name="dp.fetch", lane=LANE)
async def fetch(url: str) -> Page:
    return Page(url=url, text=f"words from {url} and more")


@task(name="dp.count", lane=LANE)
async def count_words(page: Page) -> int:
    assert isinstance(page, Page)  # typed by the annotation
    return len(page.text.split())


@task(name="dp.double", lane=LANE)
def double(n: int) -> int:
    return 2 * n


@task(name="dp.slow", lane=LANE)
async def slow(n: int) -> int:
    await anyio.sleep(1.0)
    return n


@task(name="dp.pair", lane=LANE)
async def pair(a: int, b: int) -> int:
    return a + b


@pytest.fixture
async def client(url: str) -> AsyncIterator[Client]:
    async with Client.connect(url) as c:
        yield c


def worker(client: Client) -> Worker:
    return lane_worker(client, [fetch, count_words, double, slow], LANE)


async def test_a_chain_passes_typed_results_along(client: Client) -> None:
    flow = client.flow()
    page = flow.add(fetch, "https://example.test/a")
    words = flow.add(count_words, after=[page], input_from=page)
    doubled = flow.add(double, after=[words], input_from=words)
    w = worker(client)
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        handle = await flow.submit()
        state = await handle.wait(timeout=20)
        w.stop()
    assert state.state == "completed"
    assert await handle.run(words).result() == 5
    assert await handle.run(doubled).result() == 10
    edges = await handle.edges()
    assert len(edges) == 2 and {e.state for e in edges} == {"satisfied"}


async def test_an_input_that_never_came_fails_the_member_readably(client: Client) -> None:
    flow = client.flow()
    fast = flow.add(double, 1)
    late = flow.add(slow, 2)
    # any_of: the fast upstream satisfies the join; the input was to come
    # from the slow one, so there is nothing to pass in.
    last = flow.add(double, after=[fast, late], join=any_of(), input_from=late)
    w = worker(client)
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        handle = await flow.submit()
        with pytest.raises(TaskFailed) as info:
            await handle.run(last).result(timeout=20)
        await handle.wait(timeout=20)
        w.stop()
    assert "did not complete before this member ran" in info.value.reason
    assert info.value.category == "permanent"  # not retried
    assert info.value.reason.startswith("PayloadError: task dp.double: its input is the result of")


async def test_input_from_is_checked_when_the_member_is_added(client: Client) -> None:
    flow = client.flow()
    a = flow.add(double, 1)
    b = flow.add(double, 2)
    with pytest.raises(InvalidInput, match="must also be listed in after"):
        flow.add(double, after=[a], input_from=b)
    with pytest.raises(InvalidInput, match="no other arguments"):
        flow.add(double, 3, after=[a], input_from=a)
    with pytest.raises(InvalidInput, match="cannot take"):
        flow.add(pair, after=[a], input_from=a)
