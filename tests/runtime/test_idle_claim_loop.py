"""What an idle worker does (issue 18, idle cost): its fallback poll asks one
question ("anything eligible in any partition?") before reading partitions,
its look for crashed work first asks whether any lease exists, and a
wake-up lost while its subscription was down is made up for by a full look
once it subscribes again."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio
from worker_support import run_until, state, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.lifecycle import ClaimExecution, IssueClaimGrant
from flowfabric_worker.worker.backend_port import BackendEngine
from flowfabric_worker.worker.scheduler import Backoff
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@task(lane="idle")
async def noop() -> int:
    return 1


def _count(monkeypatch: pytest.MonkeyPatch, name: str, calls: dict[str, int]) -> None:
    real = getattr(BackendEngine, name)
    calls[name] = 0

    async def counted(self: BackendEngine, *args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(BackendEngine, name, counted)


async def test_idle_polls_ask_first_and_still_find_unannounced_work(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {}
    for name in ("eligible_in", "candidate_reads", "leases_in",
                 "list_reclaimable_many"):
        _count(monkeypatch, name, calls)
    worker = Worker(_Holder(backend), [noop], concurrency=2, scanners=False, lease_ttl=2.0)
    worker.idle_backoff = Backoff(0.01, 0.01)  # a busy poll, to count its rounds
    eid = ""

    async def done() -> bool:
        nonlocal eid
        if not eid:
            await anyio.sleep(0.6)
            # Idle: many polls, each one question; the partitions were read
            # only by the first round and the one its subscription triggered,
            # and never looked at for crashed work, as no lease exists.
            assert calls["eligible_in"] >= 10, calls
            assert calls["candidate_reads"] <= 2, calls
            assert calls["leases_in"] >= 1 and calls["list_reclaimable_many"] == 0, calls
            eid = await submit(backend, noop)  # no wake-up: only the poll finds it
        return await state(backend, eid) == "completed"

    await run_until(worker, done, limit=10.0)


async def test_idle_worker_reclaims_a_crashed_workers_lease(backend: Backend) -> None:
    # The default lease TTL (30 s): idle looks every IDLE_RECLAIM_EVERY (2 s).
    worker = Worker(_Holder(backend), [noop], concurrency=2, scanners=False)
    eid = ""

    async def done() -> bool:
        nonlocal eid
        if not eid:
            await anyio.sleep(0.5)  # idle by now
            eid = await submit(backend, noop)
            # Claimed by a worker that dies at once (a 300 ms lease, never renewed).
            await backend.call(IssueClaimGrant(eid=eid, lane_id="idle", worker_id="dead",
                                               worker_instance_id="dead-1"))
            await backend.call(ClaimExecution(
                eid=eid, lane_id="idle", worker_id="dead", worker_instance_id="dead-1",
                lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=300))
        return await state(backend, eid) == "completed"

    await run_until(worker, done, limit=15.0)


# CLIENT KILL: a real server only.
@pytest.mark.parametrize("url", ["redis"], indirect=True)
async def test_a_wake_lost_while_resubscribing_still_leads_to_a_claim(
        url: str, raw: redis.asyncio.Redis) -> None:
    async with Client.connect(url) as client:
        worker = Worker(client, [noop], concurrency=2, scanners=False)
        # The fallback poll would only look again after a minute.
        worker.idle_backoff = Backoff(60.0, 60.0)
        eid = ""

        async def subscribers() -> int:
            return int(dict(await raw.pubsub_numsub("ffw:wake:idle"))[b"ffw:wake:idle"])

        async def done() -> bool:
            nonlocal eid
            if not eid:
                while await subscribers() < 1:  # noqa: ASYNC110 - polling Redis state
                    await anyio.sleep(0.02)
                await anyio.sleep(0.2)  # its first rounds are over: idle
                # Created without a wake-up: the one it would have had is
                # the one lost while the subscription is down. Killing the
                # subscription only now, not before the create, keeps a
                # quick resubscribe (or a slow create on a busy box) from
                # hearing it after all.
                eid = await submit(client.backend, noop)
                await anyio.sleep(0.2)
                assert await state(client.backend, eid) == "waiting"  # nothing told it
                await raw.client_kill_filter(_type="pubsub")
            return await state(client.backend, eid) == "completed"

        await run_until(worker, done, limit=10.0)


class _Holder:
    """Just what Worker needs of a client: the backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
