"""Tasks of the observability command-line test (``run obs_tasks``)."""

from __future__ import annotations

from flowfabric_worker import Retry, TaskContext, task

LANE = "obs-cli"


@task(name="obs_cli.ok", lane=LANE)
async def ok(ctx: TaskContext, n: int) -> int:
    ctx.log.info("task says hello")
    return n


@task(name="obs_cli.flaky", lane=LANE, retry=Retry(max_attempts=3, initial=0.05))
async def flaky(ctx: TaskContext) -> str:
    if ctx.attempt_index == 0:
        raise ValueError("first attempt fails")
    return "ok"


@task(name="obs_cli.broken", lane=LANE)
async def broken() -> None:
    raise ValueError("boom")
