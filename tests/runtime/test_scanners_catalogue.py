"""The standalone scanners against the real library, on both backends:
delayed promotion, lease expiry marking, attempt timeout and deadline expiry."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.engine.roles import default_scanners
from flowfabric_worker.engine.runner import Scanner, ScanRunner
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import ClaimExecution, IssueClaimGrant
from flowfabric_worker.worker.backend_port import BackendEngine

pytestmark = pytest.mark.anyio


@task(name="scanners.noop")
async def noop() -> int:
    return 1


@task(name="scanners.slow", timeout=0.1)
async def slow() -> int:
    return 1


@task(name="scanners.bounded", deadline=0.1)
async def bounded() -> int:
    return 1


def _pick(name: str) -> Scanner:
    return next(s for s in default_scanners() if s.name == name)


async def _core(client: Client, eid: str) -> dict[str, str]:
    raw: dict[Any, Any] = await client.backend.redis.hgetall(ExecKeys(eid).core)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_delayed_execution_is_promoted_when_due(url: str) -> None:
    async with Client.connect(url) as client:
        # The client files only delays of 1 s or more into the delayed set.
        handle = await noop.submit(client, delay=1.05)
        k = ExecKeys(handle.id)
        runner = ScanRunner(client.backend, [_pick("delayed_promoter")], lanes=["default"])
        scanner = runner.scanners[0]
        assert await runner.tick(scanner) == 0  # not due yet
        assert (await _core(client, handle.id))["eligibility_state"] == "not_eligible_until_time"
        await anyio.sleep(1.1)
        for lock in await client.backend.redis.keys("ffw:scan:*"):
            await client.backend.redis.delete(lock)
        assert await runner.tick(scanner) == 1
        core = await _core(client, handle.id)
        assert core["eligibility_state"] == "eligible_now"
        assert await client.backend.redis.zscore(k.lane_eligible("default"), handle.id) is not None
        assert await client.backend.redis.zscore(k.lane_delayed("default"), handle.id) is None


async def test_expired_lease_is_marked_reclaimable(url: str) -> None:
    async with Client.connect(url) as client:
        handle = await noop.submit(client)
        engine = BackendEngine(client.backend)
        await engine.claim(handle.id, "default", "w1", "w1-i", frozenset(), 100, 5000)
        await anyio.sleep(0.2)
        runner = ScanRunner(client.backend, [_pick("lease_expiry")])
        assert await runner.tick(runner.scanners[0]) >= 1
        core = await _core(client, handle.id)
        assert core["ownership_state"] == "lease_expired_reclaimable"
        assert core["lifecycle_phase"] == "active"


async def test_attempt_timeout_expires_the_execution(url: str) -> None:
    async with Client.connect(url) as client:
        handle = await slow.submit(client)
        # The claimer supplies the attempt timeout (spec 02 §3.4), which is what
        # puts the attempt into the attempt_timeout index.
        await client.backend.issue_claim_grant(IssueClaimGrant(
            eid=handle.id, lane_id="default", worker_id="w1", worker_instance_id="w1-i",
            grant_ttl_ms=5000, worker_capabilities_csv=""))
        await client.backend.claim_execution(ClaimExecution(
            eid=handle.id, lane_id="default", worker_id="w1", worker_instance_id="w1-i",
            lease_id=str(uuid.uuid4()), attempt_id=str(uuid.uuid4()), lease_ttl_ms=30_000,
            attempt_index=0, attempt_timeout_ms=100))
        await anyio.sleep(0.2)
        runner = ScanRunner(client.backend, [_pick("attempt_timeout")])
        assert await runner.tick(runner.scanners[0]) == 1
        core = await _core(client, handle.id)
        assert core["lifecycle_phase"] == "terminal"
        assert core["terminal_outcome"] == "expired"


async def test_execution_deadline_expires_a_waiting_execution(url: str) -> None:
    async with Client.connect(url) as client:
        handle = await bounded.submit(client)
        await anyio.sleep(0.2)
        runner = ScanRunner(client.backend, [_pick("execution_deadline")])
        assert await runner.tick(runner.scanners[0]) == 1
        core = await _core(client, handle.id)
        assert core["lifecycle_phase"] == "terminal"
        assert core["terminal_outcome"] == "expired"


async def test_a_scanner_without_configured_lanes_learns_them_from_submissions(url: str) -> None:
    # A `flowfabric-worker scan` process has no --lane: the submit registered
    # the lane in ff:idx:lanes, so the lane-scoped promoter still finds it.
    async with Client.connect(url) as client:
        await client.backend.redis.delete("ff:idx:lanes")
        handle = await noop.submit(client, delay=1.05)
        assert await client.backend.redis.sismember("ff:idx:lanes", "default") == 1
        runner = ScanRunner(client.backend, [_pick("delayed_promoter")])  # no lanes
        await anyio.sleep(1.1)
        assert await runner.tick(runner.scanners[0]) == 1
        assert (await _core(client, handle.id))["eligibility_state"] == "eligible_now"
