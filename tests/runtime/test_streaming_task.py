"""Streaming from a task run by a real Worker, consumed through RunHandle
(redis-server and memory://): ctx.stream / ctx.event / ctx.summary are
flushed before the terminal call, and tails see every durable frame once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.context.frame_writer import FrameWriter
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.errors import ConfigurationError, InvalidInput, Permanent, TaskFailed
from flowfabric_worker.protocol.streams import Frame, StreamMode
from flowfabric_worker.worker.backend_port import BackendEngine
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

LANE = "streamtest"
#: Gates the producer between its two halves (created inside the test's loop).
GATES: dict[str, anyio.Event] = {}


@task(name="s.produce", lane=LANE)
async def produce(ctx: TaskContext, n: int, live_every: int) -> int:
    half = n // 2
    for i in range(n):
        if i == half and "mid" in GATES:
            await GATES["mid"].wait()
        await ctx.stream(f"tok-{i} ")
        if live_every and i % live_every == 0:
            await ctx.event("tick", {"i": i}, live=True)
    await ctx.stream(b"\x00\x01", kind="blob", correlation_id="c-1")
    await ctx.event({"done": n})
    return n


@task(name="s.fail_after", lane=LANE)
async def fail_after(ctx: TaskContext, n: int) -> None:
    for i in range(n):
        await ctx.stream(f"line {i}\n", kind="stderr")
    raise Permanent("gave up after streaming")


@task(name="s.summarise", lane=LANE)
async def summarise(ctx: TaskContext) -> str:
    await ctx.summary({"tokens": 1, "model": {"name": "m", "temperature": 0.5}, "gone": 1})
    await ctx.summary({"tokens": 2, "model": {"temperature": None}, "gone": None,
                       "stop": "__ff_null__"})
    return "ok"


@task(name="s.sync_produce", lane=LANE)
def sync_produce(ctx: TaskContext, n: int) -> list[str]:
    """A plain function: the worker runs it in a thread; it streams without await."""
    for i in range(n):
        ctx.stream(f"s{i};")
    ctx.event("done", {"n": n})
    ctx.summary({"n": n, "model": {"name": "sync"}})
    refused = []
    for bad in (lambda: ctx.stream("x", kind="stdin"), lambda: ctx.summary([1])):
        try:
            bad()
        except InvalidInput as exc:  # raised in the task's own thread
            refused.append(type(exc).__name__)
    return refused


@pytest.fixture
async def client(url: str) -> AsyncIterator[Client]:
    async with Client.connect(url) as c:
        yield c


def make_worker(client: Client) -> Worker:
    return Worker(client, tasks=[produce, fail_after, summarise, sync_produce], lanes=[LANE],
                  concurrency=4, lease_ttl=5, grace_period=1, scanner_interval_scale=0.05)


async def collect(run: RunHandle[Any], out: list[Frame], **kw: Any) -> None:
    async for f in run.frames(**kw):
        out.append(f)


def durable(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.mode is not StreamMode.BEST_EFFORT]


async def wait_for(cond: Any, limit: float = 10.0) -> None:
    with anyio.fail_after(limit):
        while not cond():  # noqa: ASYNC110 - waiting on another task's progress
            await anyio.sleep(0.01)


async def test_tails_before_during_after_see_every_durable_frame_once(client: Client) -> None:
    n = 300
    GATES["mid"] = anyio.Event()
    try:
        run = await produce.submit(client, n, 25)
        before: list[Frame] = []
        during: list[Frame] = []
        no_live: list[Frame] = []
        worker = make_worker(client)
        # Leaving the group waits for the tails: each must end by itself once
        # the stream is closed, or the outer limit fails the test.
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect, run, before)
                tg.start_soon(lambda: collect(run, no_live, include_best_effort=False))
                tg.start_soon(worker.run)
                # The first half is flushed by the writer's timer while the task waits.
                await wait_for(lambda: len(durable(before)) >= n // 2)
                tg.start_soon(collect, run, during)
                await wait_for(lambda: len(durable(during)) >= n // 2)
                GATES["mid"].set()
                assert await run.result() == n
                worker.stop()
        after: list[Frame] = []
        with anyio.fail_after(5):
            await collect(run, after)
    finally:
        GATES.clear()

    expected = [f"tok-{i} " for i in range(n)]
    for seen in (before, during, after, no_live):
        d = durable(seen)
        assert [f.text for f in d[:n]] == expected
        assert d[n].payload == b"\x00\x01" and d[n].frame_type == "blob"
        assert d[n].correlation_id == "c-1"
        assert json.loads(d[n + 1].text) == {"done": n} and d[n + 1].frame_type == "event"
        assert len(d) == n + 2
        ids = [f.id for f in seen]
        assert len(set(ids)) == len(ids)  # exactly once
        assert [f.timestamp_ms for f in seen] == sorted(f.timestamp_ms for f in seen)
    assert not any(f.mode is StreamMode.BEST_EFFORT for f in no_live)
    live = [json.loads(f.text) for f in before if f.mode is StreamMode.BEST_EFFORT]
    assert live and all(e["event"] == "tick" for e in live)
    meta = await client.backend.read_stream_meta(run.id, 0)
    assert meta is not None and meta.closed and meta.closed_reason == "attempt_success"
    assert meta.frame_count == n + 2 + len(range(0, n, 25))


async def test_frames_before_failure_all_present_and_closed_as_failure(client: Client) -> None:
    run = await fail_after.submit(client, 120)
    worker = make_worker(client)
    seen: list[Frame] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, run, seen)
        tg.start_soon(worker.run)
        with anyio.fail_after(10), pytest.raises(TaskFailed):
            await run.result()
        worker.stop()
    assert [f.text for f in seen] == [f"line {i}\n" for i in range(120)]
    assert {f.frame_type for f in seen} == {"stderr"}
    replay = [f async for f in run.frames(follow=False)]
    assert [f.id for f in replay] == [f.id for f in seen]
    meta = await client.backend.read_stream_meta(run.id, 0)
    assert meta is not None and meta.closed_reason == "attempt_failure"


async def test_summary_merge_visible_from_run_summary(client: Client) -> None:
    run = await summarise.submit(client)
    assert (await run.summary()).version == 0  # nothing yet
    worker = make_worker(client)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(10):
            assert await run.result() == "ok"
        worker.stop()
    s = await run.summary()
    assert s.version == 2
    assert s.document == {"tokens": 2, "model": {"name": "m"}, "stop": None}
    assert (await run.summary(attempt=0)).document == s.document
    patches = [f for f in [f async for f in run.frames()] if f.mode is StreamMode.SUMMARY]
    assert [f.summary_version for f in patches] == [1, 2]


@task(name="s.tokens_then_summary", lane=LANE)
async def tokens_then_summary(ctx: TaskContext, n: int) -> int:
    for i in range(n):
        await ctx.stream(f"tok-{i} ")
    await ctx.summary({"tokens": n})
    return n


async def test_summary_after_tokens_keeps_every_token(client: Client) -> None:
    # Issue 12, hole 1: a summary append trimmed the attempt stream to ~64
    # entries, so a replay after the fact lost the start of the text.
    n = 300
    run = await tokens_then_summary.submit(client, n)
    worker = Worker(client, tasks=[tokens_then_summary], lanes=[LANE], lease_ttl=5,
                    grace_period=1, scanner_interval_scale=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(10):
            assert await run.result() == n
        worker.stop()
    expected = [f"tok-{i} " for i in range(n)]
    for replay in ([f async for f in run.frames()], [f async for f in run.frames(follow=False)]):
        assert [f.text for f in replay if f.mode is StreamMode.DURABLE] == expected
        assert replay[-1].mode is StreamMode.SUMMARY and len(replay) == n + 1
    assert (await run.summary()).document == {"tokens": n}


async def test_stream_outside_a_worker_and_bad_arguments_are_refused() -> None:
    ctx = TaskContext(execution_id="e", attempt_index=0, attempt_type="initial",
                      lane="l", tags={})
    with pytest.raises(ConfigurationError, match="only available inside a worker"):
        await ctx.stream("x")
    with pytest.raises(ConfigurationError):
        await ctx.summary({"a": 1})

    class Dummy:
        pass

    from flowfabric_worker.context.streaming import emit_event, emit_stream, emit_summary

    fw = FrameWriter(Dummy(), eid="e", attempt_index=0, lease_id="l",  # type: ignore[arg-type]
                     lease_epoch=1, max_delay_s=60)
    with pytest.raises(InvalidInput, match="kind"):
        await emit_stream(fw, "x", kind="stdin")
    with pytest.raises(InvalidInput, match="mode"):
        await emit_stream(fw, "x", mode="forever")
    with pytest.raises(InvalidInput, match="summary"):
        await emit_stream(fw, "x", mode="summary")
    with pytest.raises(InvalidInput, match="str or bytes"):
        await emit_stream(fw, 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="JSON object"):
        await emit_summary(fw, [1, 2])
    with pytest.raises(InvalidInput, match="event name"):
        await emit_event(fw, {"a": 1}, data=2)
    assert fw.discard() == 0  # nothing invalid was queued


LOST: list[object] = []


@task(name="s.stream_then_wait", lane=LANE)
async def stream_then_wait(ctx: TaskContext, n: int) -> str:
    for i in range(n):
        await ctx.stream(f"{i};")
    if "queued" in GATES:
        GATES["queued"].set()
    try:
        await anyio.sleep(10)
    finally:
        LOST.append(ctx.lease_lost.is_set())
        try:
            await ctx.stream("late")
        except Exception as exc:  # LeaseLost, raised before anything is queued
            LOST.append(type(exc).__name__)
    return "never"


async def revoke_after_frames(client: Client, run: Any, n: int) -> None:
    """Once ``n`` frames of ``run`` are stored, revoke its lease (an operator's
    revoke: the worker learns of it at its next renewal)."""
    from flowfabric_worker.protocol.operator import RevokeLease

    seen = [f async for f in run.frames(follow=False)]
    while len(seen) < n:
        await anyio.sleep(0.02)
        seen = [f async for f in run.frames(follow=False)]
    core = await run.info()
    await client.backend.call(RevokeLease(
        eid=run.id, worker_instance_id=core.current_worker_instance_id or "",
        revoke_reason="operator"))


async def test_lease_loss_keeps_flushed_frames_and_refuses_later_ones(client: Client) -> None:
    LOST.clear()
    run = await stream_then_wait.submit(client, 10)
    worker = Worker(client, tasks=[stream_then_wait], lanes=[LANE], lease_ttl=5,
                    grace_period=1, reclaim=False, scanners=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(10):
            await revoke_after_frames(client, run, 10)
            while not worker.outcomes:  # noqa: ASYNC110 - the renewer notices on its tick
                await anyio.sleep(0.02)
        worker.stop()
    assert worker.outcomes == [(run.id, "lease_lost")]
    assert LOST == [True, "LeaseLost"]
    assert worker.executor.frames == {}  # the writer was dropped with the lease
    assert [f.text for f in [f async for f in run.frames(follow=False)]] == [
        f"{i};" for i in range(10)]


def slow_flush_writer(self: BackendEngine, lease: Claimed) -> FrameWriter:
    """Frames stay queued until something flushes them explicitly."""
    return FrameWriter(self.backend, eid=lease.execution_id, attempt_index=lease.attempt_index,
                       lease_id=lease.lease_id, lease_epoch=lease.lease_epoch, max_delay_s=60)


async def test_drain_hand_back_flushes_queued_frames_first(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BackendEngine, "frame_writer", slow_flush_writer)
    GATES["queued"] = anyio.Event()
    try:
        run = await stream_then_wait.submit(client, 7)
        worker = Worker(client, tasks=[stream_then_wait],
                        lanes=[LANE], lease_ttl=5, grace_period=0.05)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await GATES["queued"].wait()
                assert [f async for f in run.frames(follow=False)] == []  # still queued
                worker.stop()
    finally:
        GATES.clear()
    assert (run.id, "handed_back") in worker.outcomes
    texts = [f.text for f in [f async for f in run.frames(follow=False)]]
    assert texts[:7] == [f"{i};" for i in range(7)]
    # The task's own `finally` may still stream while the flush runs: sent too.
    assert texts[7:] in ([], ["late"])
    meta = await client.backend.read_stream_meta(run.id, 0)
    assert meta is not None and not meta.closed  # a hand-back does not end the attempt


async def test_sync_task_streams_from_its_thread(client: Client) -> None:
    run = await sync_produce.submit(client, 50)
    worker = make_worker(client)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            assert await run.result() == ["InvalidInput", "InvalidInput"]
            worker.stop()
    frames = [f async for f in run.frames(follow=False)]
    assert [f.text for f in frames[:50]] == [f"s{i};" for i in range(50)]
    assert json.loads(frames[50].text) == {"event": "done", "data": {"n": 50}}
    assert frames[51].mode is StreamMode.SUMMARY and len(frames) == 52
    s = await run.summary()
    assert s.version == 1 and s.document == {"n": 50, "model": {"name": "sync"}}


async def test_stream_from_a_foreign_thread_is_refused() -> None:
    import threading

    ctx = TaskContext(execution_id="e", attempt_index=0, attempt_type="initial",
                      lane="l", tags={})
    seen: list[BaseException] = []

    def in_thread() -> None:
        try:
            ctx.stream("x")
        except BaseException as exc:
            seen.append(exc)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(10)
    assert len(seen) == 1 and isinstance(seen[0], ConfigurationError)
    assert "event loop" in str(seen[0])


SYNC_LOST: list[object] = []


@task(name="s.sync_stream_then_wait", lane=LANE)
def sync_stream_then_wait(ctx: TaskContext, n: int) -> str:
    import time

    for i in range(n):
        ctx.stream(f"{i};")
    deadline = time.monotonic() + 10
    while not ctx.lease_lost.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        ctx.stream("late")
    except Exception as exc:  # LeaseLost, raised in this thread before anything is queued
        SYNC_LOST.append(type(exc).__name__)
    return "never"


async def test_sync_task_lease_loss_refuses_later_frames(client: Client) -> None:
    SYNC_LOST.clear()
    run = await sync_stream_then_wait.submit(client, 10)
    worker = Worker(client, tasks=[sync_stream_then_wait], lanes=[LANE], lease_ttl=5,
                    grace_period=1, reclaim=False, scanners=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(10):
            await revoke_after_frames(client, run, 10)
            while not worker.outcomes or not SYNC_LOST:  # noqa: ASYNC110 - other tasks' progress
                await anyio.sleep(0.02)
        worker.stop()
    assert worker.outcomes == [(run.id, "lease_lost")]
    assert SYNC_LOST == ["LeaseLost"]
    assert [f.text for f in [f async for f in run.frames(follow=False)]] == [
        f"{i};" for i in range(10)]
