"""Fan out from inside a task: a research task spawns 20 child tasks, waits
for all of them without holding a worker slot, then hands their findings to
one more child that writes the report.

``ctx.child(task, *args)`` spawns a child (an execution of its own, retried,
leased and visible like any other); ``ctx.gather`` waits for many at once.
While the parent waits its lease and worker slot are released — this example
runs everything with a single slot, which only works because of that — and
once the children are done it runs again from the top: the spawns are
journaled, so it gets the same children back and none is created twice.

Runs self-contained on ``memory://`` with an in-process worker::

    python examples/fanout.py            # or: ... redis://localhost:6379
    FLOWFABRIC_URL=redis+cluster://127.0.0.1:7000 python examples/fanout.py
"""

from __future__ import annotations

import os
import random
import sys

import anyio

from flowfabric_worker import Client, TaskContext, flow, task
from flowfabric_worker.worker.worker import Worker

ANGLES = 20


@task(name="examples.investigate", lane="research")
async def investigate(topic: str, angle: int) -> dict[str, object]:
    rng = random.Random(f"{topic}/{angle}")
    await anyio.sleep(rng.uniform(0.005, 0.02))  # a search, a model call...
    return {"angle": angle, "score": rng.randint(1, 100)}


@task(name="examples.write_report", lane="research")
async def write_report(topic: str, findings: list[dict[str, object]]) -> str:
    best = max(findings, key=lambda f: int(str(f["score"])))
    return f"{topic}: {len(findings)} angles, strongest is #{best['angle']} ({best['score']})"


@flow(name="examples.research", lane="research")
async def research(ctx: TaskContext, topic: str) -> str:
    findings = await ctx.gather(*(ctx.child(investigate, topic, i) for i in range(ANGLES)))
    ctx.log.info("all %d findings in", len(findings))
    return await ctx.child(write_report, topic, findings)


async def main(url: str = "memory://") -> int:
    async with Client.connect(url) as client:
        run = await research.submit(client, "durable execution")
        worker = Worker(client, tasks=[research, investigate, write_report], lanes=["research"],
                        concurrency=1, lease_ttl=5, grace_period=1, scanner_interval_scale=0.05)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            report = await run.result(timeout=60)
            worker.stop()
        parent = await run.info()
        assert parent.flow_id is not None
        state = await client.flow_handle(parent.flow_id).state()
    print(f"report:  {report}")
    print(f"flow:    {state.state}, members {dict(sorted(state.counts.items()))}")
    print(f"parent:  {parent.total_attempt_count} attempt(s)")
    ok = (report.startswith("durable execution: 20 angles") and state.settled
          and state.counts == {"completed": ANGLES + 2} and parent.total_attempt_count == 1)
    print("ok" if ok else "UNEXPECTED OUTPUT")
    return 0 if ok else 1


if __name__ == "__main__":
    # The server: the first argument, else FLOWFABRIC_URL, else memory://.
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FLOWFABRIC_URL", "memory://")
    sys.exit(anyio.run(main, url))
