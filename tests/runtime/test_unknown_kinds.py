"""A worker that claims an execution of a kind it has no task for hands it
back for another worker (the same attempt, no failure), instead of failing it
``unknown_task`` (issue 13 item 9: mixed fleets, rolling deploys)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from worker_support import attempts, core, lane_worker, run_until, state, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.worker import unknown_kinds
from flowfabric_worker.worker.unknown_kinds import MAX_DELAY_MS, hand_back_delay_ms
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

LANE = "mixed"


@task(name="mix.alpha", lane=LANE)
async def alpha(n: int) -> str:
    return f"a{n}"


@task(name="mix.beta", lane=LANE)
async def beta(n: int) -> str:
    return f"b{n}"


class _Client:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend


async def _run_all(workers: list[Worker], done: Callable[[], Awaitable[bool]],
                   limit: float) -> None:
    async with anyio.create_task_group() as tg:
        for w in workers:
            tg.start_soon(w.run)
        with anyio.fail_after(limit):
            while not await done():  # noqa: ASYNC110 - polling Redis state
                await anyio.sleep(0.05)
        for w in workers:
            w.stop()


async def test_two_workers_with_different_tasks_share_one_lane(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # Interleaved, so whichever worker claims first takes both kinds (a wrong
    # claim is certain). Few of them: every wrong claim doubles that
    # execution's hand-back delay, and when it comes due either worker may
    # claim it again, so the slowest of many executions bounces many times
    # (12 + 12 took 17 s to over 60 s; 4 + 4 takes 1-9 s, and a CI run saw
    # one execution still bouncing after 60 s: eight wrong claims in a row
    # wait 64 s at 250 ms doubled). A shorter, capped delay keeps what this
    # proves (handed back, never failed, each kind run by its worker) and
    # bounds the time however unlucky the races are.
    monkeypatch.setattr(unknown_kinds, "BASE_DELAY_MS", 20)
    monkeypatch.setattr(unknown_kinds, "MAX_DELAY_MS", 320)
    eids = []
    for i in range(4):
        eids += [await submit(backend, alpha, i), await submit(backend, beta, i)]
    client = _Client(backend)
    only_alpha = lane_worker(client, [alpha], LANE, concurrency=4)
    only_beta = lane_worker(client, [beta], LANE, concurrency=4)

    async def all_terminal() -> bool:
        states = [await state(backend, e) for e in eids]
        return all(s in ("completed", "failed", "cancelled", "expired") for s in states)

    await _run_all([only_alpha, only_beta], all_terminal, limit=60)
    finals = {e: await state(backend, e) for e in eids}
    assert set(finals.values()) == {"completed"}, finals
    for e in eids:
        # Handed back, never failed: one attempt, no retry consumed.
        runs = await attempts(backend, e)
        assert len(runs) == 1, runs
        assert not any(r.get("failure_category") for r in runs)
        assert (await core(backend, e)).get("retry_count", "0") in ("", "0")
    # Each worker ran only its own kind, and the wrong one handed some back
    # (both start on the same, mixed lane head: at least one wrong claim).
    ran_alpha = {e for e, o in only_alpha.outcomes if o == "completed"}
    ran_beta = {e for e, o in only_beta.outcomes if o == "completed"}
    assert ran_alpha == set(eids[0::2]) and ran_beta == set(eids[1::2])
    handed = [o for w in (only_alpha, only_beta) for _, o in w.outcomes if o == "handed_back"]
    assert not [o for w in (only_alpha, only_beta) for _, o in w.outcomes
                if o.startswith("failed")]
    assert handed, "no wrong claim happened: the test proves nothing"


async def test_a_lone_worker_keeps_an_unknown_kind_waiting(backend: Backend) -> None:
    """No worker knows the kind: it stays in the lane (delayed, then
    eligible again), never failed, while known work runs."""
    stranger = await submit(backend, beta, 1)
    known = await submit(backend, alpha, 1)
    w = lane_worker(_Client(backend), [alpha], LANE)
    seen: list[str] = []

    async def handed_twice() -> bool:
        seen[:] = [o for e, o in w.outcomes if e == stranger]
        return len(seen) >= 2 and await state(backend, known) == "completed"

    await run_until(w, handed_twice, limit=30)
    assert set(seen) == {"handed_back"}
    assert await state(backend, stranger) in ("delayed", "waiting")
    runs = await attempts(backend, stranger)
    assert len(runs) == 1 and not runs[0].get("failure_category")


async def test_opt_in_bound_fails_an_unknown_kind_in_standalone(backend: Backend) -> None:
    stranger = await submit(backend, beta, 1)
    w = lane_worker(_Client(backend), [alpha], LANE, fail_unknown_after=2)

    async def failed() -> bool:
        return await state(backend, stranger) == "failed"

    await run_until(w, failed, limit=30)
    assert [o for e, o in w.outcomes if e == stranger] == ["handed_back",
                                                           "failed:unknown_task"]
    assert (await attempts(backend, stranger))[0].get("failure_category") == "unknown_task"


async def test_the_bound_is_refused_in_attached_mode() -> None:
    class Attached:
        class backend:
            mode = "attached"

    with pytest.raises(ConfigurationError, match="attached"):
        Worker(Attached(), [alpha], fail_unknown_after=3)
    with pytest.raises(ConfigurationError, match="at least 1"):
        Worker(object(), [alpha], fail_unknown_after=0)


def test_hand_back_delay_grows_with_claims_and_is_capped() -> None:
    delays = [hand_back_delay_ms(epoch) for epoch in range(1, 40)]
    assert delays == sorted(delays) and delays[0] > 0
    assert max(delays) == MAX_DELAY_MS


def test_the_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowfabric_worker.cli.common import settings_from
    from flowfabric_worker.cli.parser import build_parser
    from flowfabric_worker.settings import Settings

    args = build_parser().parse_args(["run", "mod", "--fail-unknown-after", "3"])
    assert settings_from(args).fail_unknown_after == 3
    assert settings_from(build_parser().parse_args(["run", "mod"])).fail_unknown_after is None
    monkeypatch.setenv("FLOWFABRIC_FAIL_UNKNOWN_AFTER", "5")
    assert Settings.load({}).fail_unknown_after == 5
    monkeypatch.setenv("FLOWFABRIC_FAIL_UNKNOWN_AFTER", "0")
    with pytest.raises(ConfigurationError):
        Settings.load({})
