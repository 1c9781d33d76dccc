"""Tasks of the flow tests, run in-process and by ``flowfabric-worker run``
subprocesses (importable as ``flow_tasks`` with this directory on the path)."""

from __future__ import annotations

import anyio

from flowfabric_worker.authoring.decorators import flow, task
from flowfabric_worker.client.flow_graph import any_of
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.errors import ChildFailed, Permanent

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




@task(name="flows.square", lane=LANE)
async def square(n: int) -> int:
    return n * n


@task(name="flows.nap", lane=LANE)
async def nap(i: int) -> int:
    await anyio.sleep(0.2)
    return i


@flow(name="flows.naps", lane=LANE)
async def naps(ctx: TaskContext, n: int) -> list[int]:
    """``n`` children that take a while, so the parent waits long enough to
    be interrupted."""
    return await ctx.gather(*(ctx.child(nap, i) for i in range(n)))


@flow(name="flows.fanout", lane=LANE)
async def fanout(ctx: TaskContext, n: int) -> int:
    """Spawns ``n`` children, waits for all of them (one wait), sums them."""
    values = await ctx.gather(*(ctx.child(square, i) for i in range(n)))
    return sum(values)


@flow(name="flows.pipeline", lane=LANE)
async def pipeline(ctx: TaskContext) -> list[str]:
    """Sequential children, a DAG among children, and a failing child."""
    first = await ctx.child(step, "first")
    left = ctx.submit(step, "left")
    right = ctx.submit(boom, "right")
    joined = ctx.submit(step, "joined", after=[left, right], join=any_of())
    strict = ctx.submit(step, "strict", after=[left, right])
    got = await ctx.gather(left, joined, strict, return_exceptions=True)
    try:
        await ctx.child(boom, "again")
        caught = "no"
    except ChildFailed as exc:
        caught = exc.state
    return [first, *(g if isinstance(g, str) else f"failed:{g.state}" for g in got), caught]



@task(name="flows.await_go", lane=LANE)
async def await_go(ctx: TaskContext) -> str:
    """Suspends until signal ``go`` (lease and slot released while waiting)."""
    sig = await ctx.wait_for_signal("go")
    return str(sig.name)


@task(name="flows.first_attempt_hangs", lane=LANE)
async def first_attempt_hangs(ctx: TaskContext, name: str) -> str:
    """Hangs on its first attempt only, so a killed worker leaves it mid-task."""
    if ctx.attempt_index == 0:
        await anyio.sleep(60)
    return name


TASKS = [step, boom, slow, square, nap, naps, fanout, pipeline, first_attempt_hangs, await_go]
