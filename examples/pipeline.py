"""A static flow whose members hand their results to the next ones.

``flow.add(task, after=[node], input_from=node)`` makes ``node``'s result
the member's argument, typed by the task's annotation: the edge carries it
(FlowFabric's ``data_passing_ref``), nothing is re-submitted by hand. Here a
fetched page goes to a parser (a plain, sync function: it reports progress
and runs a durable step through ``ctx.sync``), whose statistics go to a
summariser, while an archiver takes the page in parallel::

    fetch ──> parse (sync) ──> summarize
      └─────> archive

Runs self-contained on ``memory://`` with an in-process worker::

    python examples/pipeline.py            # or: ... redis://localhost:6379
    FLOWFABRIC_URL=redis+cluster://127.0.0.1:7000 python examples/pipeline.py
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import anyio
import msgspec

from flowfabric_worker import Client, TaskContext, task
from flowfabric_worker.worker.worker import Worker

LANE = "pipeline"


class Page(msgspec.Struct):
    url: str
    text: str


class Stats(msgspec.Struct):
    url: str
    words: int
    top: list[str]


@task(name="examples.fetch", lane=LANE)
async def fetch(url: str) -> Page:
    await anyio.sleep(0.01)  # an HTTP request
    text = "the durable worker claims the task and the task streams and the worker renews"
    return Page(url=url, text=text)


def tokenize(text: str) -> list[str]:
    return text.lower().split()


@task(name="examples.parse", lane=LANE)
def parse(ctx: TaskContext, page: Page) -> Stats:
    # A sync task runs in a worker thread with the same context.
    ctx.progress(10, "tokenizing")
    words = ctx.sync.step("tokenize", tokenize, page.text)  # journaled: runs once
    ctx.progress(90, "counting")
    top = [w for w, _ in Counter(words).most_common(3)]
    return Stats(url=page.url, words=len(words), top=top)


@task(name="examples.summarize", lane=LANE)
async def summarize(stats: Stats) -> str:
    return f"{stats.url}: {stats.words} words, mostly {', '.join(stats.top)}"


@task(name="examples.archive", lane=LANE)
async def archive(page: Page) -> str:
    return f"archived {len(page.text)} bytes of {page.url}"


async def main(url: str = "memory://") -> int:
    async with Client.connect(url) as client:
        flow = client.flow()
        page = flow.add(fetch, "https://example.com/post")
        stats = flow.add(parse, after=[page], input_from=page)
        summary = flow.add(summarize, after=[stats], input_from=stats)
        stored = flow.add(archive, after=[page], input_from=page)
        worker = Worker(client, tasks=[fetch, parse, summarize, archive], lanes=[LANE],
                        lease_ttl=5, grace_period=1, scanner_interval_scale=0.05)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            handle = await flow.submit()
            state = await handle.wait(timeout=60)
            worker.stop()
        text = await handle.run(summary).result()
        archived = await handle.run(stored).result()
        parsed = await handle.run(stats).info()
    print(f"summary:  {text}")
    print(f"archive:  {archived}")
    print(f"parse:    progress {parsed.progress_pct}% ({parsed.progress_message})")
    print(f"flow:     {state.state}, members {dict(sorted(state.counts.items()))}")
    ok = (text == "https://example.com/post: 14 words, mostly the, worker, task"
          and archived.startswith("archived 77 bytes") and state.counts == {"completed": 4})
    print("ok" if ok else "UNEXPECTED OUTPUT")
    return 0 if ok else 1


if __name__ == "__main__":
    # The server: the first argument, else FLOWFABRIC_URL, else memory://.
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FLOWFABRIC_URL", "memory://")
    sys.exit(anyio.run(main, url))
