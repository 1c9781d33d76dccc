"""Issue 16's "done when", written only from docs/testing.md: a task with a
1-day signal timeout and a 5-attempt exponential retry, tested with the
``ffw_env`` fixture in well under two seconds of wall time (nothing here
asserts a timing); a mistyped signal payload refused at send time. (The
mypy half — a wrong argument type to ``submit`` of an ``@task(lane=...)``
function is flagged — is tests/typing/task_types.py: ``charge.submit``.)"""

from __future__ import annotations

from itertools import pairwise

import msgspec
import pytest

from flowfabric_worker import Retry, SignalPayloadError, SignalTimeout, TaskContext, task
from flowfabric_worker.testing import TestEnvironment

PUBLISHED: list[str] = []


class Approval(msgspec.Struct):
    ok: bool
    by: str = ""


async def publish(version: str) -> None:
    PUBLISHED.append(version)
    raise ConnectionError(f"registry down, {version} not published")


@task(lane="releases", retry=Retry(max_attempts=5, initial=60, multiplier=2, maximum=3600))
async def release(ctx: TaskContext, version: str) -> str:
    try:
        answer = await ctx.wait_for_signal("approve", timeout=24 * 3600,
                                           on_timeout="auto_resume", payload_type=Approval)
    except SignalTimeout:
        return f"{version}: nobody approved within a day"
    if not answer.payload.ok:
        return f"{version}: rejected by {answer.payload.by}"
    await publish(version)
    return f"{version}: published"


pytestmark = [pytest.mark.anyio, pytest.mark.ffw(tasks=[release])]


@pytest.mark.ffw(memory_only=True)   # a day of real time elsewhere
async def test_nobody_approves_within_a_day(ffw_env: TestEnvironment) -> None:
    run = await release.submit(ffw_env.client, "v1")
    assert await run.result(timeout=30) == "v1: nobody approved within a day"
    assert [e.name for e in await ffw_env.journal(run)] == ["wait:approve"]


@pytest.mark.ffw(memory_only=True)   # 15 minutes of backoff elsewhere
async def test_approved_then_five_attempts_with_exponential_backoff(
        ffw_env: TestEnvironment) -> None:
    PUBLISHED.clear()
    run = await release.submit(ffw_env.client, "v2")
    await ffw_env.wait_suspended(run)
    await ffw_env.signal(run, "approve", Approval(ok=True, by="ana"))
    error = await ffw_env.assert_fails(run, category="handler_error", attempts=5, timeout=30)
    assert "registry down" in str(error)
    assert PUBLISHED == ["v2"] * 5             # the approval was journaled, not asked again
    attempts = await ffw_env.attempts(run)
    gaps = [((b.started_at or 0) - (a.started_at or 0)) / 1000 for a, b in pairwise(attempts)]
    for gap, backoff in zip(gaps, [60, 120, 240, 480], strict=True):
        assert backoff <= gap < backoff + 30, gaps      # virtual seconds


async def test_a_mistyped_approval_is_refused_at_send_time(ffw_env: TestEnvironment) -> None:
    run = await release.submit(ffw_env.client, "v3")
    await ffw_env.wait_suspended(run)
    with pytest.raises(SignalPayloadError, match=r"\$\.ok"):
        await ffw_env.signal(run, "approve", {"ok": "maybe?"})
    assert await run.state() == "suspended"
    await ffw_env.signal(run, "approve", {"ok": False, "by": "bo"})
    assert await run.result(timeout=30) == "v3: rejected by bo"
