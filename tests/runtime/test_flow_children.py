"""Flows from code: a task spawning children with ctx.child / ctx.submit /
ctx.gather, waiting without holding a worker slot, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from flow_support import core, running_worker
from flow_tasks import fanout, pipeline

from flowfabric_worker import Client
from flowfabric_worker.protocol.journal import JournalRead

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(url: str) -> AsyncIterator[Client]:
    async with Client.connect(url) as c:
        yield c


async def test_fanout_with_one_slot(client: Client) -> None:
    async with running_worker(client, concurrency=1):
        run = await fanout.submit(client, 20)
        assert await run.result(timeout=60) == sum(i * i for i in range(20))
    parent = await core(client, run.id)
    assert parent["flow_id"]
    handle = client.flow_handle(parent["flow_id"])
    members = await handle.member_ids()
    assert len(members) == 21 and run.id in members
    entries = await client.backend.call(JournalRead(eid=run.id))
    assert [e.name for e in entries] == ["child:flows.square"] * 20
    # The parent waited without its slot: with one slot the children could
    # only run while it was parked (it ran again from the top once).
    assert int(parent["total_attempt_count"]) == 1


async def test_children_dag_and_failures(client: Client) -> None:
    async with running_worker(client, concurrency=2):
        run = await pipeline.submit(client)
        assert await run.result(timeout=60) == [
            "first", "left", "joined", "failed:skipped", "failed"]
