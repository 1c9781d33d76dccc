"""``flowfabric-worker demo``: the whole story in a few seconds on memory://.

Four tasks are submitted: one succeeds, one fails once and is retried, one
raises :class:`Permanent` and is not retried, and one suspends until a
reviewer's signal arrives (the demo sends it with ``client.signal``). An
in-process worker runs them and the results are printed. On ``memory://`` the
worker initialises the waitpoint keystore itself.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import anyio

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.errors import Permanent, TaskFailed
from flowfabric_worker.tasks.retry import Retry
from flowfabric_worker.worker.worker import Worker

_seen: dict[str, int] = {}


@task(name="demo.greet", lane="demo")
async def greet(name: str) -> str:
    return f"hello, {name}"


@task(name="demo.flaky", lane="demo", retry=Retry(max_attempts=3, backoff="fixed", initial=0.2))
async def flaky(order_id: int) -> str:
    # Fails on its first attempt only, so the retry is visible.
    _seen[str(order_id)] = _seen.get(str(order_id), 0) + 1
    if _seen[str(order_id)] == 1:
        raise ConnectionError("payment gateway timed out")
    return f"order {order_id} charged on attempt {_seen[str(order_id)]}"


@task(name="demo.validate", lane="demo", retry=Retry(max_attempts=5))
def validate(email: str) -> bool:
    if "@" not in email:
        raise Permanent(f"not an email address: {email!r}")
    return True


@task(name="demo.publish", lane="demo")
async def publish(ctx: TaskContext, doc: str) -> str:
    # Suspends: the lease and the worker slot are released while it waits.
    decision = await ctx.wait_for_signal("approve", timeout=60)
    verdict = "approved" if decision.payload["ok"] else "rejected"
    return f"{doc} {verdict} by {decision.source_identity}"


async def run_demo(url: str = "memory://", out: TextIO = sys.stdout) -> int:
    """Run the story; returns 0 when every outcome is the expected one."""
    _seen.clear()

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    async with Client.connect(url) as client:
        runs: dict[str, RunHandle[Any]] = {
            "greet": await greet.submit(client, "world"),
            "flaky": await flaky.submit(client, 42),
            "validate": await validate.submit(client, "nobody"),
            "publish": await publish.submit(client, "release-notes"),
        }
        for label, run in runs.items():
            say(f"submitted {label:<8} {run.id}")
        tasks: list[Any] = [greet, flaky, validate, publish]
        worker = Worker(client, tasks=tasks, lanes=["demo"], concurrency=4,
                        lease_ttl=5, grace_period=1, scanner_interval_scale=0.05)
        ok = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(20):
                say(f"greet    -> {await runs['greet'].result()}")
                say(f"flaky    -> {await runs['flaky'].result()}")
                info = await runs["flaky"].info()
                say(f"            (attempts: {info.total_attempt_count}, "
                    f"retries: {info.retry_count})")
                ok = ok and info.retry_count == 1
                try:
                    await runs["validate"].result()
                    ok = False
                except TaskFailed as exc:
                    info = await runs["validate"].info()
                    first = exc.reason.splitlines()[0] if exc.reason else ""
                    say(f"validate -> failed permanently: {first} "
                        f"(attempts: {info.total_attempt_count})")
                    ok = ok and info.total_attempt_count == 1
                await runs["publish"].wait_for("suspended")
                waiting = await client.pending_waitpoints(runs["publish"].id)
                say(f"publish  -> suspended on waitpoint {waiting[0].waitpoint_key} "
                    f"(token {waiting[0].token})")
                sent = await client.signal(runs["publish"].id, "approve", {"ok": True},
                                           source="reviewer")
                say(f"            signal approve: {sent.status}")
                say(f"publish  -> {await runs['publish'].result()}")
                ok = ok and sent.resumed
            worker.stop()
    say("demo finished" + ("" if ok else " WITH UNEXPECTED OUTCOMES"))
    return 0 if ok else 1


def main() -> int:
    return anyio.run(run_demo)
