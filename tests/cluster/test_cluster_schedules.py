"""Recurring schedules on a 3-primary cluster: schedules on partitions of
every primary are stored, listed, fired by a worker (executions in their
lane's slot, the schedule in its own) and removed."""

from __future__ import annotations

import anyio
import pytest

from flowfabric_worker import TaskContext, task
from flowfabric_worker.client.client import Client
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

_ran: list[tuple[str, int]] = []
_all_ran = anyio.Event()
_expected: set[str] = set()


@task(name="c.scheduled", lane="cl-sched")
async def scheduled(ctx: TaskContext, n: int) -> int:
    assert ctx.schedule is not None
    _ran.append((ctx.schedule.schedule_id, n))
    if {sid for sid, _ in _ran} == _expected:
        _all_ran.set()
    return n


async def test_schedules_across_slots_fire_and_list(cluster_url: str) -> None:
    global _all_ran
    _ran.clear()
    _all_ran = anyio.Event()
    async with Client.connect(cluster_url) as client:
        ids = [f"cl-{i}" for i in range(6)]  # spread over the partitions' slots
        _expected.clear()
        _expected.update(ids)
        for i, sid in enumerate(ids):
            await client.schedule(scheduled, i, every=1, schedule_id=sid)
        assert [s.id for s in await client.schedules()] == ids
        worker = Worker(client, [scheduled], concurrency=8, scanner_interval_scale=0.2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(30):
                await _all_ran.wait()
            worker.stop()
        for sid in ids:
            info = await client.schedule_handle(sid).info()
            assert info.fired >= 1 and info.last_execution_id
            assert await client.schedule_handle(sid).delete()
        assert await client.schedules() == []
