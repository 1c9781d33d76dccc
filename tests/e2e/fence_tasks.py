"""Tasks of ``test_fence_processes.py``: some work, then ``ctx.ensure_lease()``,
then the guarded side effect, then return.

The side effect is a line in a ledger outside Redis: one file per process
in ``$FFW_FENCE_LEDGER_DIR``, one ``write(2)`` per line on an ``O_APPEND``
descriptor. A body writes ``start`` when it begins, then ``effect`` (the
side effect) if ``ensure_lease()`` passed, or ``fenced`` if it raised
``LeaseLost`` (which it lets propagate).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import anyio

from flowfabric_worker import LeaseLost, TaskContext, task

LANE = "fence-e2e"


def record(event: str, ctx: TaskContext) -> None:
    directory = os.environ.get("FFW_FENCE_LEDGER_DIR")
    if not directory:
        return
    line = json.dumps({"eid": ctx.execution_id, "attempt": ctx.attempt_index, "event": event,
                       "pid": os.getpid(), "t": time.time()}) + "\n"
    fd = os.open(os.path.join(directory, f"ledger-{os.getpid()}.jsonl"),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def guarded_effect(ctx: TaskContext) -> None:
    try:
        ctx.ensure_lease()
    except LeaseLost:
        record("fenced", ctx)
        raise
    record("effect", ctx)


def _result(ctx: TaskContext) -> dict[str, Any]:
    return {"pid": os.getpid(), "attempt": ctx.attempt_index}


@task(name="fence_e2e.guarded", lane=LANE)
async def guarded(ctx: TaskContext, seconds: float) -> dict[str, Any]:
    record("start", ctx)
    await anyio.sleep(seconds)  # the work
    guarded_effect(ctx)
    return _result(ctx)


@task(name="fence_e2e.guarded_sync", lane=LANE)
def guarded_sync(ctx: TaskContext, seconds: float) -> dict[str, Any]:
    record("start", ctx)
    time.sleep(seconds)  # the work; a cancelled attempt's thread runs on
    guarded_effect(ctx)
    return _result(ctx)


@task(name="fence_e2e.guarded_shielded", lane=LANE)
async def guarded_shielded(ctx: TaskContext, seconds: float) -> dict[str, Any]:
    record("start", ctx)
    with anyio.CancelScope(shield=True):  # work a drain's cancellation cannot interrupt
        await anyio.sleep(seconds)
    guarded_effect(ctx)
    return _result(ctx)
