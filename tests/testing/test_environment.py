"""TestEnvironment and its virtual clock, end to end through the ffw_env
fixture (the pytest plugin): each wait below would take hours of real time
without time skipping, and every result wait is bounded by a real timeout."""

from __future__ import annotations

from itertools import pairwise

import pytest
from toolkit_tasks import (
    ATTEMPTS,
    Decision,
    add,
    approve,
    await_forever,
    flaky,
    nap,
    talk,
)

from flowfabric_worker.client.client import Client
from flowfabric_worker.errors import TaskExpired
from flowfabric_worker.testing import TestEnvironment

pytestmark = [pytest.mark.anyio, pytest.mark.ffw(tasks=[approve, flaky, nap, add, talk,
                                                         await_forever])]

DAY = 24 * 3600


async def test_a_signal_timeout_of_a_day_passes_at_once(ffw_env: TestEnvironment) -> None:
    run = await approve.submit(ffw_env.client, "api")
    await ffw_env.wait_suspended(run)
    assert await run.result(timeout=30) == "api: nobody approved, fell back"
    assert ffw_env.skipper is not None and ffw_env.skipper.skipped >= DAY - 60
    assert [e.name for e in await ffw_env.journal(run)] == ["build", "wait:approve"]


async def test_no_time_passes_while_the_test_is_about_to_answer(
        ffw_env: TestEnvironment) -> None:
    run = await approve.submit(ffw_env.client, "web")
    await ffw_env.wait_suspended(run)
    sent = await ffw_env.signal(run, "approve", Decision(approved=True))
    assert sent.status == "resumed"
    assert await run.result(timeout=30) == "web: deployed web.tar.gz"
    assert ffw_env.skipper is not None and ffw_env.skipper.skipped < DAY


async def test_exponential_retries_fire_at_their_virtual_times(
        ffw_env: TestEnvironment) -> None:
    ATTEMPTS.clear()
    run = await flaky.submit(ffw_env.client, 7)
    error = await ffw_env.assert_fails(run, category="handler_error", attempts=5, timeout=30)
    assert "attempt 5 failed" in str(error)
    attempts = await ffw_env.attempts(run)
    starts = [a.started_at or 0 for a in attempts]
    gaps = [(b - a) / 1000 for a, b in pairwise(starts)]
    # initial 60 s, doubling: each gap is its backoff (plus a little real time).
    for gap, backoff in zip(gaps, [60, 120, 240, 480], strict=True):
        assert backoff <= gap < backoff + 30, gaps
    assert ATTEMPTS == [7] * 5


async def test_ctx_sleep_and_a_delay_pass_at_once(ffw_env: TestEnvironment) -> None:
    assert await (await nap.submit(ffw_env.client, 5.0)).result(timeout=30) == "rested"
    run = await add.submit(ffw_env.client, 2, 3, delay=6 * 3600)
    assert await run.result(timeout=30) == 5
    core = await run.info()
    assert core.started_at is not None and core.started_at - core.created_at >= 6 * 3600_000


async def test_env_sleep_steps_through_the_timers_within(ffw_env: TestEnvironment) -> None:
    before = ffw_env.now()
    run = await add.submit(ffw_env.client, 1, 1, delay=1800)
    await ffw_env.sleep(3600)
    assert await run.state() == "completed"          # ran during the hour, at 30 min
    assert (ffw_env.now() - before).total_seconds() >= 3600
    core = await run.info()
    # The delay counts from the submit call (its due time is computed before
    # the create runs), created_at from the create itself: a few ms later.
    assert core.started_at is not None and 1800_000 - 1000 <= core.started_at - core.created_at


async def test_a_deadline_expires_the_run_in_virtual_time(ffw_env: TestEnvironment) -> None:
    run = await await_forever.submit(ffw_env.client)
    await ffw_env.wait_suspended(run)
    await ffw_env.sleep(2 * 3600)
    with pytest.raises(TaskExpired):
        await run.result(timeout=30)


async def test_frames_and_the_client_fixture(ffw_env: TestEnvironment,
                                             ffw_client: Client) -> None:
    assert ffw_client is ffw_env.client
    run = await talk.submit(ffw_client, ["a", "b", "c"])
    assert await run.result(timeout=30) == 3
    assert b"".join(f.payload for f in await ffw_env.frames(run)) == b"a b c "


@pytest.mark.ffw(time_skipping=False)
async def test_real_time_environment(ffw_env: TestEnvironment) -> None:
    assert ffw_env.clock is None
    assert await (await add.submit(ffw_env.client, 2, 2)).result(timeout=30) == 4
