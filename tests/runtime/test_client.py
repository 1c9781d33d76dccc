"""Client and RunHandle against a real backend (redis-server and memory://)."""

from __future__ import annotations

import anyio
import pytest

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.errors import (
    InvalidInput,
    Permanent,
    ResultTimeout,
    TaskCancelled,
    TaskFailed,
)
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@task(name="t.add", lane="clienttest")
async def add(a: int, b: int) -> int:
    return a + b


@task(name="t.boom", lane="clienttest")
def boom() -> None:
    raise Permanent("nope")


async def test_submit_creates_waiting_execution(url: str) -> None:
    async with Client.connect(url) as client:
        run = await add.submit(client, 1, 2)
        assert await run.state() == "waiting"
        core = await run.info()
        assert core.lane_id == "clienttest" and core.execution_kind == "t.add"
        assert client.run(run.id).id == run.id


async def test_idempotent_submit_returns_same_execution(url: str) -> None:
    async with Client.connect(url) as client:
        first = await add.submit(client, 1, 2, idempotency_key="k1")
        second = await add.submit(client, 1, 2, idempotency_key="k1")
        other = await add.submit(client, 1, 2, idempotency_key="k2")
        assert second.id == first.id and second.duplicate
        assert other.id != first.id


async def test_bad_id_and_bad_args_refused(url: str) -> None:
    async with Client.connect(url) as client:
        with pytest.raises(InvalidInput):
            client.run("not-an-id")
        with pytest.raises(Exception, match="argument 'a'"):
            await add.submit(client, "x", 2)
        with pytest.raises(InvalidInput, match="priority"):
            await add.submit(client, 1, 2, priority=-1)


async def test_delay_and_submit_by_name(url: str) -> None:
    async with Client.connect(url) as client:
        later = await add.submit(client, 1, 2, delay=60, tags={"k": "v"})
        assert await later.state() == "delayed"
        assert await client.backend.get_tags(later.id) == {"k": "v"}
        soon = await add.submit(client, 1, 2, delay=0.2)  # too close: sent as eligible now
        assert await soon.state() == "waiting"
        named = await client.submit("other.task", 1, lane="elsewhere")
        core = await named.info()
        assert core.execution_kind == "other.task" and core.lane_id == "elsewhere"


async def test_cancel_then_result_raises(url: str) -> None:
    async with Client.connect(url) as client:
        run = await add.submit(client, 1, 2)
        assert await run.cancel("changed my mind") == "runnable"
        assert await run.state() == "cancelled"
        with pytest.raises(TaskCancelled) as info:
            await run.result(timeout=2)
        assert info.value.reason == "changed my mind"


async def test_result_timeout(url: str) -> None:
    async with Client.connect(url) as client:
        run = await add.submit(client, 1, 2)
        with pytest.raises(ResultTimeout):
            await run.result(timeout=0.1)


async def test_results_through_a_worker(url: str) -> None:
    async with Client.connect(url) as client:
        ok = await add.submit(client, 2, 3)
        bad = await boom.submit(client)
        worker = Worker(client, tasks=[add, boom], lanes=["clienttest"], concurrency=2,
                        lease_ttl=5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(10):
                assert await ok.result() == 5
                with pytest.raises(TaskFailed) as info:
                    await bad.result()
            worker.stop()
        assert "nope" in info.value.reason
        assert await client.run(ok.id, add).result(timeout=1) == 5
