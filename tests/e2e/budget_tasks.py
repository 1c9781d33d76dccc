"""Tasks of the budget / quota process tests, run by ``flowfabric-worker run``
subprocesses (importable as ``budget_tasks`` with this directory on the path)."""

from __future__ import annotations

import anyio

from flowfabric_worker import Retry, TaskContext, task

LANE = "budgets-e2e"


@task(name="budgets.llm", lane=LANE, retry=Retry(max_attempts=3, backoff="fixed", initial=0.01))
async def llm_call(ctx: TaskContext, tokens: int) -> str:
    """Pretends to call a model that used ``tokens`` tokens."""
    report = await ctx.report_usage(tokens=tokens, cost_microusd=tokens * 2)
    return "soft" if report.soft_breached else "ok"


@task(name="budgets.hold", lane=LANE)
async def hold(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "held"
