"""Start one worker process on ``sample_tasks`` (used until/alongside the CLI):
``python tests/e2e/worker_main.py URL LEASE_TTL GRACE CONCURRENCY``."""

from __future__ import annotations

import logging
import os
import sys

import anyio

sys.path.insert(0, os.path.dirname(__file__))

from sample_tasks import TASKS

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.worker.worker import Worker


class _Client:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend


async def main(url: str, lease_ttl: float, grace: float, concurrency: int) -> None:
    backend = await Backend.open(url)
    try:
        worker = Worker(_Client(backend), TASKS, lease_ttl=lease_ttl, grace_period=grace,
                        concurrency=concurrency, scanner_interval_scale=0.2)
        print("ready", flush=True)
        await worker.run(install_signals=True)
    finally:
        await backend.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    anyio.run(main, sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
