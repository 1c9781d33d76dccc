"""Tasks run by the fault-injection run (``bench/chaos.py``).

Each task body appends a ``start`` line when it begins and an ``end`` line
just before it returns to a ledger **outside Redis**: one append-only file per
worker process, ``$FFW_CHAOS_LEDGER_DIR/ledger-<worker id>-<pid>.jsonl``. Every
line is one ``os.write`` on an ``O_APPEND`` descriptor (no user-space buffer),
so a ``kill -9`` keeps every line written before it and never half a line
interleaved with another.

The result carries the attempt index and the worker that produced it, so the
run can check that the stored result comes from the attempt Redis recorded as
the successful one.

The *guarded* variants (``bench/chaos.py --guarded``) stand for a task with a
side effect that must not run from a stale attempt: after the body's work
they call ``ctx.ensure_lease()`` and, only if it passes, write an ``effect``
line (the side effect) right before ``end``; if it raises ``LeaseLost`` they
write ``fenced`` and let it propagate (docs/operations.md, "Leases and the
worker-side fence").
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import anyio

from flowfabric_worker import LeaseLost, TaskContext, task

LANE = "chaos"

_fd: int | None = None
_fd_pid = 0


def _worker_id() -> str:
    return os.environ.get("FLOWFABRIC_WORKER_ID", "")


def _ledger_fd() -> int | None:
    global _fd, _fd_pid
    directory = os.environ.get("FFW_CHAOS_LEDGER_DIR")
    if not directory:
        return None
    if _fd is None or _fd_pid != os.getpid():
        path = os.path.join(directory, f"ledger-{_worker_id()}-{os.getpid()}.jsonl")
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fd_pid = os.getpid()
    return _fd


def record(event: str, ctx: TaskContext) -> None:
    """Append one ledger line (a single write(2) on an O_APPEND descriptor)."""
    fd = _ledger_fd()
    if fd is None:
        return
    line = json.dumps({
        "eid": ctx.execution_id, "attempt": ctx.attempt_index, "event": event,
        "pid": os.getpid(), "worker": _worker_id(), "t": time.time(),
    }, separators=(",", ":")) + "\n"
    os.write(fd, line.encode())


def _result(ctx: TaskContext, i: int) -> dict[str, Any]:
    return {"i": i, "eid": ctx.execution_id, "attempt": ctx.attempt_index,
            "worker": _worker_id(), "pid": os.getpid()}


@task(name="chaos.work", lane=LANE)
async def work(ctx: TaskContext, i: int, ms: int) -> dict[str, Any]:
    """An async body that sleeps ``ms`` milliseconds."""
    record("start", ctx)
    await anyio.sleep(ms / 1000)
    record("end", ctx)
    return _result(ctx, i)


@task(name="chaos.work_sync", lane=LANE)
def work_sync(ctx: TaskContext, i: int, ms: int) -> dict[str, Any]:
    """The same as a sync body (run in a worker thread)."""
    record("start", ctx)
    time.sleep(ms / 1000)
    record("end", ctx)
    return _result(ctx, i)


def guarded_effect(ctx: TaskContext) -> None:
    """The side effect, guarded the documented way: ``ensure_lease()`` right
    before it, nothing in between but building the ledger line."""
    try:
        if not os.environ.get("FFW_CHAOS_NO_FENCE"):  # chaos.py --no-fence: negative control
            ctx.ensure_lease()
    except LeaseLost:
        record("fenced", ctx)
        raise
    record("effect", ctx)


@task(name="chaos.guarded", lane=LANE)
async def guarded(ctx: TaskContext, i: int, ms: int) -> dict[str, Any]:
    """``work`` with a guarded side effect after the sleep."""
    record("start", ctx)
    await anyio.sleep(ms / 1000)
    guarded_effect(ctx)
    record("end", ctx)
    return _result(ctx, i)


@task(name="chaos.guarded_sync", lane=LANE)
def guarded_sync(ctx: TaskContext, i: int, ms: int) -> dict[str, Any]:
    """``work_sync`` with a guarded side effect after the sleep."""
    record("start", ctx)
    time.sleep(ms / 1000)
    guarded_effect(ctx)
    record("end", ctx)
    return _result(ctx, i)
