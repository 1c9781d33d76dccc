"""Runs one claimed task to its terminal call (spec 05 §4, design.md §3)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio

from flowfabric_worker.context.attempt import Claimed, is_lease_lost
from flowfabric_worker.context.frame_writer import FrameWriter
from flowfabric_worker.context.streaming import FRAMES_EXTENSION
from flowfabric_worker.context.task_context import (
    JOURNAL_EXTENSION,
    LEASE_FENCE_MARGIN,
    TaskContext,
)
from flowfabric_worker.context.waits import TaskSuspended
from flowfabric_worker.errors import (
    ContractError,
    LeaseLost,
    PayloadError,
    ResultTypeError,
    TransportError,
)
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.bounds import DEFAULT_LIMITS
from flowfabric_worker.tasks.passed_input import INPUT_TAG, decode_passed_input
from flowfabric_worker.tasks.spec import TaskLike, TaskSpec
from flowfabric_worker.worker.failures import (
    MAX_REASON_CHARS,
    FailureDecision,
    classify,
    describe,
)
from flowfabric_worker.worker.port import Engine, FailOutcome
from flowfabric_worker.worker.renewer import Renewals, Renewer
from flowfabric_worker.worker.task_threads import TaskThreads
from flowfabric_worker.worker.telemetry import Attempt, Telemetry
from flowfabric_worker.worker.terminal_retry import TerminalRetry
from flowfabric_worker.worker.unknown_kinds import UnknownKinds, hand_back_delay_ms

log = logging.getLogger("flowfabric_worker.executor")


class Executor:
    """Executes claimed leases with the registered task functions."""

    def __init__(self, engine: Engine, tasks: Mapping[str, TaskLike], lease_ttl_ms: int,
                 limits: Limits = DEFAULT_LIMITS, telemetry: Telemetry | None = None,
                 unknown_kinds: UnknownKinds | None = None) -> None:
        self.engine = engine
        #: What happens to a claimed kind with no task here (worker/unknown_kinds.py).
        self.unknown_kinds = unknown_kinds or UnknownKinds()
        #: Log lines, metrics and spans of each attempt (docs/observability.md).
        self.telemetry = telemetry or Telemetry()
        #: The running attempts' telemetry, by execution id (the worker
        #: reports a drain hand-back on it).
        self.attempts: dict[str, Attempt] = {}
        self.tasks = dict(tasks)
        self.lease_ttl_ms = lease_ttl_ms
        #: Bounds results (and, through the context, children's payloads).
        self.limits = limits
        #: Frame writers of the attempts running now, by execution id (the
        #: worker flushes them itself before a drain hand-back).
        self.frames: dict[str, FrameWriter] = {}
        #: The worker's shared renewal loop, once it runs (see _renewal).
        self.renewals: Renewals | None = None
        #: Contexts of the attempts running now, by execution id (the worker
        #: fences them before a drain hand-back).
        self.contexts: dict[str, TaskContext] = {}
        #: Daemon threads of the sync bodies, and the abandoned ones.
        self.threads = TaskThreads()
        #: The attempt each running async body belongs to, by the id of the
        #: event-loop task it runs in: the loop watchdog names the execution
        #: whose body blocks the loop.
        self.loop_tasks: dict[int, str] = {}

    async def run(self, lease: Claimed, shutdown: anyio.Event | None = None) -> str:
        """Run ``lease`` to completion; returns the outcome label (for tests/metrics)."""
        ctx = TaskContext(
            execution_id=lease.execution_id, attempt_index=lease.attempt_index,
            attempt_type=lease.attempt_type, lane=lease.lane, tags=lease.tags,
            progress_fn=lambda pct, msg: self.engine.update_progress(lease, pct, msg),
            limits=self.limits, task=lease.execution_kind,
        )
        # The fence counts from when the claim was sent (an engine that does
        # not say: from now, just after its answer arrived).
        ctx.confirm_lease(lease.claim_sent_at or time.monotonic(), self.lease_ttl_ms / 1000)
        if ctx.lease_expired(margin=self.lease_ttl_ms / 1000 * LEASE_FENCE_MARGIN):
            # The claim's answer came back after the lease could have run out
            # (the process was paused between sending the claim and reading
            # the reply): another worker may already own the execution, so
            # nothing of the body runs. No terminal call either; the lease
            # expires and the execution is reclaimed as after a crash.
            Attempt(self.telemetry, lease).lease_lost(
                "not started: the lease may have expired before the claim's answer was "
                "read (process paused?)")
            return "lease_lost"
        att = self.telemetry.begin(lease)
        self.attempts[lease.execution_id] = att
        self.contexts[lease.execution_id] = ctx
        opener = getattr(self.engine, "frame_writer", None)
        if callable(opener):
            def open_frames() -> FrameWriter:
                fw: FrameWriter = opener(lease)
                self.frames[lease.execution_id] = fw
                return fw

            ctx.extensions.lazy(FRAMES_EXTENSION, open_frames)
        durable = getattr(self.engine, "install_durable", None)
        if callable(durable):
            durable(ctx, lease, lambda: self.flush_frames(lease))
        task = self.tasks.get(lease.execution_kind)
        body = anyio.CancelScope()
        with att:
            try:
                outcome = await self._attempt(task, lease, ctx, body, att)
            except LeaseLost as exc:  # refused terminal call: someone else owns it now
                att.lease_lost(exc.reason)
                raise
            finally:
                self.attempts.pop(lease.execution_id, None)
        return outcome

    async def _attempt(self, task: TaskLike | None, lease: Claimed, ctx: TaskContext,
                       body: anyio.CancelScope, att: Attempt) -> str:
        renewals = self.renewals
        if renewals is None:
            async with self._renewal(lease, ctx, body):
                return await self._attempt_renewed(task, lease, ctx, body, att)
        # The worker's shared renewal loop: added and removed inline (an async
        # context manager per attempt was ~2% of a no-op drain's CPU).
        renewer = Renewer(self.engine, lease, ctx, body, self.lease_ttl_ms,
                          self.telemetry.metrics)
        renewals.add(renewer)
        try:
            return await self._attempt_renewed(task, lease, ctx, body, att)
        finally:
            # Dropped from the loop at once: nothing of this attempt stays
            # referenced by the renewal heap (see Renewals).
            renewals.remove(renewer)

    async def _attempt_renewed(self, task: TaskLike | None, lease: Claimed, ctx: TaskContext,
                               body: anyio.CancelScope, att: Attempt) -> str:
        """The attempt while its lease is renewed; renewal stops only once
        the terminal call has answered (spec 05 §4.2)."""
        outcome = "not_run"
        try:
            if task is None and self.unknown_kinds.should_fail(lease):
                outcome = await self._fail(lease, att, FailureDecision(
                    "unknown_task", self.unknown_kinds.reason(lease), retry=False))
            elif task is None:
                outcome = await self._hand_back_unknown(lease, att)
            else:
                outcome = await self._execute(task, lease, ctx, body, att)
        finally:
            if lease.quota_policy_id and outcome not in ("not_run", "lease_lost"):
                await self._release_quota(lease)
            fw = self.frames.pop(lease.execution_id, None)
            if fw is not None and (ctx.lease_gone
                                   or outcome in ("lease_lost", "suspended")):
                fw.discard()  # the server refuses appends without the lease
            self.contexts.pop(lease.execution_id, None)
            # Whatever happened, this attempt is over: a sync body still
            # running in its abandoned thread must not pass ensure_lease.
            ctx.end_attempt(f"attempt ended ({outcome})")
        return outcome

    async def _hand_back_unknown(self, lease: Claimed, att: Attempt) -> str:
        """Not our kind: park the same attempt for another worker (no failure,
        no attempt consumed), back-off from the execution's claim count."""
        delay_ms = hand_back_delay_ms(lease.lease_epoch)
        try:
            await self.engine.hand_back(lease, delay_ms=delay_ms)
        except Exception as exc:
            if is_lease_lost(exc):  # someone else's now: nothing of ours to undo
                att.lease_lost(str(exc))
                return "lease_lost"
            raise
        # Not promoted by this worker when due (unlike its retries): whoever
        # promotes it gets a head start in claiming it, and here that must
        # not be the worker that cannot run it. The delayed_promoter scanner
        # of any process does it.
        att.handed_back(self.unknown_kinds.reason(lease))
        return "handed_back"

    @asynccontextmanager
    async def _renewal(self, lease: Claimed, ctx: TaskContext, body: anyio.CancelScope
                       ) -> AsyncIterator[None]:
        """Renew ``lease`` while the block runs, with a renewer of its own
        (an executor used without a worker's shared renewal loop)."""
        renewer = Renewer(self.engine, lease, ctx, body, self.lease_ttl_ms,
                          self.telemetry.metrics)
        async with anyio.create_task_group() as tg:
            tg.start_soon(renewer.run)
            try:
                yield
            finally:
                renewer.stopped = True
                tg.cancel_scope.cancel()

    async def _release_quota(self, lease: Claimed) -> None:
        """The attempt no longer runs: its quota concurrency slot is free
        (docs/budgets.md). A lost lease keeps it; the reconciler repairs."""
        release = getattr(self.engine, "release_admission", None)
        if not callable(release):
            return
        with anyio.CancelScope(shield=True):
            try:
                await release(lease)
            except Exception as exc:
                log.warning("quota slot of %s not released: %s", lease.execution_id, exc)

    async def _execute(
        self, task: TaskLike, lease: Claimed, ctx: TaskContext, body: anyio.CancelScope,
        att: Attempt,
    ) -> str:
        value: Any = None
        error: BaseException | None = None
        suspended: TaskSuspended | None = None
        with body:
            try:
                upstream = lease.tags.get(INPUT_TAG)
                if upstream:  # an upstream's result is the argument
                    args, kwargs = decode_passed_input(task, lease.payload, upstream)
                else:
                    args, kwargs = task.decode_args(lease.payload)
                if task.wants_context:
                    args = (ctx, *args)
                limit = _time_limit(task, lease)
                if limit is not None and limit <= 0:
                    raise TimeoutError("execution deadline already passed")
                if limit is not None:
                    # Also checked by ensure_lease: a body that runs on past
                    # the limit (shielded, or a sync one in its abandoned
                    # thread) is fenced, not only cancelled.
                    ctx.set_time_limit(time.monotonic() + limit)
                active = ctx.activate()  # TaskContext.current(), task.child(...)
                try:
                    label = f"{task.name} {lease.execution_id}"
                    with anyio.fail_after(limit) if limit is not None else _null():
                        if task.is_async:
                            loop_task = _loop_task_id()
                            self.loop_tasks[loop_task] = label
                            try:
                                value = await task.fn(*args, **kwargs)
                            finally:
                                self.loop_tasks.pop(loop_task, None)
                        else:
                            # Cancelled (timeout, drain): the body keeps its
                            # thread, abandoned and counted (task_threads.py).
                            value = await self.threads.run(
                                lambda: task.fn(*args, **kwargs), label)
                finally:
                    ctx.deactivate(active)
            except TaskSuspended as exc:
                suspended = exc
            except PayloadError as exc:
                error = exc
            except Exception as exc:
                error = exc
            except BaseExceptionGroup as group:
                # A wait inside the task's own task group arrives wrapped.
                match, _rest = group.split(TaskSuspended)
                if match is None:
                    raise
                suspended = TaskSuspended(lease.execution_id, "")
        if suspended is not None:
            # The lease is released and the execution parked: no terminal
            # call; a signal (or the timeout) makes it claimable again.
            att.suspended()
            return "suspended"
        if ctx.timed_out and (error is None or isinstance(error, LeaseLost)):
            # Fenced by its time limit: the body raised the fence's LeaseLost
            # or swallowed it, but the attempt timed out and fails as such.
            error = TimeoutError("attempt time limit passed")
        if body.cancelled_caught or ctx.lease_gone:
            if ctx.lease_gone:  # else ended by a drain: the worker reports the hand-back
                att.lease_lost(ctx.lease_lost_reason or "cancelled")
            else:
                log.info("task %s stopped: %s", lease.execution_id,
                         ctx.lease_lost_reason or "cancelled")
            return "lease_lost"
        # A resumed run is checked even if it never used its journal; any
        # other run only if it did (StepJournal.check_finished).
        journal = (ctx.extensions.get(JOURNAL_EXTENSION) if lease.resumed
                   else ctx.extensions.peek(JOURNAL_EXTENSION))
        if journal is not None and error is None:
            await journal.check_finished()
        violation = getattr(journal, "violation", None)
        if violation is not None:
            # Even when the task caught it: its journal no longer describes it.
            return await self._fail(lease, att, classify(violation), exc=violation)
        if error is not None:
            decision = classify(error, getattr(task, "retry", None))
            return await self._fail(lease, att, decision, getattr(task, "retry", None), error)
        try:
            result = (task.encode_result(value, limits=self.limits)
                      if isinstance(task, TaskSpec) else task.encode_result(value))
            # Over the bound the attempt fails for good (a rerun returns the
            # same value): a 200 MB result is never written.
            codec.check_size(result, self.limits.max_result_bytes,
                             f"result of task {lease.execution_kind}", "max_result_bytes")
        except ResultTypeError as exc:
            # The task's own mistake, named as such (not the caller's later
            # decode error); a rerun would return the same kind of value.
            return await self._fail(lease, att, FailureDecision(
                "result_type", f"ResultTypeError: {exc}"[:MAX_REASON_CHARS], retry=False), exc=exc)
        except Exception as exc:
            return await self._fail(lease, att, FailureDecision(
                "result_encode", describe(exc), retry=False), exc=exc)
        await self._terminal(lease, "complete", result)
        att.succeeded()
        return "completed"

    async def _fail(self, lease: Claimed, att: Attempt, decision: FailureDecision,
                    retry: Any = None, exc: BaseException | None = None) -> str:
        policy = ""
        if decision.retry:
            fn = getattr(retry, "fail_policy_json", None)
            policy = fn(lease.retry_count) if callable(fn) else ""
        answer = await self._terminal(lease, "fail", (decision, policy))
        att.failed(decision, answer if isinstance(answer, FailOutcome) else None, retry,
                   policy, exc)
        return f"failed:{decision.category}"

    async def _terminal(self, lease: Claimed, op: str, arg: Any) -> Any:
        """Terminal call, retried on transport errors for as long as the
        lease is known to be ours (:mod:`.terminal_retry`); replays are
        reconciled by the engine adapter (spec 05 §4.4). Lease loss →
        :class:`LeaseLost`."""
        await self.flush_frames(lease)
        retry = TerminalRetry(op, lease.execution_id, self.contexts.get(lease.execution_id))
        answer: Any = None
        while True:
            try:
                if op == "complete":
                    await self.engine.complete(lease, arg)
                elif op == "fail":
                    decision, policy = arg
                    answer = await self.engine.fail(lease, decision.reason, decision.category,
                                                    policy)
                else:
                    await self.engine.cancel(lease, str(arg))
                break
            except (TransportError, OSError) as exc:
                delay = retry.note_failure(exc, log)
                if delay is None:
                    raise
                await anyio.sleep(delay)
            except ContractError as exc:
                if is_lease_lost(exc):
                    raise LeaseLost(lease.execution_id, exc.code) from exc
                raise
        if not getattr(self.engine, "publishes_done", False):
            await self.engine.publish_done(lease.execution_id)
        return answer

    async def flush_frames(self, lease: Claimed, fw: FrameWriter | None = None) -> None:
        """Send the attempt's queued frames. Must precede every terminal or
        hand-back call: those close the stream (or move the lease) and later
        appends are refused. A refusal here is logged, never fatal: the
        outcome matters more than the frames, and a lost lease is reported by
        the terminal call itself."""
        fw = fw or self.frames.get(lease.execution_id)
        if fw is None:
            return
        try:
            await fw.aclose()
        except Exception as exc:
            log.warning("frames of %s not all written: %s", lease.execution_id, exc)


def _loop_task_id() -> int:
    """The running task's id as the loop watchdog sees it (``id`` of the
    asyncio task): asyncio's own lookup, a few times cheaper than anyio's."""
    try:
        running = asyncio.current_task()
    except RuntimeError:  # another event loop (trio): anyio knows
        running = None
    return id(running) if running is not None else anyio.get_current_task().id


def _time_limit(task: TaskLike, lease: Claimed) -> float | None:
    """Seconds this attempt may run: the per-attempt timeout, capped by what is
    left of the whole-execution deadline (counted from creation)."""
    limits: list[float] = []
    if task.timeout:
        limits.append(task.timeout)
    deadline = getattr(task, "deadline", None)
    if deadline and lease.created_at_ms:
        limits.append(lease.created_at_ms / 1000 + deadline - time.time())
    return min(limits) if limits else None


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
