"""Tasks of the failover test's worker process: each run appends a line to
the ledger file named by ``FFW_LEDGER`` (outside Redis, so a failover cannot
lose it)."""

from __future__ import annotations

import os

import anyio

from flowfabric_worker import TaskContext, task

LANES = [f"fo{i}" for i in range(6)]


@task(name="fo.record", lane="fo0")
async def record(ctx: TaskContext, n: int) -> int:
    await anyio.sleep(0.02)  # keep work in flight when the primary dies
    line = f"{n} {ctx.execution_id} {ctx.attempt_index}\n"
    async with await anyio.open_file(os.environ["FFW_LEDGER"], "a") as f:
        await f.write(line)
    return n
