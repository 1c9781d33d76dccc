"""The no-op task ``bench/processes.py`` drains (imported by the workers it starts)."""

from __future__ import annotations

from peers.base import bump  # bench/ is on the workers' PYTHONPATH

from flowfabric_worker import task


@task(name="bench.proc_noop", lane="bench-procs")
async def noop() -> int:
    await bump()
    return 1
