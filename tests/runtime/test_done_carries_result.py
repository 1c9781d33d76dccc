"""A completion's done message carries a small result, so ``run.result()``
wakes and returns without reading (issue 18); every other message form still
leads to a read, and a message never contradicts the stored state."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client
from flowfabric_worker.client.result_listener import CARRIED_MAX, CARRIED_PREFIX
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.errors import ContractError, TaskFailed
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import DONE_CHANNEL
from flowfabric_worker.protocol.lifecycle import (
    ClaimExecution,
    CompleteExecution,
    CreateExecution,
    IssueClaimGrant,
)
from flowfabric_worker.protocol.partitions import solo_partition
from flowfabric_worker.worker.backend_port import BackendEngine
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@task(lane="carry")
async def echo(n: int) -> int:
    return n


@task(lane="carry")
async def big(n: int) -> str:
    return "x" * n


@task(lane="carry")
async def boom() -> None:
    raise ValueError("boom")


class Reads:
    """Counts the reads a client's backend sends, once armed."""

    def __init__(self, backend: Backend, monkeypatch: Any) -> None:
        self.count = 0
        self.armed = False
        self.first_done = anyio.Event()
        for name in ("read_many", "get_result", "get_exec_core", "get_attempt"):
            monkeypatch.setattr(backend, name, self._wrap(getattr(backend, name)))

    def _wrap(self, real: Any) -> Any:
        async def spy(*args: Any, **kwargs: Any) -> Any:
            reply = await real(*args, **kwargs)
            if self.armed:
                self.count += 1
            else:
                self.armed = True  # the waiter's first look (not terminal yet)
                self.first_done.set()
            return reply
        return spy


async def wait_result(url: str, monkeypatch: Any, spec: Any, *args: Any) -> tuple[Any, int]:
    """Submit, let ``run.result()`` look once (not finished), then start a
    worker (on its own client): the result and the reads after that look."""
    async with Client.connect(url) as client, Client.connect(url) as wclient:
        run = await client.submit(spec, *args)
        reads = Reads(client.backend, monkeypatch)
        out: dict[str, Any] = {}

        async def waiter() -> None:
            try:
                out["value"] = await run.result(timeout=30)
            except TaskFailed as exc:
                out["value"] = exc

        worker = Worker(wclient, [echo, big, boom], concurrency=2, scanners=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            with anyio.fail_after(30):
                await reads.first_done.wait()
            tg.start_soon(worker.run)
            with anyio.fail_after(30):
                while "value" not in out:  # noqa: ASYNC110 - waiting for the waiter
                    await anyio.sleep(0.01)
            worker.stop()
        return out["value"], reads.count


async def test_small_result_arrives_without_a_read(url: str, monkeypatch: Any) -> None:
    value, reads = await wait_result(url, monkeypatch, echo, 41)
    assert value == 41
    assert reads == 0


async def test_large_result_is_read(url: str, monkeypatch: Any) -> None:
    value, reads = await wait_result(url, monkeypatch, big, CARRIED_MAX + 100)
    assert value == "x" * (CARRIED_MAX + 100)
    assert reads >= 1


async def test_failure_is_read(url: str, monkeypatch: Any) -> None:
    value, reads = await wait_result(url, monkeypatch, boom)
    assert isinstance(value, TaskFailed) and "boom" in str(value)
    assert reads >= 1


# -- the message itself, built by the worker's publish ----------------------


async def claimed(backend: Backend) -> Claimed:
    eid = mint_execution_id(lane_id=echo.lane)
    await backend.call(CreateExecution(
        eid=eid, namespace="ns", lane_id=echo.lane, execution_kind=echo.name,
        input_payload=echo.encode_args(1), partition_id=solo_partition(echo.lane)))
    await backend.issue_claim_grant(IssueClaimGrant(eid=eid, lane_id=echo.lane, worker_id="w",
                                                    worker_instance_id="w"))
    lease, attempt = new_uuid(), new_uuid()
    await backend.claim_execution(ClaimExecution(
        eid=eid, lane_id=echo.lane, worker_id="w", worker_instance_id="w", lease_id=lease,
        attempt_id=attempt, lease_ttl_ms=30_000, attempt_index=0))
    return Claimed(execution_id=eid, lane=echo.lane, attempt_index=0, attempt_id=attempt,
                   lease_id=lease, lease_epoch=1, lease_expires_at_ms=0,
                   worker_instance_id="w")


async def messages(backend: Backend, eid: str, action: Any) -> list[bytes]:
    """The done messages published on ``eid``'s channel while ``action`` runs."""
    pubsub = backend.redis.pubsub()
    await pubsub.subscribe(DONE_CHANNEL.format(eid=eid))
    got: list[bytes] = []
    try:
        with anyio.fail_after(10):
            while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
                pass
        await action()
        with anyio.move_on_after(2):  # a message already sent arrives at once
            while True:
                msg = await pubsub.get_message(timeout=0.5)
                if msg is not None and msg.get("type") == "message":
                    got.append(msg["data"])
                    break
    finally:
        await pubsub.aclose()
    return got


async def test_complete_message_carries_stored_result(backend: Backend) -> None:
    lease = await claimed(backend)
    engine = BackendEngine(backend)
    got = await messages(backend, lease.execution_id,
                         lambda: engine.complete(lease, echo.encode_result(5)))
    assert got == [CARRIED_PREFIX + echo.encode_result(5)]


async def test_refused_complete_never_publishes_its_result(backend: Backend) -> None:
    """A stale worker (another attempt id) sending its own result after the
    execution completed: the message says what is stored, not what it sent."""
    lease = await claimed(backend)
    await backend.call(CompleteExecution(
        eid=lease.execution_id, lane_id=lease.lane, attempt_index=0, worker_instance_id="w",
        lease_id=lease.lease_id, lease_epoch=1, attempt_id=lease.attempt_id,
        result_payload=echo.encode_result(7)))
    stale = Claimed(**{**lease.__dict__, "attempt_id": new_uuid(), "lease_id": new_uuid()})
    engine = BackendEngine(backend)

    async def refused() -> None:
        with pytest.raises(ContractError):
            await engine.complete(stale, echo.encode_result(99))

    got = await messages(backend, lease.execution_id, refused)
    assert got == [CARRIED_PREFIX + echo.encode_result(7)]
    # Our own call replayed (its first send landed): the stored result again.
    again = await messages(backend, lease.execution_id,
                           lambda: engine.complete(lease, echo.encode_result(7)))
    assert again == [CARRIED_PREFIX + echo.encode_result(7)]


async def test_bare_id_message_still_wakes_a_read(url: str) -> None:
    """An older SDK's (or FlowFabric's Rust worker's) message: the id alone."""
    async with Client.connect(url) as client:
        run = await client.submit(echo, 3)
        backend = client.backend
        lease_id, attempt = new_uuid(), new_uuid()
        out: dict[str, Any] = {}

        async def waiter() -> None:
            out["value"] = await run.result(timeout=30)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await backend.issue_claim_grant(IssueClaimGrant(
                eid=run.id, lane_id=echo.lane, worker_id="w", worker_instance_id="w"))
            await backend.claim_execution(ClaimExecution(
                eid=run.id, lane_id=echo.lane, worker_id="w", worker_instance_id="w",
                lease_id=lease_id, attempt_id=attempt, lease_ttl_ms=30_000, attempt_index=0))
            await backend.call(CompleteExecution(
                eid=run.id, lane_id=echo.lane, attempt_index=0, worker_instance_id="w",
                lease_id=lease_id, lease_epoch=1, attempt_id=attempt,
                result_payload=echo.encode_result(3)))
            with anyio.fail_after(30):
                while "value" not in out:  # publish until woken
                    await backend.redis.publish(DONE_CHANNEL.format(eid=run.id), run.id)
                    await anyio.sleep(0.05)
        assert out["value"] == 3
