"""client/listing.py: executions from the lane indexes (redis-server and
memory://), and client/replay.py."""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import pytest

from flowfabric_worker.client.client import Client
from flowfabric_worker.client.listing import list_executions, live_worker_lanes
from flowfabric_worker.client.replay import replay
from flowfabric_worker.errors import InvalidInput

pytestmark = pytest.mark.anyio


async def _after(client: Client, *runs: Any) -> None:
    """Wait until the clock passes the runs' created_at: rows sort by it,
    in ms, and submits in a row often share one."""
    newest = max([(await r.info()).created_at for r in runs])
    while time.time() * 1000 <= newest + 1:  # noqa: ASYNC110 - waiting on the clock itself
        await anyio.sleep(0.001)


def _lane() -> str:
    return f"ls-{uuid.uuid4().hex[:8]}"  # the server is shared: a lane of our own


async def test_a_filter_widens_the_window_until_rows_match(url: str) -> None:
    lane = _lane()
    async with Client.connect(url) as client:
        old = await client.submit("ls.rare", lane=lane)
        await _after(client, old)
        newer = []
        for i in range(6):
            newer.append(await client.submit("ls.common", i, lane=lane))
            await _after(client, newer[-1])
        rows = await list_executions(client.backend, lanes=[lane], task="ls.rare", limit=1)
        # The first window (the newest one per index) holds only ls.common.
        assert [r.id for r in rows] == [old.id]
        rows = await list_executions(client.backend, lanes=[lane], limit=3)
        assert [r.id for r in rows] == [r.id for r in newer[::-1][:3]]
        assert {r.state for r in rows} == {"waiting"} and rows[0].task == "ls.common"


async def test_every_index_and_priority_is_read(url: str) -> None:
    lane = _lane()
    async with Client.connect(url) as client:
        low = await client.submit("ls.p", lane=lane)
        await _after(client, low)
        high = await client.submit("ls.p", lane=lane, priority=5)  # sorts far below in eligible
        await _after(client, high)
        later = await client.submit("ls.p", lane=lane, delay=3600)
        await _after(client, later)
        gone = await client.submit("ls.p", lane=lane)
        await client.cancel(gone.id, reason="test")
        rows = await list_executions(client.backend, lanes=[lane])
        assert [(r.id, r.state) for r in rows] == [
            (gone.id, "cancelled"), (later.id, "delayed"), (high.id, "waiting"),
            (low.id, "waiting")]
        only = await list_executions(client.backend, lanes=[lane], state="delayed")
        assert [r.id for r in only] == [later.id]
        # No --lane: every lane of ff:idx:lanes.
        everywhere = await list_executions(client.backend, limit=10_000)
        assert {low.id, high.id, later.id, gone.id} <= {r.id for r in everywhere}


async def test_flow_members_live_on_other_partitions(url: str) -> None:
    lane = _lane()
    async with Client.connect(url) as client:
        flow = client.flow()
        a = flow.add("ls.node", lane=lane, name="a")
        flow.add("ls.node", lane=lane, name="b", after=[a])
        handle = await flow.submit()
        by_lane = await list_executions(client.backend, lanes=[lane])
        by_flow = await list_executions(client.backend, flow_id=handle.id)
        assert {r.id for r in by_lane} == {r.id for r in by_flow}
        assert {r.state for r in by_flow} == {"waiting", "waiting_children"}
        assert {r.flow_id for r in by_flow} == {handle.id}


async def test_bad_arguments_are_refused(url: str) -> None:
    async with Client.connect(url) as client:
        with pytest.raises(InvalidInput):
            await list_executions(client.backend, limit=0)
        with pytest.raises(InvalidInput):
            await list_executions(client.backend, state="sleeping")
        with pytest.raises(InvalidInput):
            await list_executions(client.backend, flow_id="not-a-uuid")


async def test_replay_refuses_what_is_not_failed(url: str) -> None:
    lane = _lane()
    async with Client.connect(url) as client:
        run = await client.submit("ls.r", lane=lane)
        with pytest.raises(InvalidInput, match="not finished"):
            await replay(client.backend, run.id)
        await client.cancel(run.id)
        assert await replay(client.backend, run.id) == "cancelled"
        core = await run.info()
        assert (core.public_state, core.replay_count) == ("waiting", 1)
        assert lane not in await live_worker_lanes(client.backend, client.namespace)
