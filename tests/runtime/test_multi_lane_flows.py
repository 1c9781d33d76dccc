"""A worker serving several lanes claims flow members on every partition.

The scheduler takes the lanes in turn; with one partition window shared by
all lanes, each of L lanes saw only every L-th window, so with 8 lanes a
lane saw 1/8 of the partitions and a flow member on the others stayed
``waiting`` for ever. Each lane now has its own window."""

from __future__ import annotations

import anyio
import pytest

from flowfabric_worker import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

#: Two lanes are enough: the window count (256 partitions / 32) is even, so
#: with a shared cursor each lane saw only every other window.
LANES = [f"ml{i}" for i in range(2)]


@task(name="ml.step", lane="ml0")
async def step(name: str) -> str:
    return name


async def test_flows_on_any_partition_reach_a_multi_lane_worker(url: str) -> None:
    async with Client.connect(url) as client:
        worker = Worker(client, [step], lanes=LANES, lease_ttl=2.0,
                        scanner_interval_scale=0.05, grace_period=1.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            # Six flows on random partitions: before the fix, each had a 1/2
            # chance of landing where lane ml0 never looked.
            handles = []
            for i in range(6):
                flow = client.flow()
                a = flow.add(step, f"a{i}")
                flow.add(step, f"b{i}", after=[a])
                handles.append(await flow.submit())
            states = [(await h.wait(timeout=60)).state for h in handles]
            worker.stop()
    assert states == ["completed"] * 6
