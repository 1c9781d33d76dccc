"""The suspension-timeout and pending-waitpoint-expiry scanners against the
real library, on both backends (spec 05 §7.2 #5 and #6)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.engine.roles import default_scanners
from flowfabric_worker.engine.runner import Scanner, ScanRunner
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import ExecKeys, PartitionKeys
from flowfabric_worker.protocol.signals import CreatePendingWaitpoint, SuspendExecution
from flowfabric_worker.worker.backend_port import BackendEngine

pytestmark = pytest.mark.anyio

SECRET = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


@task(name="scanners.waits")
async def waits() -> int:
    return 1


def _pick(name: str) -> Scanner:
    return next(s for s in default_scanners() if s.name == name)


async def _hash(b: Backend, key: str) -> dict[str, str]:
    raw: dict[Any, Any] = await b.redis.hgetall(key)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def _claimed(client: Client) -> Claimed:
    handle = await waits.submit(client)
    await client.backend.redis.hset(ExecKeys(handle.id).hmac_keystore,
                                    mapping={"current_kid": "k1", "secret:k1": SECRET})
    engine = BackendEngine(client.backend)
    return await engine.claim(handle.id, "default", "w1", "w1-i", frozenset(), 30_000, 5000)


async def _suspend(b: Backend, lease: Claimed, timeout_at: int, behavior: str) -> str:
    wp = new_uuid()
    await b.call(SuspendExecution(
        eid=lease.execution_id, attempt_index=lease.attempt_index,
        attempt_id=lease.attempt_id, lease_id=lease.lease_id, lease_epoch=lease.lease_epoch,
        worker_instance_id=lease.worker_instance_id, lane="default",
        suspension_id=new_uuid(), waitpoint_id=wp, waitpoint_key=f"wpk:{wp}",
        timeout_at=timeout_at, timeout_behavior=behavior,
        resume_condition_json=C.signal_set(["go"]), resume_policy_json=C.resume_policy_json()))
    return wp


async def _tick(runner: ScanRunner) -> int:
    for lock in await runner.backend.redis.keys("ffw:scan:*"):
        await runner.backend.redis.delete(lock)
    return await runner.tick(runner.scanners[0])


@pytest.mark.parametrize(("behavior", "phase", "outcome"), [
    ("fail", "terminal", "failed"),
    ("cancel", "terminal", "cancelled"),
    ("expire", "terminal", "expired"),
    ("auto_resume", "runnable", ""),
])
async def test_due_suspension_gets_its_timeout_behaviour(
    url: str, behavior: str, phase: str, outcome: str
) -> None:
    async with Client.connect(url) as client:
        b = client.backend
        lease = await _claimed(client)
        now = await b.server_time_ms()
        await _suspend(b, lease, now + 150, behavior)
        runner = ScanRunner(b, [_pick("suspension_timeout")])
        assert await _tick(runner) == 0  # not due yet: nothing found
        assert (await _hash(b, ExecKeys(lease.execution_id).core))["lifecycle_phase"] \
            == "suspended"
        await anyio.sleep(0.2)
        assert await _tick(runner) == 1
        core = await _hash(b, ExecKeys(lease.execution_id).core)
        assert core["lifecycle_phase"] == phase
        if outcome:
            assert core["terminal_outcome"] == outcome
        score = await b.redis.zscore(ExecKeys(lease.execution_id).suspension_timeout,
                                     lease.execution_id)
        assert score is None
        assert await _tick(runner) == 0  # the index entry is gone: no second expiry


async def test_expired_pending_waitpoint_is_closed_as_never_committed(url: str) -> None:
    async with Client.connect(url) as client:
        b = client.backend
        lease = await _claimed(client)
        wp = new_uuid()
        now = await b.server_time_ms()
        await b.call(CreatePendingWaitpoint(
            eid=lease.execution_id, attempt_index=lease.attempt_index, waitpoint_id=wp,
            waitpoint_key=f"wpk:{wp}", expires_at=now + 100))
        k = ExecKeys(lease.execution_id)
        runner = ScanRunner(b, [_pick("pending_wp_expiry")])
        assert await _tick(runner) == 0
        await anyio.sleep(0.15)
        assert await _tick(runner) == 1
        record = await _hash(b, k.waitpoint(wp))
        assert record["state"] == "closed"
        assert record["close_reason"] == "never_committed"
        assert await b.redis.zscore(k.pending_waitpoint_expiry, wp) is None
        # The execution itself is untouched (spec 03 §5.4).
        assert (await _hash(b, k.core))["lifecycle_phase"] == "active"


async def test_index_entry_of_a_vanished_waitpoint_is_removed(url: str) -> None:
    async with Client.connect(url) as client:
        b = client.backend
        pk = PartitionKeys("{fp:3}")
        await b.redis.zadd(pk.pending_waitpoint_expiry, {"gone-wp": 1})
        runner = ScanRunner(b, [_pick("pending_wp_expiry")])
        assert await _tick(runner) == 1
        assert await b.redis.zscore(pk.pending_waitpoint_expiry, "gone-wp") is None
