"""Tasks for the CLI signal story (``flowfabric-worker run signal_cli_tasks``;
the test puts this directory on PYTHONPATH)."""

from __future__ import annotations

import os

import anyio
import redis

from flowfabric_worker import TaskContext, task

LANE = "sigcli"


def _flag(eid: str) -> bool:
    client = redis.Redis.from_url(os.environ["FFW_E2E_URL"])
    try:
        return bool(client.exists(f"e2e:go:{eid}"))
    finally:
        client.close()


@task(name="e2e.sigcli.approve", lane=LANE)
async def approve(ctx: TaskContext, doc: str) -> str:
    sig = await ctx.wait_for_signal("approve", timeout=120)
    return f"{doc}:{sig.payload['ok']}:{sig.source_identity}"


@task(name="e2e.sigcli.early", lane=LANE)
async def early(ctx: TaskContext) -> str:
    wp = await ctx.waitpoint("callback")
    # Hand the waitpoint out, then keep working until the test says go; the
    # signal arrives in between and is buffered on the pending waitpoint.
    while not _flag(ctx.execution_id):  # noqa: ASYNC110 - set by the test process
        await anyio.sleep(0.05)
    sig = await ctx.wait_for_signal("paid", waitpoint=wp, timeout=120)
    return f"paid:{sig.payload}"
