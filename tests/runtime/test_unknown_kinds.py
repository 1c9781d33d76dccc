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
from flowfabric_worker.client.client import Client
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


async def _two_fleets(backend: Backend, eids: list[str], *, started: bool = False,
                      submit_later: Callable[[], Awaitable[list[str]]] | None = None,
                      ) -> tuple[Worker, Worker]:
    """Run a worker with only ``alpha`` and one with only ``beta`` on the lane
    until every execution is terminal; those ``submit_later`` creates are
    submitted once both run (their direct wake-ups reach both)."""
    client = Client(backend)
    only_alpha = lane_worker(client, [alpha], LANE, concurrency=4)
    only_beta = lane_worker(client, [beta], LANE, concurrency=4)

    async def all_terminal() -> bool:
        states = [await state(backend, e) for e in eids]
        return all(s in ("completed", "failed", "cancelled", "expired") for s in states)

    async with anyio.create_task_group() as tg:
        for w in (only_alpha, only_beta):
            tg.start_soon(w.run)
        if submit_later is not None:
            with anyio.fail_after(30):  # both idle: their first rounds found nothing
                while not (only_alpha.scheduler.idle and only_beta.scheduler.idle):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            await anyio.sleep(0.2)
            eids += await submit_later()
        with anyio.fail_after(60):
            while not await all_terminal():  # noqa: ASYNC110 - polling Redis state
                await anyio.sleep(0.05)
        for w in (only_alpha, only_beta):
            w.stop()
    finals = {e: await state(backend, e) for e in eids}
    assert set(finals.values()) == {"completed"}, finals
    for e in eids:
        # Never failed: one attempt, no retry consumed.
        runs = await attempts(backend, e)
        assert len(runs) == 1, runs
        assert not any(r.get("failure_category") for r in runs)
        assert (await core(backend, e)).get("retry_count", "0") in ("", "0")
    # Each worker ran only its own kind.
    assert {e for e, o in only_alpha.outcomes if o == "completed"} == {
        e for e in eids if (await core(backend, e))["execution_kind"] == alpha.name}
    assert {e for e, o in only_beta.outcomes if o == "completed"} == {
        e for e in eids if (await core(backend, e))["execution_kind"] == beta.name}
    return only_alpha, only_beta


def _handed_back(*workers: Worker) -> list[str]:
    return [e for w in workers for e, o in w.outcomes if o == "handed_back"]


async def test_two_fleets_on_one_lane_each_take_their_own_kinds_without_hand_backs(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interleaved kinds waiting when both workers start: each worker reads
    heads of both kinds and leaves the other's alone (it sees the kind in its
    pre-read), so nothing is claimed by the wrong worker. Before, the wrong
    worker claimed and handed back, and an execution could lose that race
    again and again: the hand-back delay doubles per claim, so eight lost
    races cost over a minute (a CI timeout of the attached mixed-fleet test)."""
    # Room for a busy box: the right worker must look within this.
    monkeypatch.setattr(unknown_kinds, "LEAVE_FOR", 10.0)
    eids = []
    for i in range(6):
        eids += [await submit(backend, alpha, i), await submit(backend, beta, i)]
    only_alpha, only_beta = await _two_fleets(backend, eids)
    assert not _handed_back(only_alpha, only_beta)
    epochs = [(await core(backend, e)).get("current_lease_epoch") for e in eids]
    assert epochs == ["1"] * len(eids)  # claimed once each, by the right worker


async def test_a_direct_wake_up_for_a_kind_it_lacks_is_left_to_its_fleet(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Submitted while both fleets idle: the direct wake-up names the kind,
    and only the worker that has it claims it."""
    monkeypatch.setattr(unknown_kinds, "LEAVE_FOR", 10.0)
    client = Client(backend)

    async def submit_both() -> list[str]:
        ids = []
        for i in range(6):
            ids += [(await alpha.submit(client, i)).id, (await beta.submit(client, i)).id]
        return ids

    only_alpha, only_beta = await _two_fleets(backend, [], submit_later=submit_both)
    assert not _handed_back(only_alpha, only_beta)


async def test_a_kind_left_alone_too_long_is_still_handed_back(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fleet that has the kind is busy (or gone): after LEAVE_FOR the
    worker claims the execution and hands it back, as before, so a foreign
    kind at the head of the lane cannot hold up the worker's own work."""
    monkeypatch.setattr(unknown_kinds, "LEAVE_FOR", 0.3)
    stranger = await submit(backend, beta, 1)
    w = lane_worker(Client(backend), [alpha], LANE)

    async def handed() -> bool:
        return any(e == stranger for e in _handed_back(w))

    started = anyio.current_time()
    await run_until(w, handed, limit=30)
    assert anyio.current_time() - started >= 0.3
    assert await state(backend, stranger) in ("delayed", "waiting")


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
