"""Tasks of the flow tests, run in-process and by ``flowfabric-worker run``
subprocesses (importable as ``flow_tasks`` with this directory on the path)."""

from __future__ import annotations

import anyio

from flowfabric_worker.errors import Permanent
from flowfabric_worker.task import task

LANE = "flows"


@task(name="flows.step", lane=LANE)
async def step(name: str) -> str:
    await anyio.sleep(0.05)
    return name


@task(name="flows.boom", lane=LANE)
async def boom(name: str) -> str:
    raise Permanent(f"{name} failed on purpose")


@task(name="flows.slow", lane=LANE)
async def slow(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "slow done"


TASKS = [step, boom, slow]
