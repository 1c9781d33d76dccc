"""The main lifecycle through a ``redis+cluster://`` URL on a 3-primary
cluster: submit -> worker -> result, retries, a signal resume, a flow whose
children live on other partitions, a live stream tail, budgets, inspect."""

from __future__ import annotations

import anyio
import pytest

from flowfabric_worker import Retry, TaskContext, flow, task
from flowfabric_worker.client.client import Client
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

_attempts: dict[str, int] = {}


@task(name="c.add", lane="cl")
async def add(a: int, b: int) -> int:
    return a + b


@task(name="c.flaky", lane="cl", retry=Retry(max_attempts=3, initial=0.05))
async def flaky(key: str) -> str:
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] < 3:
        raise RuntimeError("not yet")
    return f"ok after {_attempts[key]}"


@task(name="c.approve", lane="cl")
async def approve(ctx: TaskContext, what: str) -> str:
    sig = await ctx.wait_for_signal("approve", timeout=60)
    return f"{what} approved by {sig.source_identity}"


@task(name="c.talk", lane="cl")
async def talk(ctx: TaskContext, n: int) -> int:
    for i in range(n):
        await ctx.stream(f"t{i} ")
        await anyio.sleep(0.01)
    return n


@task(name="c.square", lane="cl")
async def square(x: int) -> int:
    return x * x


@flow(name="c.fan", lane="cl")
async def fan(ctx: TaskContext, n: int) -> int:
    values = await ctx.gather(*(ctx.child(square, i) for i in range(n)))
    return sum(values)


TASKS = [add, flaky, approve, talk, square, fan]


def _worker(client: Client) -> Worker:
    return Worker(client, TASKS, lanes=["cl"], concurrency=32, lease_ttl=3.0,
                  scanner_interval_scale=0.05, grace_period=1.0)


async def test_lifecycle_on_a_cluster(cluster_url: str) -> None:
    async with Client.connect(cluster_url, init_secrets=True) as client:
        assert client.backend.cluster is not None
        async with anyio.create_task_group() as tg:
            worker = _worker(client)
            tg.start_soon(worker.run)
            with anyio.fail_after(120):
                # Many submissions land on every primary (partitions spread
                # over the slots); each result comes back through routing.
                runs = [await add.submit(client, i, 1) for i in range(60)]
                assert [await r.result(timeout=60) for r in runs] == [i + 1 for i in range(60)]

                assert await (await flaky.submit(client, "k")).result(timeout=60) == "ok after 3"

                waiting = await approve.submit(client, "deploy")
                await waiting.wait_for("suspended", timeout=60)
                await waiting.signal("approve", {"ok": True}, source="ana")
                assert await waiting.result(timeout=60) == "deploy approved by ana"

                streaming = await talk.submit(client, 20)
                text = "".join([f.text async for f in streaming.frames()])
                assert text == "".join(f"t{i} " for i in range(20))
                assert await streaming.result(timeout=60) == 20

                parent = await fan.submit(client, 12)
                assert await parent.result(timeout=60) == sum(i * i for i in range(12))
            worker.stop()


async def test_lanes_spread_over_every_primary(cluster_url: str) -> None:
    """A lane's solo executions share its partition (one slot); several lanes
    spread over every primary, and each call went to the node owning it."""
    async with Client.connect(cluster_url) as client:
        for i in range(60):
            await client.submit(add, i, 1, lane=f"cl{i}")
        cluster = client.backend.cluster
        assert cluster is not None
        sizes = {}
        for addr in cluster.primaries():
            sizes[addr] = int(await cluster.node_client(addr).dbsize())
        assert all(n > 0 for n in sizes.values()), sizes
