"""One worker process serving a task scheduled ``Every(seconds=1)`` (the
real-process schedule test): ``python schedule_worker_main.py URL``. Prints
``ready`` once the worker runs (its schedule registered)."""

from __future__ import annotations

import logging
import sys

import anyio

from flowfabric_worker import Client, Every, Worker, task


@task(name="tests.every_second", lane="sched-e2e", schedule=Every(seconds=1))
async def every_second() -> str:
    return "tick"


async def main(url: str) -> None:
    async with Client.connect(url) as client:
        worker = Worker(client, [every_second], lease_ttl=5.0, grace_period=2.0,
                        concurrency=4)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            handle = client.schedule_handle("tests.every_second")
            while True:
                try:
                    await handle.info()
                    break
                except Exception:
                    await anyio.sleep(0.05)
            print("ready", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    anyio.run(main, sys.argv[1])
