"""Direct wake-ups (issue 18, round trip): a single submission names the
execution it created, and an idle worker claims it without reading the
index first; a stale or lost hint falls back to the index read."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio
from worker_support import run_until, state, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.protocol.ids import mint_execution_id
from flowfabric_worker.protocol.lifecycle import CreateExecution
from flowfabric_worker.protocol.wake import DirectWake, parse_wake
from flowfabric_worker.worker.backend_port import BackendEngine
from flowfabric_worker.worker.scheduler import Backoff
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@task(lane="direct")
async def echo(x: int) -> int:
    return x


async def test_submit_names_the_execution_it_created(url: str,
                                                     raw: redis.asyncio.Redis) -> None:
    pubsub = raw.pubsub()
    await pubsub.subscribe("ffw:wake:direct")
    async with Client.connect(url) as client:
        handle = await client.submit(echo, 1)
        with anyio.fail_after(5):
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None:
                    break
    await pubsub.aclose()
    assert parse_wake(msg["data"]) == DirectWake(handle.id, "direct", echo.name)


def _spy(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[str]) -> None:
    real = getattr(BackendEngine, name)

    async def spied(self: BackendEngine, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(BackendEngine, name, spied)


async def test_an_idle_worker_claims_a_named_execution_without_a_candidate_read(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _spy(monkeypatch, "claim_direct", calls)
    _spy(monkeypatch, "candidate_reads", calls)
    async with Client.connect(url) as client:
        worker = Worker(client, [echo], concurrency=2, scanners=False)
        worker.idle_backoff = Backoff(60.0, 60.0)  # only a wake-up can get it done
        handle = None

        async def done() -> bool:
            nonlocal handle
            if handle is None:
                await anyio.sleep(0.3)  # the worker's first round is over: idle
                calls.clear()
                handle = await client.submit(echo, 7)
            return await state(client.backend, handle.id) == "completed"

        await run_until(worker, done, limit=8.0)
        assert handle is not None and await handle.result(timeout=5) == 7
        assert calls[:1] == ["claim_direct"], calls


async def test_a_stale_hint_falls_back_to_the_index(backend: Backend) -> None:
    """A named execution that does not exist (or was claimed elsewhere) costs
    two refused calls; the same round then reads the index and claims what
    is really there."""
    real = await submit(backend, echo, 3)
    worker = Worker(_Holder(backend), [echo], scanners=False)
    sched = worker.scheduler
    assert sched.offer(DirectWake("{fp:1}:00000000-0000-4000-8000-000000000000", "direct",
                                  echo.name))
    # A kind this worker has no task for is left to the workers that have it.
    assert not sched.offer(DirectWake(real, "direct", "someone.elses"))
    got = await sched.claim_batch()
    assert [c.execution_id for c in got] == [real]
    assert isinstance(got[0], Claimed) and got[0].payload


async def test_a_named_execution_is_claimed_with_its_context(backend: Backend) -> None:
    eid = await submit(backend, echo, 5)
    engine = BackendEngine(backend)
    [got] = await engine.claim_direct([DirectWake(eid, "direct", "echo")], "w", "w-1",
                                      frozenset(), 5_000, 5_000)
    assert isinstance(got, Claimed)
    assert (got.execution_id, got.lane, got.attempt_index, got.execution_kind) == (
        eid, "direct", 0, echo.name)
    assert echo.decode_args(got.payload) == ((5,), {})
    # A second worker named the same execution loses the race quietly.
    assert await engine.claim_direct([DirectWake(eid, "direct", "echo")], "w2", "w2-1",
                                     frozenset(), 5_000, 5_000) == [None]
    assert await state(backend, eid) == "active"


async def test_a_wake_named_while_a_round_is_in_flight_is_kept(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The round holds every free permit while it runs: a wake-up arriving
    then is kept for the next round, not dropped as if the worker were full."""
    entered, release = anyio.Event(), anyio.Event()
    real = BackendEngine.candidate_reads

    async def slow(self: BackendEngine, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        await release.wait()
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(BackendEngine, "candidate_reads", slow)
    worker = Worker(_Holder(backend), [echo], concurrency=1, scanners=False)
    sched = worker.scheduler
    eid = mint_execution_id(lane_id="direct")
    async with anyio.create_task_group() as tg:
        tg.start_soon(sched.claim_batch)  # finds nothing
        await entered.wait()
        assert sched.offer(DirectWake(eid, "direct", echo.name))
        release.set()
    await backend.call(CreateExecution(
        eid=eid, namespace="ns", lane_id="direct", execution_kind=echo.name,
        priority=echo.priority, policy_json=echo.policy_json(),
        input_payload=echo.encode_args(9)))
    entered = anyio.Event()
    got = await sched.claim_batch()  # the named one, without reading the index
    assert [c.execution_id for c in got] == [eid] and not entered.is_set()


class _Holder:
    """Just what Worker needs of a client: the backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
