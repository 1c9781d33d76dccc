"""Helpers for worker tests on a real backend: submit without the client,
read outcomes, run a worker until a condition holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from flowfabric_worker import TaskDefinition
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.ids import mint_execution_id
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import CreateExecution
from flowfabric_worker.worker.worker import Worker


async def submit(b: Backend, t: TaskDefinition[Any, Any], *args: Any, **kw: Any) -> str:
    """Create one execution of ``t`` the way the client does (spec 02 §3.1)."""
    eid = mint_execution_id(lane_id=t.lane)
    await b.call(CreateExecution(
        eid=eid, namespace="ns", lane_id=t.lane, execution_kind=t.name,
        priority=t.priority, policy_json=t.policy_json(),
        input_payload=t.encode_args(*args, **kw)))
    return eid


async def core(b: Backend, eid: str) -> dict[str, str]:
    raw = await b.redis.hgetall(ExecKeys(eid).core)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def attempts(b: Backend, eid: str) -> list[dict[str, str]]:
    out = []
    for i in await b.attempt_indexes(eid):
        raw = await b.redis.hgetall(ExecKeys(eid).attempt(i))
        out.append({k.decode(): v.decode() for k, v in raw.items()})
    return out


async def state(b: Backend, eid: str) -> str:
    return (await core(b, eid)).get("public_state", "")


async def run_until(worker: Worker, cond: Callable[[], Awaitable[bool]],
                    limit: float = 10.0) -> None:
    """Run ``worker`` until ``cond()`` is true, then stop it and wait for drain."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(limit):
            while not await cond():  # noqa: ASYNC110 - polling Redis state
                await anyio.sleep(0.02)
        worker.stop()


def lane_worker(client: Any, tasks: Sequence[Any], lane: str, **kw: Any) -> Worker:
    """A worker on one lane with the settings the in-process tests share:
    short leases, scanners at 1/20 of their intervals, a short drain."""
    kw.setdefault("lease_ttl", 2.0)
    kw.setdefault("scanner_interval_scale", 0.05)
    kw.setdefault("grace_period", 1.0)
    return Worker(client, list(tasks), lanes=[lane], **kw)
