"""flowfabric_worker (this project): ``@task`` definitions, ``Client``, ``Worker``."""

from __future__ import annotations

from flowfabric_worker import Client, Retry, TaskContext, task
from flowfabric_worker.worker.worker import Worker

from .base import RESULT_TIMEOUT, Peer, announce_ready, bump


@task(name="bench.noop")
async def noop() -> int:
    await bump()
    return 1


@task(name="bench.flaky", retry=Retry(max_attempts=2, backoff="fixed", initial=0.0))
async def flaky(ctx: TaskContext) -> int:
    if ctx.attempt_index == 0:  # attempts are numbered from 0
        raise RuntimeError("first attempt fails")
    await bump()
    return 1


class FfwPeer(Peer):
    name = "ffw"
    wait_method = "run.result(): push (one shared pub/sub listener, ffw:done:<eid>)"
    worker_wakeup = "push (wake channel published with the create), leases + scanners on"
    retry_method = ("Retry(max_attempts=2, backoff='fixed', initial=0): "
                    "retry scheduled with 0 ms delay")
    packages = ("flowfabric-worker", "redis", "hiredis")

    async def open(self, url: str) -> None:
        self.client = await Client.open(url)

    async def close(self) -> None:
        await self.client.close()

    async def submit(self) -> None:
        await noop.submit(self.client)

    async def submit_flaky(self) -> None:
        await flaky.submit(self.client)

    async def roundtrip(self) -> None:
        handle = await noop.submit(self.client)
        await handle.result(timeout=RESULT_TIMEOUT)

    async def submit_batch(self, count: int) -> bool:
        # One call per batch: items are argument tuples (noop takes none).
        await self.client.submit_many(noop, [()] * count)
        return True

    async def run_worker(self, url: str, concurrency: int) -> None:
        async with Client.connect(url) as client:
            worker = Worker(client, tasks=[noop, flaky], concurrency=concurrency, lease_ttl=30.0)
            announce_ready()
            await worker.run(install_signals=True)
