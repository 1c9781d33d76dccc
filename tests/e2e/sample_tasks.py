"""Tasks run by the worker-process tests (importable as ``tests.e2e.sample_tasks``
or by file path)."""

from __future__ import annotations

import os

import anyio

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.context.task_context import TaskContext


@task(name="e2e.echo")
async def echo(i: int) -> int:
    return i


@task(name="e2e.sleepy")
async def sleepy(ctx: TaskContext, seconds: float) -> str:
    """Sleeps on the first attempt only, so a killed worker leaves it mid-task."""
    if ctx.attempt_index == 0:
        await anyio.sleep(seconds)
    return "slept"


@task(name="e2e.stubborn")
async def stubborn(seconds: float) -> str:
    """Outlasts any grace period in a process started with FFW_E2E_STUBBORN=1."""
    if os.environ.get("FFW_E2E_STUBBORN") == "1":
        await anyio.sleep(seconds)
    return "finished"


@task(name="e2e.quick")
def quick(n: int) -> int:
    import time

    time.sleep(0.3)
    return n + 1


TASKS = [echo, sleepy, stubborn, quick]
