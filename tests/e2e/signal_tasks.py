"""Tasks for the suspend/signal process tests, served by ``flowfabric-worker run
signal_tasks`` (the test puts this directory on PYTHONPATH).

``review`` has an external side effect inside a journaled step (an INCR on the
test redis, named by the execution id) so the test can count how often the
step really ran across suspensions, resumes and killed workers.
"""

from __future__ import annotations

import os

import anyio
import redis

from flowfabric_worker import TaskContext, task

LANE = "sigs"


def bump(eid: str) -> int:
    client = redis.Redis.from_url(os.environ["FFW_E2E_URL"])
    try:
        return int(client.incr(f"e2e:side:{eid}"))
    finally:
        client.close()


@task(name="e2e.sig.review", lane=LANE)
async def review(ctx: TaskContext, doc: str) -> str:
    n = await ctx.step("side_effect", bump, ctx.execution_id)
    if os.environ.get("FFW_E2E_HANG_AFTER_STEP") == "1":
        await anyio.sleep(3600)  # killed here by the test
    sig = await ctx.wait_for_signal("approve")
    return f"{doc}:{n}:{sig.payload}"


@task(name="e2e.sig.quick", lane=LANE)
async def quick(n: int) -> int:
    return n + 1
