"""Tasks the testing-toolkit tests run (importable by name from any process)."""

from __future__ import annotations

import msgspec

from flowfabric_worker import Retry, SignalTimeout, TaskContext, task

ATTEMPTS: list[int] = []


class Decision(msgspec.Struct):
    approved: bool
    note: str = ""


@task(name="toolkit.approve", lane="toolkit")
async def approve(ctx: TaskContext, change: str) -> str:
    built = await ctx.step("build", lambda: f"{change}.tar.gz")
    try:
        decision = await ctx.wait_for_signal("approve", timeout=24 * 3600,
                                             on_timeout="auto_resume", payload_type=Decision)
    except SignalTimeout:
        return f"{change}: nobody approved, fell back"
    return f"{change}: {'deployed ' + built if decision.payload.approved else 'rejected'}"


@task(name="toolkit.flaky", lane="toolkit",
      retry=Retry(max_attempts=5, initial=60.0, maximum=3600.0, multiplier=2.0))
async def flaky(n: int) -> int:
    ATTEMPTS.append(n)
    raise RuntimeError(f"attempt {len(ATTEMPTS)} failed")


@task(name="toolkit.nap", lane="toolkit")
async def nap(ctx: TaskContext, hours: float) -> str:
    await ctx.sleep(hours * 3600)
    return "rested"


@task(name="toolkit.add", lane="toolkit")
def add(a: int, b: int) -> int:
    return a + b


@task(name="toolkit.talk", lane="toolkit")
async def talk(ctx: TaskContext, words: list[str]) -> int:
    for w in words:
        await ctx.stream(w + " ")
    return len(words)


@task(name="toolkit.await_forever", lane="toolkit", deadline=3600)
async def await_forever(ctx: TaskContext) -> str:
    await ctx.wait_for_signal("never")
    return "signalled"
