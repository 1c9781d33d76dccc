"""Worker runtime logic against an in-process engine that implements the
runtime's Engine port with the same state rules (claim, fence, retry, expiry).

These prove scheduling, renewal, failure mapping and drain; the Redis-backed
adapter is exercised by the e2e tests.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.errors import ContractError, LeaseLost, PayloadError, Permanent, Transient
from flowfabric_worker.worker.failures import MAX_REASON_CHARS, classify
from flowfabric_worker.worker.port import FailOutcome
from flowfabric_worker.worker.scheduler import Backoff, PartitionWindow, Permits
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Exec:
    eid: str
    kind: str
    lane: str
    payload: bytes
    caps: frozenset[str] = frozenset()
    state: str = "eligible"  # eligible | active | delayed | completed | failed | blocked | expired
    attempts: int = 0
    epoch: int = 0
    lease_id: str = ""
    expires: int = 0
    eligible_at: int = 0
    result: bytes | None = None
    category: str = ""
    reason: str = ""
    completions: int = 0
    history: list[str] = field(default_factory=list)


class FakeEngine:
    """Engine port with the fence semantics of spec 02 (single partition)."""

    num_partitions = 4

    def __init__(self) -> None:
        self.execs: dict[str, Exec] = {}
        self.published: list[str] = []
        self.renew_fail: set[str] = set()

    def add(self, eid: str, kind: str, payload: bytes = b"[]", lane: str = "default",
            caps: frozenset[str] = frozenset()) -> Exec:
        e = Exec(eid, kind, lane, payload, caps)
        self.execs[eid] = e
        return e

    async def candidates(self, lane: str, partitions: list[int], per: int) -> list[list[str]]:
        t = now_ms()
        out: list[str] = []
        for e in self.execs.values():
            if e.state == "delayed" and e.eligible_at <= t:
                e.state = "eligible"
            if e.lane == lane and e.state == "eligible" and len(out) < per:
                out.append(e.eid)
        return [out] + [[] for _ in partitions[1:]]

    async def required_capabilities(self, eid: str) -> frozenset[str]:
        return self.execs[eid].caps

    async def block_for_capability(self, eid: str, lane: str) -> None:
        self.execs[eid].state = "blocked"

    def _lease(self, e: Exec, ttl: int) -> Claimed:
        e.epoch += 1
        e.lease_id = f"L{e.epoch}"
        e.expires = now_ms() + ttl
        e.state = "active"
        idx = e.attempts
        e.attempts += 1
        return Claimed(e.eid, e.lane, idx, f"A{idx}", e.lease_id, e.epoch, e.expires,
                       execution_kind=e.kind, payload=e.payload)

    async def claim(self, eid: str, lane: str, worker_id: str, instance: str,
                    caps: frozenset[str], ttl: int, grant_ttl: int) -> Claimed:
        e = self.execs[eid]
        if e.state != "eligible":
            raise ContractError("execution_not_eligible")
        return self._lease(e, ttl)

    async def list_reclaimable(self, lane: str, partition: int, limit: int) -> list[str]:
        t = now_ms()
        for e in self.execs.values():
            if e.state == "active" and e.expires <= t:
                e.state = "expired"
        return [e.eid for e in self.execs.values() if e.state == "expired" and e.lane == lane]

    async def reclaim(self, eid: str, lane: str, worker_id: str, instance: str,
                      caps: frozenset[str], ttl: int, grant_ttl: int) -> Claimed:
        return self._lease(self.execs[eid], ttl)

    def _check(self, lease: Claimed) -> Exec:
        e = self.execs[lease.execution_id]
        if e.state != "active":
            raise ContractError("execution_not_active")
        if e.epoch != lease.lease_epoch:
            raise ContractError("stale_lease")
        if e.expires <= now_ms():
            e.state = "expired"
            raise ContractError("lease_expired")
        return e

    async def renew(self, lease: Claimed, ttl: int) -> int:
        if lease.execution_id in self.renew_fail:
            raise ContractError("lease_revoked")
        e = self._check(lease)
        e.expires = now_ms() + ttl
        return e.expires

    async def complete(self, lease: Claimed, result: bytes) -> None:
        e = self._check(lease)
        e.state, e.result = "completed", result
        e.completions += 1

    async def fail(self, lease: Claimed, reason: str, category: str, policy: str) -> FailOutcome:
        e = self._check(lease)
        e.category, e.reason = category, reason
        e.history.append(category)
        if policy and e.attempts < int(policy):
            e.state, e.eligible_at = "delayed", now_ms() + 10
            return FailOutcome(True, e.eligible_at)
        e.state = "failed"
        return FailOutcome(False)

    async def cancel(self, lease: Claimed, reason: str) -> None:
        self._check(lease).state = "cancelled"

    async def hand_back(self, lease: Claimed, *, delay_ms: int = 0) -> None:
        e = self._check(lease)
        e.state, e.eligible_at = "delayed", now_ms() + delay_ms
        e.history.append("handed_back")

    async def update_progress(self, lease: Claimed, pct: float, message: str) -> None:
        self._check(lease).reason = f"{pct}:{message}"

    async def publish_done(self, eid: str) -> None:
        self.published.append(eid)


class Retry:
    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts

    def fail_policy_json(self, retry_count: int) -> str:
        return str(self.max_attempts)

    def should_retry(self, exc: BaseException) -> bool:
        return True


@dataclass
class T:
    """Minimal task definition (same attribute names as H6's TaskDefinition)."""

    name: str
    fn: Callable[..., Any]
    lane: str = "default"
    timeout: float | None = None
    capabilities: Any = frozenset()
    is_async: bool = True
    wants_context: bool = False
    retry: Any = None

    def decode_args(self, payload: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
        import json
        try:
            return tuple(json.loads(payload)), {}
        except ValueError as exc:
            raise PayloadError(f"bad payload: {exc}") from exc

    def encode_result(self, value: Any) -> bytes:
        import json
        return json.dumps(value).encode()


async def run_until(worker: Worker, cond: Callable[[], bool], limit: float = 5.0) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(limit):
            while not cond():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        worker.stop()


async def test_complete_and_publish() -> None:
    eng = FakeEngine()
    e = eng.add("e1", "add", b"[2, 3]")

    async def add(a: int, b: int) -> int:
        return a + b

    w = Worker(eng, [T("add", add)], lease_ttl=1.0)
    await run_until(w, lambda: e.state == "completed")
    assert e.result == b"5" and e.completions == 1 and eng.published == ["e1"]
    # A long-running worker keeps nothing of finished attempts.
    assert not w._inflight and not w._leases and not w.executor.frames


async def test_retry_then_success() -> None:
    eng = FakeEngine()
    e = eng.add("e1", "flaky")
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Transient("try again")
        return "ok"

    w = Worker(eng, [T("flaky", flaky, retry=Retry(5))], lease_ttl=1.0)
    await run_until(w, lambda: e.state == "completed")
    assert e.history == ["transient", "transient"] and e.attempts == 3


async def test_permanent_not_retried_and_reason_recorded() -> None:
    eng = FakeEngine()
    e = eng.add("e1", "bad")

    async def bad() -> None:
        raise Permanent("rejected by reviewer")

    w = Worker(eng, [T("bad", bad, retry=Retry(5))], lease_ttl=1.0)
    await run_until(w, lambda: e.state == "failed")
    assert e.attempts == 1 and e.category == "permanent"
    assert "Permanent: rejected by reviewer" in e.reason


async def test_payload_error_is_permanent() -> None:
    eng = FakeEngine()
    e = eng.add("e1", "add", b"not json")

    async def add(a: int) -> int:
        return a

    w = Worker(eng, [T("add", add, retry=Retry(5))], lease_ttl=1.0)
    await run_until(w, lambda: e.state == "failed")
    assert e.category == "permanent" and "PayloadError" in e.reason and e.attempts == 1


async def test_timeout_category() -> None:
    eng = FakeEngine()
    e = eng.add("e1", "slow")

    async def slow() -> None:
        await anyio.sleep(5)

    w = Worker(eng, [T("slow", slow, timeout=0.05)], lease_ttl=1.0)
    await run_until(w, lambda: e.state == "failed")
    assert e.category == "timeout"


async def test_unknown_task_is_handed_back_and_worker_keeps_going() -> None:
    eng = FakeEngine()
    u = eng.add("u", "nobody.knows")
    k = eng.add("k", "known")

    async def known() -> int:
        return 1

    w = Worker(eng, [T("known", known)], lease_ttl=1.0)
    await run_until(w, lambda: "handed_back" in u.history and k.state == "completed")
    assert u.state == "delayed" and u.category == "" and u.attempts == 1


async def test_unknown_task_fails_after_the_opt_in_bound() -> None:
    eng = FakeEngine()
    u = eng.add("u", "nobody.knows")

    async def known() -> int:
        return 1

    w = Worker(eng, [T("known", known)], lease_ttl=1.0, fail_unknown_after=1)
    await run_until(w, lambda: u.state == "failed")
    assert u.category == "unknown_task" and "nobody.knows" in u.reason


async def test_sync_function_with_context() -> None:
    eng = FakeEngine()
    e = eng.add("e1", "sync", b"[4]")
    seen: list[str] = []

    def sync(ctx: TaskContext, n: int) -> int:
        seen.append(ctx.execution_id)
        return n * n

    w = Worker(eng, [T("sync", sync, is_async=False, wants_context=True)], lease_ttl=1.0)
    await run_until(w, lambda: e.state == "completed")
    assert e.result == b"16" and seen == ["e1"]


async def test_lease_lost_cancels_task_and_late_complete_is_refused() -> None:
    eng = FakeEngine()
    e = eng.add("e1", "long")
    eng.renew_fail.add("e1")
    flags: list[bool] = []

    async def long(ctx: TaskContext) -> None:
        try:
            await anyio.sleep(5)
        finally:
            flags.append(ctx.lease_lost.is_set())

    w = Worker(eng, [T("long", long, wants_context=True)], lease_ttl=0.15, reclaim=False)
    await run_until(w, lambda: bool(w.outcomes))
    assert flags == [True] and w.outcomes == [("e1", "lease_lost")]
    assert e.completions == 0
    # A stale fence (the old lease after someone else took over) is refused, typed.
    old = Claimed("e1", "default", 0, "A0", "L1", 1, 0, execution_kind="long")
    eng._lease(e, 1000)
    with pytest.raises(LeaseLost):
        await w.executor._terminal(old, "complete", b"1")
    assert e.completions == 0


async def test_expired_lease_is_reclaimed_and_completed_once() -> None:
    eng = FakeEngine()
    e = eng.add("e1", "job")
    # Simulate a worker that claimed and died: active with an expired lease.
    eng._lease(e, 1)
    await anyio.sleep(0.01)

    async def job() -> str:
        return "done"

    w = Worker(eng, [T("job", job)], lease_ttl=1.0)
    await run_until(w, lambda: e.state == "completed")
    assert e.attempts == 2 and e.completions == 1


async def test_capability_mismatch_blocks() -> None:
    eng = FakeEngine()
    e = eng.add("e1", "job", caps=frozenset({"gpu"}))

    async def job() -> None:
        return None

    w = Worker(eng, [T("job", job)], lease_ttl=1.0)
    await run_until(w, lambda: e.state == "blocked")
    assert e.attempts == 0


async def test_drain_finishes_inflight_then_hands_back() -> None:
    eng = FakeEngine()
    quick = eng.add("q", "quick")
    stuck = eng.add("s", "stuck")

    async def quick_fn() -> int:
        await anyio.sleep(0.05)
        return 1

    async def stuck_fn() -> None:
        await anyio.sleep(30)

    w = Worker(eng, [T("quick", quick_fn), T("stuck", stuck_fn, retry=Retry(3))],
               lease_ttl=1.0, grace_period=0.3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        with anyio.fail_after(3):
            while stuck.state != "active" or quick.state != "active":  # noqa: ASYNC110
                await anyio.sleep(0.005)
        w.stop()
    assert quick.state == "completed"
    assert stuck.state == "delayed" and stuck.history == ["handed_back"]
    assert ("s", "handed_back") in w.outcomes


async def test_many_tasks_concurrency_exactly_once() -> None:
    eng = FakeEngine()
    es = [eng.add(f"e{i}", "job", f"[{i}]".encode()) for i in range(200)]

    async def job(i: int) -> int:
        await anyio.lowlevel.checkpoint()
        return i

    w = Worker(eng, [T("job", job)], concurrency=8, lease_ttl=1.0)
    await run_until(w, lambda: all(x.state == "completed" for x in es))
    assert all(x.completions == 1 for x in es)


async def test_a_long_running_worker_keeps_only_the_latest_outcomes(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import flowfabric_worker.worker.worker as worker_module

    monkeypatch.setattr(worker_module, "OUTCOMES_KEPT", 5)
    eng = FakeEngine()
    es = [eng.add(f"e{i}", "job", f"[{i}]".encode()) for i in range(60)]

    async def job(i: int) -> int:
        return i

    w = Worker(eng, [T("job", job)], concurrency=4, lease_ttl=1.0)
    with caplog.at_level("INFO", logger="flowfabric_worker.lifecycle"):
        await run_until(w, lambda: all(x.state == "completed" for x in es))
    assert 5 <= len(w.outcomes) <= 10  # was one entry per attempt, forever
    assert w.outcomes[-1][1] == "completed"
    stopped = [r for r in caplog.records if getattr(r, "event", "") == "worker_stopped"]
    assert stopped and stopped[-1].attempts == 60  # the totals still count everything


def test_classify_table() -> None:
    assert classify(Permanent("x")).retry is False
    assert classify(PayloadError("x")).category == "permanent"
    assert classify(Transient("x")).category == "transient"
    assert classify(TimeoutError()).category == "timeout"
    assert classify(ValueError("x")).category == "handler_error"
    assert classify(AssertionError("x")).category == "handler_panic"
    big = classify(ValueError("y" * 10_000))
    assert len(big.reason) <= MAX_REASON_CHARS
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as exc:
        d = classify(exc)
    assert "ValueError: outer" in d.reason and "KeyError" in d.reason


def test_backoff_window_permits() -> None:
    b = Backoff()
    assert [b.next() for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next() == 0.05
    w = PartitionWindow(100, "inst")
    seen: set[int] = set()
    for _ in range(4):  # ceil(100/32)
        seen.update(w.next_window())
    assert seen == set(range(100))
    p = Permits(2)
    assert p.try_acquire() and p.try_acquire() and not p.try_acquire()
    p.release()
    assert p.try_acquire()


async def test_ensure_lease_and_progress() -> None:
    got: list[tuple[float, str]] = []

    async def prog(pct: float, msg: str) -> None:
        got.append((pct, msg))

    ctx = TaskContext(execution_id="e", attempt_index=0, attempt_type="initial",
                      lane="l", tags={}, progress_fn=prog)
    await ctx.progress(10, "start")
    assert got == [(10, "start")]
    with pytest.raises(ValueError):
        await ctx.progress(120)
    ctx.mark_lease_lost("stale_lease")
    with pytest.raises(LeaseLost):
        ctx.ensure_lease()


async def test_lease_lost_can_be_awaited_and_read_from_a_thread() -> None:
    ctx = TaskContext(execution_id="e", attempt_index=0, attempt_type="initial",
                      lane="l", tags={})
    woke: list[str] = []

    async def watcher() -> None:
        await ctx.lease_lost.wait()
        woke.append(ctx.lease_lost_reason)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watcher)
        await anyio.sleep(0.01)
        # A plain thread (not one of anyio's) can look without an event loop.
        assert not await anyio.to_thread.run_sync(ctx.lease_lost.is_set)
        ctx.mark_lease_lost("lease_revoked")
    assert woke == ["lease_revoked"]
    seen: list[bool] = []
    t = threading.Thread(target=lambda: seen.append(ctx.lease_lost.is_set()))
    t.start()
    t.join(5)
    assert seen == [True]
    await ctx.lease_lost.wait()  # already set: returns at once


async def test_renewal_loop_forgets_a_finished_attempt_at_once() -> None:
    """Issue 18: the renewal loop holds a finished attempt's lease, context
    and cancel scope no longer than the attempt (its next renewal was due
    ttl/3 later); the collector is off, so reference counting alone frees them."""
    eng = FakeEngine()
    e = eng.add("e1", "keep", b"[]")
    refs: list[weakref.ref[TaskContext]] = []
    freed: list[bool] = []

    async def keep(ctx: TaskContext) -> int:
        refs.append(weakref.ref(ctx))
        return 1

    w = Worker(eng, [T("keep", keep, wants_context=True)], lease_ttl=30.0)

    def done() -> bool:
        if e.state == "completed" and w.outcomes and not w._inflight:
            renewals = w.executor.renewals
            freed.append(refs[0]() is None and renewals is not None
                         and not renewals._live)
            return True
        return False

    gc.disable()
    try:
        await run_until(w, done)
    finally:
        gc.enable()
    assert freed == [True]


async def test_a_claim_answered_after_its_lease_ran_out_runs_nothing() -> None:
    # The process was paused between sending the claim and reading its reply
    # (SIGSTOP, a long GC): by then another worker may own the execution, so
    # the body must not start at all (seen in the SIGSTOP fault runs).
    import dataclasses

    from flowfabric_worker.worker.executor import Executor

    eng = FakeEngine()
    e = eng.add("e1", "work")
    ran: list[int] = []

    async def work() -> int:
        ran.append(1)
        return 1

    lease = await eng.claim("e1", "default", "w", "w-1", frozenset(), 1000, 1000)
    late = dataclasses.replace(lease, claim_sent_at=time.monotonic() - 2.0)  # 2 TTLs ago
    outcome = await Executor(eng, {"work": T("work", work)}, 1000).run(late)  # type: ignore[arg-type]
    assert outcome == "lease_lost" and ran == [] and e.completions == 0
