"""Tasks of the dashboard tests: examples/approval.py's ``deploy`` (its
directory on the path), a task that streams tokens slowly, and flows.
Run in-process and by ``flowfabric-worker run dash_tasks --dashboard-port``."""

from __future__ import annotations

import anyio
from approval import Decision, deploy

from flowfabric_worker.authoring.decorators import flow, task
from flowfabric_worker.context.task_context import TaskContext

__all__ = ["Decision", "announce", "deploy", "fan", "nap", "release", "shout"]

LANE = "deploys"
#: Streamed once: the page must show it as text (an LLM's output is untrusted HTML).
HOSTILE = '<img src=x onerror="window.__ffw_xss=1">'


@task(name="dash.announce", lane=LANE)
async def announce(ctx: TaskContext, service: str, tokens: int = 12, pause: float = 0.4) -> int:
    """The task after a deploy: streams release notes a token at a time."""
    await ctx.stream(f"release notes for {service}: {HOSTILE}\n")
    for i in range(tokens):
        await ctx.stream(f"token-{i} ")
        await ctx.progress(round(100 * (i + 1) / tokens), f"{i + 1}/{tokens} tokens")
        await anyio.sleep(pause)
    await ctx.summary({"tokens": tokens})
    return tokens


@flow(name="dash.release", lane=LANE)
async def release(ctx: TaskContext, service: str, version: str) -> str:
    """Deploy (waits for a reviewer's approval), then announce."""
    outcome = await ctx.child(deploy, service, version, 120.0)
    await ctx.child(announce, service)
    return str(outcome)


@task(name="dash.nap", lane=LANE)
async def nap(i: int, seconds: float) -> int:
    await anyio.sleep(seconds)
    return i


@flow(name="dash.fan", lane=LANE)
async def fan(ctx: TaskContext, n: int, seconds: list[float]) -> int:
    """``n`` children sleeping ``seconds[i]`` each; fails when one is cancelled."""
    done = await ctx.gather(*(ctx.child(nap, i, seconds[i]) for i in range(n)),
                            return_exceptions=True)
    return sum(1 for d in done if isinstance(d, int))


@task(name="dash.<b>shout</b>", lane=LANE)
async def shout(ctx: TaskContext) -> str:
    await ctx.stream("<script>window.__ffw_xss=2</script>")
    return "<b>done</b>"
