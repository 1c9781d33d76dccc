"""Stream LLM-style tokens from a task and print them live.

A task "generates" a few hundred fake tokens with ``ctx.stream`` (batched:
no round trip per token), reports progress in a summary document with
``ctx.summary`` and ends with a structured ``ctx.event``. A consumer started
right after submission prints the tokens as they arrive with
``run.frames()`` and stops by itself when the attempt ends; then it reads
the final summary with ``run.summary()``.

Runs self-contained on ``memory://`` with an in-process worker::

    python examples/llm_stream.py            # or: ... redis://localhost:6379
    FLOWFABRIC_URL=redis+cluster://127.0.0.1:7000 python examples/llm_stream.py
"""

from __future__ import annotations

import json
import os
import random
import sys

import anyio

from flowfabric_worker import Client, TaskContext, task
from flowfabric_worker.protocol.streams import StreamMode
from flowfabric_worker.worker.worker import Worker

WORDS = ("the quick brown fox jumps over the lazy dog while durable streams "
         "carry every token from worker to reader in order").split()


@task(name="examples.generate", lane="llm")
async def generate(ctx: TaskContext, prompt: str, n_tokens: int) -> dict[str, int]:
    rng = random.Random(prompt)
    await ctx.summary({"prompt": prompt, "model": {"name": "fake-llm", "temperature": 0.7},
                       "tokens": 0, "status": "generating"})
    for i in range(n_tokens):
        await ctx.stream(rng.choice(WORDS) + " ")
        if i % 50 == 49:
            await ctx.summary({"tokens": i + 1})
            # Live-only progress: cheap, may be trimmed, never needed later.
            await ctx.event("progress", {"tokens": i + 1}, live=True)
        await anyio.sleep(0.002)  # a model does not answer instantly
    # None deletes a key (JSON Merge Patch); the finished document stays small.
    await ctx.summary({"tokens": n_tokens, "status": "done", "model": {"temperature": None}})
    await ctx.event("finished", {"tokens": n_tokens})
    return {"tokens": n_tokens}


async def main(url: str = "memory://") -> int:
    n = 300
    async with Client.connect(url) as client:
        run = await generate.submit(client, "tell me about streams", n)
        worker = Worker(client, tasks=[generate], lanes=["llm"], concurrency=2,
                        lease_ttl=5, grace_period=1, scanner_interval_scale=0.05)
        tokens = 0
        events: list[dict[str, object]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(30):
                # Started before the task runs: replays nothing, then tails live
                # and ends by itself once the attempt completes.
                async for frame in run.frames():
                    if frame.frame_type == "stdout":
                        tokens += 1
                        sys.stdout.write(frame.text)
                        sys.stdout.flush()
                    elif frame.frame_type == "event" and frame.mode is not StreamMode.BEST_EFFORT:
                        events.append(json.loads(frame.text))
                result = await run.result()
            worker.stop()
        summary = await run.summary()
    print()
    print(f"result:  {result}")
    print(f"events:  {events}")
    print(f"summary: v{summary.version} {json.dumps(summary.document, sort_keys=True)}")
    ok = (tokens == n and result == {"tokens": n}
          and events == [{"event": "finished", "data": {"tokens": n}}]
          and summary.document.get("status") == "done"
          and summary.document.get("model") == {"name": "fake-llm"})
    print("ok" if ok else "UNEXPECTED OUTPUT")
    return 0 if ok else 1


if __name__ == "__main__":
    # The server: the first argument, else FLOWFABRIC_URL, else memory://.
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FLOWFABRIC_URL", "memory://")
    sys.exit(anyio.run(main, url))
