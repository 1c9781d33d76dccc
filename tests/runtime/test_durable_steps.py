"""ctx.step: journaled under the lease, replayed after a suspension or a retry,
non-determinism detected and fatal (redis-server and memory://)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from signal_support import deliver
from worker_support import attempts, core, run_until, state, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.errors import InvalidInput, NonDeterminismError, Transient
from flowfabric_worker.protocol.journal import JournalRead
from flowfabric_worker.tasks.retry import Retry
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def backend(keyed_backend: Backend) -> Backend:
    return keyed_backend


class Quote(msgspec.Struct):
    sku: str
    cents: int


CALLS: dict[str, int] = {}


def _count(name: str) -> int:
    CALLS[name] = CALLS.get(name, 0) + 1
    return CALLS[name]


def fetch_quote(sku: str) -> Quote:  # sync: runs in a worker thread
    _count("quote")
    return Quote(sku, 1250)


async def charge(q: Quote) -> str:
    _count("charge")
    return f"charged {q.cents}"


@task(name="steps.order")
async def order(ctx: TaskContext, sku: str) -> str:
    q = await ctx.step("quote", fetch_quote, sku)
    assert isinstance(q, Quote)  # decoded by the return annotation, on replays too
    receipt = await ctx.step("charge", charge, q)
    sig = await ctx.wait_for_signal("ship")
    return f"{receipt} for {q.sku}, shipped by {sig.payload['by']}"


def worker(b: Backend, *tasks: Any, concurrency: int = 4) -> Worker:
    return Worker(Client(b), list(tasks), lease_ttl=2.0, concurrency=concurrency,
                  scanner_interval_scale=0.05)


async def test_steps_run_once_across_suspend_and_resume(backend: Backend) -> None:
    CALLS.clear()
    eid = await submit(backend, order, "sku-1")
    w = worker(backend, order)

    async def suspended() -> bool:
        return await state(backend, eid) == "suspended"

    await run_until(w, suspended)
    assert CALLS == {"quote": 1, "charge": 1}
    assert (eid, "suspended") in w.outcomes
    await deliver(backend, eid, "ship", {"by": "ana"})

    async def done() -> bool:
        return await state(backend, eid) == "completed"

    await run_until(worker(backend, order), done)
    assert CALLS == {"quote": 1, "charge": 1}
    result = await backend.get_result(eid)
    assert result is not None
    assert msgspec.json.decode(result) == "charged 1250 for sku-1, shipped by ana"
    journal = await backend.call(JournalRead(eid=eid))
    assert [(e.name, e.kind) for e in journal] == [
        ("quote", "step"), ("charge", "step"), ("wait:ship", "signal")]
    # one attempt, resumed: the suspension did not cost a retry
    assert len(await attempts(backend, eid)) == 1


FLAKY: dict[str, int] = {}


@task(name="steps.flaky", retry=Retry(max_attempts=3, backoff="fixed", initial=0.01))
async def flaky(ctx: TaskContext) -> int:
    n = await ctx.step("side_effect", lambda: _count("side_effect"))
    FLAKY["runs"] = FLAKY.get("runs", 0) + 1
    if FLAKY["runs"] < 3:
        raise Transient("later step failed")
    return int(n)


async def test_a_retry_replays_recorded_steps(backend: Backend) -> None:
    CALLS.clear()
    FLAKY.clear()
    eid = await submit(backend, flaky)

    async def done() -> bool:
        return await state(backend, eid) == "completed"

    await run_until(worker(backend, flaky), done)
    assert FLAKY["runs"] == 3 and CALLS == {"side_effect": 1}
    assert len(await attempts(backend, eid)) == 3


BRANCH = {"name": "a"}


@task(name="steps.drift", retry=Retry(max_attempts=3, backoff="fixed", initial=0.01))
async def drift(ctx: TaskContext) -> str:
    try:
        await ctx.step(BRANCH["name"], lambda: 1)
    except NonDeterminismError:
        pass  # swallowing it must not help: the execution still fails
    await ctx.wait_for_signal("go")
    return "unreachable on a drifted replay"


async def test_nondeterministic_replay_fails_without_retry(backend: Backend) -> None:
    BRANCH["name"] = "a"
    eid = await submit(backend, drift)

    async def suspended() -> bool:
        return await state(backend, eid) == "suspended"

    await run_until(worker(backend, drift), suspended)
    BRANCH["name"] = "b"  # the code changed while the execution waited
    await deliver(backend, eid, "go")

    async def failed() -> bool:
        return await state(backend, eid) == "failed"

    await run_until(worker(backend, drift), failed)
    atts = await attempts(backend, eid)
    assert len(atts) == 1  # permanent: no retry although the policy allows 3
    assert atts[0]["failure_category"] == "nondeterministic"
    assert "journal position 0" in atts[0]["failure_reason"]
    assert "'step b'" in atts[0]["failure_reason"] and "'step a'" in atts[0]["failure_reason"]
    assert (await core(backend, eid))["public_state"] == "failed"


@task(name="steps.overlap")
async def overlap(ctx: TaskContext) -> str:
    import anyio

    async def slow() -> int:
        await anyio.sleep(0.05)
        return 1

    errors: list[str] = []
    async with anyio.create_task_group() as tg:
        async def one(n: str) -> None:
            try:
                await ctx.step(n, slow)
            except InvalidInput as exc:
                errors.append(str(exc))
        tg.start_soon(one, "x")
        tg.start_soon(one, "y")
    return errors[0]


async def test_overlapping_steps_are_refused(backend: Backend) -> None:
    eid = await submit(backend, overlap)

    async def done() -> bool:
        return await state(backend, eid) == "completed"

    await run_until(worker(backend, overlap), done)
    result = await backend.get_result(eid)
    assert result is not None and b"one at a time" in result


PATH_TAKEN = {"steps": 1}


@task(name="steps.shortcut")
async def shortcut(ctx: TaskContext) -> str:
    if PATH_TAKEN["steps"]:
        await ctx.step("a", lambda: 1)
        await ctx.wait_for_signal("go")
    return "finished"


async def test_a_replay_that_ends_early_is_nondeterministic(backend: Backend) -> None:
    PATH_TAKEN["steps"] = 1
    eid = await submit(backend, shortcut)

    async def suspended() -> bool:
        return await state(backend, eid) == "suspended"

    await run_until(worker(backend, shortcut), suspended)
    PATH_TAKEN["steps"] = 0  # the resumed run skips both recorded calls
    await deliver(backend, eid, "go")

    async def failed() -> bool:
        return await state(backend, eid) == "failed"

    await run_until(worker(backend, shortcut), failed)
    atts = await attempts(backend, eid)
    assert atts[0]["failure_category"] == "nondeterministic"
    assert "'the end of the task'" in atts[0]["failure_reason"]
    assert "'step a'" in atts[0]["failure_reason"]


async def test_a_concurrent_journal_write_is_reported_as_nondeterminism(
        backend: Backend) -> None:
    from flowfabric_worker.context.step_journal import StepJournal
    from flowfabric_worker.protocol.journal import JournalAppend
    from flowfabric_worker.worker.backend_port import BackendEngine

    eid = await submit(backend, shortcut)
    lease = await BackendEngine(backend).claim(
        eid, "default", "w1", "w1-i", frozenset(), 5000, 5000)
    journal = StepJournal(backend, lease)
    await journal.load()  # sees an empty journal...
    # ...then another run of the same execution records position 0 first
    await backend.call(JournalAppend(eid=eid, lease_id=lease.lease_id,
                                     lease_epoch=lease.lease_epoch, step_index=0,
                                     step_name="other"))
    with pytest.raises(NonDeterminismError) as e:
        await journal.step("mine", lambda: 2, (), {}, None)
    assert e.value.index == 0 and "step other" in e.value.recorded
    assert journal.violation is e.value
