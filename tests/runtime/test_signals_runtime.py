"""ctx.wait_for_signal / ctx.waitpoint / ctx.sleep in a running worker
(redis-server and memory://): the slot is released while waiting, early
signals are kept, all/count conditions, dedup, every timeout behaviour."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest
import redis
from signal_support import buffer, deliver
from worker_support import attempts, state, submit

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client
from flowfabric_worker.client.keystore import keystore_ready
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.context.waits import Signal, Waitpoint
from flowfabric_worker.errors import ExecutionError, SignalTimeout, Transient
from flowfabric_worker.protocol.journal import JournalRead
from flowfabric_worker.protocol.signals import ResumeExecution
from flowfabric_worker.tasks.retry import Retry
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def backend(keyed_backend: Backend) -> Backend:
    return keyed_backend


@asynccontextmanager
async def serving(b: Backend, *tasks: Any, concurrency: int = 4,
                  init_secrets: bool = True) -> AsyncIterator[Worker]:
    w = Worker(Client(b), list(tasks), lease_ttl=2.0, concurrency=concurrency,
               scanner_interval_scale=0.05, grace_period=2.0, init_secrets=init_secrets)
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        try:
            yield w
        finally:
            w.stop()


async def until(cond: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
    with anyio.fail_after(limit):
        while not await cond():  # noqa: ASYNC110 - polling Redis state
            await anyio.sleep(0.02)


def in_state(b: Backend, eid: str, *states: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await state(b, eid) in states
    return check


async def result(b: Backend, eid: str) -> Any:
    raw = await b.get_result(eid)
    assert raw is not None
    return msgspec.json.decode(raw)


class Decision(msgspec.Struct):
    ok: bool
    note: str = ""


@task(name="sig.approval")
async def approval(ctx: TaskContext, doc: str) -> str:
    sig = await ctx.wait_for_signal("approve", payload_type=Decision)
    assert isinstance(sig.payload, Decision)
    return f"{doc}: ok={sig.payload.ok} by {sig.source_identity} ({sig.name})"


@task(name="sig.quick")
async def quick(n: int) -> int:
    return n + 1


async def test_waiting_releases_the_slot_and_a_signal_resumes(backend: Backend) -> None:
    waiter = await submit(backend, approval, "doc-1")
    async with serving(backend, approval, quick, concurrency=1) as w:
        await until(in_state(backend, waiter, "suspended"))
        # the only slot is free again: another task runs while the first waits
        other = await submit(backend, quick, 41)
        await until(in_state(backend, other, "completed"))
        assert await state(backend, waiter) == "suspended"
        got = await deliver(backend, waiter, "approve", {"ok": True, "note": "lgtm"},
                            source="reviewer-7")
        assert got.effect == "resume_condition_satisfied"
        await until(in_state(backend, waiter, "completed"))
    assert await result(backend, waiter) == "doc-1: ok=True by reviewer-7 (approve)"
    assert (waiter, "suspended") in w.outcomes and (waiter, "completed") in w.outcomes
    assert len(await attempts(backend, waiter)) == 1


WAITPOINTS: dict[str, Waitpoint] = {}
GATES: dict[str, anyio.Event] = {}


@task(name="sig.early")
async def early(ctx: TaskContext, key: str) -> list[Any]:
    wp = await ctx.waitpoint("callback")
    WAITPOINTS[key] = wp
    await GATES[key].wait()  # the outside system answers before we wait
    sig = await ctx.wait_for_signal("done", waitpoint=wp)
    return [sig.payload, sig.id != ""]


async def test_a_signal_sent_before_the_wait_is_not_lost(backend: Backend) -> None:
    key = uuid.uuid4().hex
    GATES[key] = anyio.Event()
    eid = await submit(backend, early, key)
    async with serving(backend, early) as w:
        with anyio.fail_after(10):
            while key not in WAITPOINTS:  # noqa: ASYNC110 - set by the task
                await anyio.sleep(0.01)
        wp = WAITPOINTS[key]
        assert wp.token.secret().startswith("k1:") and len(wp.token.secret()) == 43
        assert wp.token.secret() not in repr(wp) and wp.token.secret() not in f"{wp} {wp.token}"
        got = await buffer(backend, eid, wp.id, wp.token, "done", {"n": 7})
        assert got.effect == "buffered_for_pending_waitpoint"
        GATES[key].set()
        await until(in_state(backend, eid, "completed"))
    assert await result(backend, eid) == [{"n": 7}, True]
    # already satisfied at suspend time: the task went on under its lease
    assert [o for e, o in w.outcomes if e == eid] == ["completed"]


@task(name="sig.both")
async def both(ctx: TaskContext) -> list[str]:
    sigs = await ctx.wait_for_signal(["legal", "finance"], mode="all")
    return [f"{s.name}={s.payload}" for s in sigs]


async def test_all_of_two_signals(backend: Backend) -> None:
    eid = await submit(backend, both)
    async with serving(backend, both):
        await until(in_state(backend, eid, "suspended"))
        first = await deliver(backend, eid, "finance", "yes")
        assert first.effect == "appended_to_waitpoint"
        await anyio.sleep(0.2)
        assert await state(backend, eid) == "suspended"
        ignored = await deliver(backend, eid, "marketing", "meh")
        assert ignored.effect == "no_op"
        last = await deliver(backend, eid, "legal", "ok")
        assert last.effect == "resume_condition_satisfied"
        await until(in_state(backend, eid, "completed"))
    # name order, not arrival order
    assert await result(backend, eid) == ["legal=ok", "finance=yes"]


@task(name="sig.votes")
async def votes(ctx: TaskContext) -> list[str]:
    sigs = await ctx.wait_for_signal("vote", mode=2)
    return sorted(f"{s.source_identity}:{s.payload}" for s in sigs)


async def test_count_condition_and_duplicate_signal_applied_once(backend: Backend) -> None:
    eid = await submit(backend, votes)
    async with serving(backend, votes):
        await until(in_state(backend, eid, "suspended"))
        one = await deliver(backend, eid, "vote", "yes", idempotency_key="ballot-1", source="ann")
        again = await deliver(backend, eid, "vote", "yes", idempotency_key="ballot-1",
                              source="ann")
        assert again.duplicate and again.signal_id == one.signal_id
        await anyio.sleep(0.2)
        assert await state(backend, eid) == "suspended"  # the duplicate did not count
        two = await deliver(backend, eid, "vote", "no", idempotency_key="ballot-2", source="bob")
        assert two.effect == "resume_condition_satisfied"
        await until(in_state(backend, eid, "completed"))
    assert await result(backend, eid) == ["ann:yes", "bob:no"]


@task(name="sig.patient")
async def patient(ctx: TaskContext) -> str:
    try:
        await ctx.wait_for_signal("reply", timeout=0.3, on_timeout="auto_resume")
    except SignalTimeout as exc:
        return f"no reply ({exc.reason})"
    return "replied"


async def test_auto_resume_timeout_raises_signal_timeout_in_the_task(backend: Backend) -> None:
    eid = await submit(backend, patient)
    async with serving(backend, patient) as w:
        await until(in_state(backend, eid, "completed"))
    assert await result(backend, eid) == "no reply (timeout)"
    assert [o for e, o in w.outcomes if e == eid] == ["suspended", "completed"]
    journal = await backend.call(JournalRead(eid=eid))
    assert [(e.name, e.kind) for e in journal] == [("wait:reply", "signal")]


@task(name="sig.strict", retry=Retry(max_attempts=3, backoff="fixed", initial=0.01))
async def strict(ctx: TaskContext, behaviour: str) -> str:
    await ctx.wait_for_signal("reply", timeout=0.3, on_timeout=behaviour)  # type: ignore[arg-type]
    return "replied"


@pytest.mark.parametrize(("behaviour", "final"), [
    ("fail", "failed"), ("cancel", "cancelled"), ("expire", "expired")])
async def test_terminal_timeout_behaviours(backend: Backend, behaviour: str, final: str) -> None:
    run = await strict.submit(Client(backend), behaviour)
    eid = run.id
    async with serving(backend, strict):
        await until(in_state(backend, eid, final))
    atts = await attempts(backend, eid)
    assert len(atts) == 1  # ended by the timeout, never retried
    if behaviour == "fail":
        assert atts[0]["failure_reason"] == "suspension_timeout:fail"
    # The client sees why, whatever the behaviour (issue 12, hole 7).
    assert (await run.info()).failure_reason == f"suspension_timeout:{behaviour}"
    with pytest.raises(ExecutionError) as ei:
        await run.result(timeout=5)
    assert ei.value.reason == f"suspension_timeout:{behaviour}"


SLEEP_EFFECTS: list[str] = []


@task(name="sig.nap")
async def nap(ctx: TaskContext) -> str:
    before = await ctx.step("before", lambda: SLEEP_EFFECTS.append("before") or "b")
    await ctx.sleep(0.3)
    return f"{before} then woke"


async def test_durable_sleep_releases_the_slot_and_does_not_sleep_again(
        backend: Backend) -> None:
    SLEEP_EFFECTS.clear()
    eid = await submit(backend, nap)
    async with serving(backend, nap, quick, concurrency=1) as w:
        await until(in_state(backend, eid, "suspended"))
        other = await submit(backend, quick, 1)
        await until(in_state(backend, other, "completed"))
        await until(in_state(backend, eid, "completed"))
    assert await result(backend, eid) == "b then woke"
    assert SLEEP_EFFECTS == ["before"]
    assert [o for e, o in w.outcomes if e == eid] == ["suspended", "completed"]
    journal = await backend.call(JournalRead(eid=eid))
    assert [(e.name, e.kind) for e in journal] == [("before", "step"), ("sleep", "signal")]


async def test_signal_payload_types_and_repr(backend: Backend) -> None:
    sig: Signal[int] = Signal(name="n", payload=3, id="s1", raw=b"3")
    assert "raw" not in repr(sig) and sig.payload == 3


async def test_a_standalone_worker_installs_a_missing_keystore(redis_server_url: str) -> None:
    client = redis.Redis.from_url(redis_server_url)
    client.flushall()
    client.close()
    b = await Backend.open(redis_server_url)  # no keystore seeded
    try:
        eid = await submit(b, approval, "doc")
        async with serving(b, approval):
            await until(in_state(b, eid, "suspended"))
            assert await keystore_ready(b)
            await deliver(b, eid, "approve", {"ok": True})
            await until(in_state(b, eid, "completed"))
    finally:
        await b.close()


async def test_empty_keystore_fails_the_task_with_a_clear_message(
        redis_server_url: str) -> None:
    client = redis.Redis.from_url(redis_server_url)
    client.flushall()
    client.close()
    b = await Backend.open(redis_server_url)  # no keystore seeded
    try:
        eid = await submit(b, approval, "doc")
        async with serving(b, approval, init_secrets=False):
            await until(in_state(b, eid, "failed"))
        atts = await attempts(b, eid)
        assert len(atts) == 1 and atts[0]["failure_category"] == "configuration"
        assert "keystore is not initialised" in atts[0]["failure_reason"]
        assert "secrets init" in atts[0]["failure_reason"]
    finally:
        await b.close()


@task(name="sig.chatty")
async def chatty(ctx: TaskContext) -> str:
    await ctx.stream("before ")
    await ctx.event("asked", {"who": "ops"})
    sig = await ctx.wait_for_signal("go")
    await ctx.stream(f"after {sig.payload}")
    return "done"


async def test_a_resumed_run_does_not_stream_its_frames_twice(backend: Backend) -> None:
    from flowfabric_worker.client.client import Client as RealClient

    eid = await submit(backend, chatty)
    async with serving(backend, chatty):
        await until(in_state(backend, eid, "suspended"))
        await deliver(backend, eid, "go", 1)
        await until(in_state(backend, eid, "completed"))
    frames = [f async for f in RealClient(backend).run(eid).frames(follow=False)]
    assert [f.frame_type for f in frames] == ["stdout", "event", "stdout"]
    assert [f.text for f in frames if f.frame_type == "stdout"] == ["before ", "after 1"]


RETRIED: dict[str, int] = {}


@task(name="sig.wp_retry", retry=Retry(max_attempts=2, backoff="fixed", initial=0.01))
async def wp_retry(ctx: TaskContext, key: str) -> str:
    wp = await ctx.waitpoint()
    RETRIED[key] = RETRIED.get(key, 0) + 1
    if ctx.attempt_index == 0:
        raise Transient("lost before waiting")
    sig = await ctx.wait_for_signal("done", waitpoint=wp)
    return f"{sig.payload} after {RETRIED[key]} runs"


async def test_a_waitpoint_from_an_earlier_attempt_falls_back_to_a_fresh_one(
        backend: Backend) -> None:
    key = uuid.uuid4().hex
    eid = await submit(backend, wp_retry, key)
    async with serving(backend, wp_retry):
        await until(in_state(backend, eid, "suspended"))
        await deliver(backend, eid, "done", "ok")
        await until(in_state(backend, eid, "completed"))
    # attempt 0 failed, attempt 1 suspended on a fresh waitpoint, then resumed
    assert await result(backend, eid) == "ok after 3 runs"
    journal = await backend.call(JournalRead(eid=eid))
    assert [(e.name, e.kind) for e in journal] == [
        ("waitpoint:", "step"), ("wait:done", "signal")]


@task(name="sig.operator")
async def operator(ctx: TaskContext) -> str:
    try:
        await ctx.wait_for_signal("approve")
    except SignalTimeout as exc:
        return exc.reason
    return "approved"


async def test_operator_resume_without_the_signal_raises_signal_timeout(
        backend: Backend) -> None:
    eid = await submit(backend, operator)
    async with serving(backend, operator):
        await until(in_state(backend, eid, "suspended"))
        c = await backend.get_exec_core_raw(eid)
        assert c is not None
        await backend.resume_execution(ResumeExecution(
            eid=eid, lane=c["lane_id"], current_waitpoint_id=c["current_waitpoint_id"]))
        await until(in_state(backend, eid, "completed"))
    assert await result(backend, eid) == "operator_resume"


@task(name="sig.grouped")
async def grouped(ctx: TaskContext) -> str:
    async with anyio.create_task_group() as tg:
        tg.start_soon(ctx.wait_for_signal, "go")
    return "resumed"


async def test_a_wait_inside_the_tasks_own_task_group_suspends(backend: Backend) -> None:
    eid = await submit(backend, grouped)
    async with serving(backend, grouped) as w:
        await until(in_state(backend, eid, "suspended"))
        await deliver(backend, eid, "go")
        await until(in_state(backend, eid, "completed"))
    assert [o for e, o in w.outcomes if e == eid] == ["suspended", "completed"]


@task(name="sig.lost_attempt", retry=Retry(max_attempts=2, backoff="fixed", initial=0.01))
async def lost_attempt(ctx: TaskContext, key: str) -> str:
    wp = await ctx.waitpoint("callback")
    WAITPOINTS[key] = wp
    if ctx.attempt_index == 0:
        await GATES[key].wait()
        raise Transient("lost after handing out the waitpoint")
    sig = await ctx.wait_for_signal("paid", waitpoint=wp)
    return f"paid {sig.payload} in attempt {ctx.attempt_index}"


async def test_signals_buffered_for_a_lost_attempts_waitpoint_still_answer_the_wait(
        backend: Backend) -> None:
    key = uuid.uuid4().hex
    GATES[key] = anyio.Event()
    eid = await submit(backend, lost_attempt, key)
    async with serving(backend, lost_attempt) as w:
        with anyio.fail_after(10):
            while key not in WAITPOINTS:  # noqa: ASYNC110 - set by the task
                await anyio.sleep(0.01)
        wp = WAITPOINTS[key]
        await buffer(backend, eid, wp.id, wp.token, "paid", 42)
        GATES[key].set()
        await until(in_state(backend, eid, "completed"))
    assert await result(backend, eid) == "paid 42 in attempt 1"
    assert "suspended" not in [o for e, o in w.outcomes if e == eid]
    old = await backend.get_waitpoint(backend.tag_of(eid), wp.id)
    assert old is not None and old.state == "closed" and old.close_reason == "superseded"
