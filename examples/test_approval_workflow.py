"""Testing tasks with the ``ffw_env`` fixture (docs/testing.md).

A deploy waits a day for approval and falls back when nobody answers; a
flaky call is retried five times with exponential backoff. Both take hours
of task time and well under a second of test time: the environment's
virtual clock skips ahead whenever nothing can run.

    pytest examples/test_approval_workflow.py                      # memory://, time skipping
    pytest examples/test_approval_workflow.py --ffw-redis-url redis://localhost:6379/15
"""

from __future__ import annotations

import msgspec
import pytest

from flowfabric_worker import Retry, SignalTimeout, TaskContext, task
from flowfabric_worker.testing import FakeContext, TestEnvironment, run_inline


class Approval(msgspec.Struct):
    approved: bool
    by: str = ""


@task(lane="deploys")
async def deploy(ctx: TaskContext, service: str) -> str:
    try:
        answer = await ctx.wait_for_signal("approve", timeout=24 * 3600,
                                           on_timeout="auto_resume", payload_type=Approval)
    except SignalTimeout:
        return f"{service}: not approved within a day, kept the old version"
    if not answer.payload.approved:
        return f"{service}: rejected by {answer.payload.by}"
    return f"{service}: deployed (approved by {answer.payload.by})"


@task(lane="deploys", retry=Retry(max_attempts=5, initial=30, multiplier=2))
async def notify(channel: str) -> None:
    raise ConnectionError(f"{channel} is down")


pytestmark = [pytest.mark.anyio, pytest.mark.ffw(tasks=[deploy, notify])]


async def test_an_approval_answered_in_time(ffw_env: TestEnvironment) -> None:
    run = await deploy.submit(ffw_env.client, "api")
    await ffw_env.wait_suspended(run)        # no time passes while the test answers
    await ffw_env.signal(run, "approve", Approval(approved=True, by="ana"))
    assert await run.result(timeout=30) == "api: deployed (approved by ana)"


@pytest.mark.ffw(memory_only=True)           # a day of real time on a real server
async def test_an_approval_nobody_answers_times_out_after_a_day(
        ffw_env: TestEnvironment) -> None:
    run = await deploy.submit(ffw_env.client, "api")
    assert await run.result(timeout=30) == "api: not approved within a day, kept the old version"


@pytest.mark.ffw(memory_only=True)           # 7.5 minutes of backoff
async def test_a_flaky_call_gives_up_after_five_attempts(ffw_env: TestEnvironment) -> None:
    run = await notify.submit(ffw_env.client, "#ops")
    error = await ffw_env.assert_fails(run, category="handler_error", attempts=5, timeout=30)
    assert "#ops is down" in str(error)


async def test_the_body_alone() -> None:
    ctx = FakeContext(signals={"approve": Approval(approved=False, by="bo")})
    assert await run_inline(deploy, "web", ctx=ctx) == "web: rejected by bo"
