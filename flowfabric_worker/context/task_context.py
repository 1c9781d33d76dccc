"""TaskContext: what a running task sees of its execution.

Later features attach themselves through the ``extensions`` mapping (e.g. a
frames writer, a step journal, a flow spawner) from their own modules, so this
class stays small: ``ctx.extensions["frames"]`` is set by the worker when that
feature is installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, overload

import anyio

from flowfabric_worker.context.extensions import Extensions
from flowfabric_worker.context.lease_lost_event import LeaseLostEvent
from flowfabric_worker.context.step_journal import StepJournal
from flowfabric_worker.context.streaming import emit_event, emit_stream, emit_summary, writer_of
from flowfabric_worker.context.sync_context import SyncContext
from flowfabric_worker.context.thread_bridge import loop_or_thread
from flowfabric_worker.context.usage_reporter import USAGE_EXTENSION
from flowfabric_worker.context.waits import (
    DEFAULT_WAITPOINT_TTL,
    OnTimeout,
    Signal,
    Waitpoint,
    Waits,
)
from flowfabric_worker.errors import ConfigurationError, LeaseLost
from flowfabric_worker.observability import tracing
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks.bounds import DEFAULT_LIMITS
from flowfabric_worker.tasks.budgets import UsageReport, usage_deltas
from flowfabric_worker.tasks.schedule_specs import ScheduleTick

if TYPE_CHECKING:
    from flowfabric_worker.context.children import ChildHandle, Children
    from flowfabric_worker.tasks.spec import TaskSpec


T = TypeVar("T")


#: ``ctx.extensions`` keys of the durable-execution features (installed by
#: the worker when its engine is a real backend).
JOURNAL_EXTENSION = "journal"


WAITS_EXTENSION = "waits"


CHILDREN_EXTENSION = "children"


_base_log = logging.getLogger("flowfabric_worker.task")




#: Part of the lease TTL that :meth:`TaskContext.ensure_lease` keeps in hand:
#: it fails once less than this fraction of the TTL remains of the last
#: confirmed lease. Renewals go out every third of the TTL, so a healthy
#: lease always has about two thirds left and never comes near it; the
#: margin covers the time between the check and the side effect it guards
#: landing (and clock rate drift between worker and server, parts per million).
LEASE_FENCE_MARGIN = 0.1


class _ExecutionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds the execution's fields to every record, as the worker's lifecycle
    lines carry them: ``execution_id``, ``task``, ``attempt``, ``lane``
    (written by the JSON and text formatters of ``observability.logs``)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


#: The context of the task running in this (async or worker-thread) context.
_current: ContextVar[TaskContext | None] = ContextVar("ffw_task_context", default=None)


class TaskContext:
    """Handed to a task function as its first parameter when annotated.

    Example::

        @task()
        async def work(ctx: TaskContext, n: int) -> int:
            await ctx.progress(50, "half way")
            ctx.ensure_lease()          # before an irreversible side effect
            return n * 2
    """

    #: Marks this class for the task spec (see ``tasks.spec.CONTEXT_MARKER``).
    __ffw_task_context__: ClassVar[bool] = True

    def __init__(
        self,
        *,
        execution_id: str,
        attempt_index: int,
        attempt_type: str,
        lane: str,
        tags: Mapping[str, str],
        progress_fn: Callable[[float, str], Awaitable[None]] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        task: str = "",
    ) -> None:
        self.execution_id = execution_id
        #: The name of the task this attempt runs.
        self.task = task
        #: The worker's bounds; children spawned here are checked against them.
        self.limits = limits
        self.attempt_index = attempt_index
        self.attempt_type = attempt_type
        self.lane = lane
        self.tags: Mapping[str, str] = dict(tags)
        #: Set once the attempt can no longer complete: a terminal renewal
        #: error, local lease expiry, its time limit, a drain hand-back, or
        #: the attempt's end (see ensure_lease).
        self.lease_lost = LeaseLostEvent()
        self.lease_lost_reason = ""
        #: The lease itself is gone (refused renewal, local expiry): no
        #: terminal call can land. False when only the attempt was ended
        #: (time limit: the executor still records the timeout under it).
        self.lease_gone = False
        #: The attempt's time limit passed (set by ensure_lease or the executor).
        self.timed_out = False
        #: time.monotonic() until which the lease is known valid: when the
        #: last successful claim / renewal was sent plus the TTL it granted.
        self._lease_valid_until: float | None = None
        self._lease_margin = 0.0
        #: time.monotonic() of the executor's time limit for this attempt.
        self._time_limit_at: float | None = None
        self._guard: anyio.Lock | None = None
        self.lease_released = False
        #: Feature hooks installed by the worker (frames, journal, flows...).
        self.extensions = Extensions()
        self._progress_fn = progress_fn
        #: A logger bound to this execution: ``ctx.log.info("…")``.
        self.log = _ExecutionLog(
            _base_log, {"execution_id": execution_id, "task": task,
                        "attempt": attempt_index, "lane": lane})

    def progress(self, pct: float, message: str = "") -> Awaitable[None]:
        """Record progress (0..100) on the execution (``ff_update_progress``).
        Awaited in async tasks, called plainly in sync ones (see :meth:`stream`)."""
        if not 0 <= pct <= 100:
            raise ValueError(f"progress percentage must be within 0..100, got {pct}")

        async def send() -> None:
            self.ensure_lease()
            if self._progress_fn is not None:
                await self._progress_fn(pct, message)
        return loop_or_thread(send)

    @staticmethod
    def current() -> TaskContext:
        """The context of the task running now (also inside a sync task's
        thread); :class:`~flowfabric_worker.errors.ConfigurationError`
        outside a task run by a worker."""
        ctx = _current.get()
        if ctx is None:
            raise ConfigurationError(
                "no task is running here: this needs a task executed by a worker")
        return ctx

    def activate(self) -> Token[TaskContext | None]:
        """Make this the :meth:`current` context (the executor does, around
        the task function); undo with ``_current.reset(token)``."""
        return _current.set(self)

    @staticmethod
    def deactivate(token: Token[TaskContext | None]) -> None:
        _current.reset(token)

    @property
    def schedule(self) -> ScheduleTick | None:
        """``(schedule_id, tick)`` when a recurring schedule started this
        run — ``tick`` is the nominal tick time in UTC — else None."""
        return ScheduleTick.from_tags(self.tags)

    @property
    def sync(self) -> SyncContext:
        """Blocking versions of the async methods (``step``,
        ``wait_for_signal``, ``sleep``, ``waitpoint``, ``child``, ``gather``,
        ``report_usage``) for a sync task function, which the worker runs in
        a thread: ``ctx.sync.wait_for_signal("approve")``."""
        return SyncContext(self)

    def stream(
        self, data: str | bytes, *, kind: str = "stdout", frame_type: str | None = None,
        correlation_id: str | None = None, mode: str = "durable",
    ) -> Awaitable[None]:
        """Append one frame to this attempt's stream (text or bytes).

        ``kind`` is ``stdout``, ``stderr``, ``event`` or ``blob``; ``mode`` is
        ``durable`` (kept until the stream's retention cap) or ``best_effort``
        (live-only, trimmed by rate and TTL). Frames are batched: the call
        usually returns without a round trip, and the worker flushes them
        before the attempt ends, so consumers never see a finished attempt
        with frames missing. See docs/streams.md.

        ``await`` it in an async task; in a plain (sync) task, which the worker
        runs in a thread, just call it: the frame is queued on the worker's
        event loop before the call returns.
        """
        async def emit() -> None:
            self.ensure_lease()
            if await self._output_replayed():
                return
            await emit_stream(writer_of(self.extensions), data, kind=kind,
                              frame_type=frame_type, correlation_id=correlation_id, mode=mode)
        return loop_or_thread(emit)

    def event(self, obj_or_name: Any, data: Any = None, *, live: bool = False) -> Awaitable[None]:
        """A structured (JSON) event frame: ``event("name", data)`` or
        ``event(obj)`` for a dict/dataclass/model. ``live=True`` → best-effort.
        Awaited in async tasks, called plainly in sync ones (see :meth:`stream`)."""
        async def emit() -> None:
            self.ensure_lease()
            if await self._output_replayed():
                return
            await emit_event(writer_of(self.extensions), obj_or_name, data, live=live)
        return loop_or_thread(emit)

    def summary(self, patch: Any) -> Awaitable[None]:
        """Merge ``patch`` into this attempt's summary document (JSON Merge
        Patch: ``None`` deletes a key; read it with ``run.summary()``).
        Awaited in async tasks, called plainly in sync ones (see :meth:`stream`)."""
        async def emit() -> None:
            self.ensure_lease()
            if await self._output_replayed():
                return
            await emit_summary(writer_of(self.extensions), patch)
        return loop_or_thread(emit)

    # -- durable execution: steps, signals, sleeps (docs/signals.md) ----------

    def _journal(self) -> StepJournal:
        j = self.extensions.get(JOURNAL_EXTENSION)
        if j is None:
            raise ConfigurationError(
                "durable steps and signals need a worker running on a backend")
        return j  # type: ignore[no-any-return]

    def _waits(self) -> Waits:
        self._journal()
        return self.extensions[WAITS_EXTENSION]  # type: ignore[no-any-return]

    async def step(self, name: str, fn: Callable[..., Any], *args: Any,
                   result_type: Any = None, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (sync or async) once per execution.

        The result is encoded (JSON / msgspec / pydantic, typed by ``fn``'s
        return annotation or ``result_type``) and journaled under the lease;
        when the task runs again (after a suspension, a retry or a lost
        worker) the step returns the recorded result without calling ``fn``.
        Steps must be reached in the same order with the same names on every
        run, otherwise :class:`~flowfabric_worker.errors.NonDeterminismError`
        fails the execution. Example::

            order = await ctx.step("charge", charge_card, order_id)
        """
        self.ensure_lease()
        journal = self._journal()
        with tracing.span(f"step {name}", {"ffw.step.name": name}):
            return await journal.step(name, fn, args, kwargs, result_type)

    async def waitpoint(self, name: str = "", *,
                        expires_in: float = DEFAULT_WAITPOINT_TTL) -> Waitpoint:
        """Create a pending waitpoint now, to hand its id and token to an
        outside system before waiting (``wait_for_signal(waitpoint=wp)``).
        Signals sent to it before the task waits are buffered, not lost.
        Journaled: a replay returns the same waitpoint. A pending waitpoint
        nobody waited on is closed after ``expires_in`` seconds."""
        self.ensure_lease()
        return await self._waits().waitpoint(name, expires_in)

    @overload
    async def wait_for_signal(
        self, names: str | Sequence[str] | None = None, *, mode: Literal["any"] = "any",
        timeout: float | None = None, on_timeout: OnTimeout = "fail",  # noqa: ASYNC109
        payload_type: type[T], waitpoint: Waitpoint | None = None,
        reason: str = "waiting_for_signal",
    ) -> Signal[T]: ...

    @overload
    async def wait_for_signal(
        self, names: str | Sequence[str] | None = None, *, mode: Literal["any"] = "any",
        timeout: float | None = None, on_timeout: OnTimeout = "fail",  # noqa: ASYNC109
        payload_type: None = None, waitpoint: Waitpoint | None = None,
        reason: str = "waiting_for_signal",
    ) -> Signal[Any]: ...

    @overload
    async def wait_for_signal(
        self, names: str | Sequence[str] | None = None, *, mode: Literal["all"] | int,
        timeout: float | None = None, on_timeout: OnTimeout = "fail",  # noqa: ASYNC109
        payload_type: type[T], waitpoint: Waitpoint | None = None,
        reason: str = "waiting_for_signal",
    ) -> list[Signal[T]]: ...

    @overload
    async def wait_for_signal(
        self, names: str | Sequence[str] | None = None, *, mode: Literal["all"] | int,
        timeout: float | None = None, on_timeout: OnTimeout = "fail",  # noqa: ASYNC109
        payload_type: None = None, waitpoint: Waitpoint | None = None,
        reason: str = "waiting_for_signal",
    ) -> list[Signal[Any]]: ...

    async def wait_for_signal(
        self, names: str | Sequence[str] | None = None, *, mode: str | int = "any",
        timeout: float | None = None, on_timeout: OnTimeout = "fail",  # noqa: ASYNC109
        payload_type: Any = None, waitpoint: Waitpoint | None = None,
        reason: str = "waiting_for_signal",
    ) -> Any:
        """Suspend until signal(s) arrive; returns what resumed the task.

        ``names``: a name, a list of names, or ``None`` for any signal.
        ``mode``: ``"any"`` (the first matching signal; returns one
        :class:`Signal`), ``"all"`` (one of each name; returns a list in
        name order) or a count ``n`` (any ``n`` signals of those names;
        returns a list). ``timeout`` (seconds) with ``on_timeout``:
        ``"fail"`` / ``"cancel"`` / ``"expire"`` end the execution that way
        when the time passes; ``"auto_resume"`` resumes the task and this
        call raises :class:`~flowfabric_worker.errors.SignalTimeout`.
        ``payload_type`` decodes payloads (JSON, msgspec, pydantic).
        ``waitpoint`` waits on one made earlier by :meth:`waitpoint`.

        While waiting, the lease and the worker slot are released: the task
        body is abandoned here and runs again from the top once resumed
        (journaled steps return recorded results). Example::

            decision = await ctx.wait_for_signal("approve", timeout=3600,
                                                 payload_type=Decision)
        """
        self.ensure_lease()
        names_arg = None if names is None else (names if isinstance(names, str) else list(names))
        return await self._waits().wait(
            names_arg, mode=mode, timeout=timeout, on_timeout=on_timeout,
            payload_type=payload_type, waitpoint=waitpoint, reason=reason)

    async def sleep(self, seconds: float) -> None:
        """Durable sleep: release the worker slot for ``seconds`` (suspend
        with a timeout that resumes automatically), journaled so that later
        runs do not sleep again. Use ``anyio.sleep`` for short pauses."""
        self.ensure_lease()
        await self._waits().sleep(seconds)

    # -- child executions (docs/flows.md "Flows from code") --------------------

    def _children(self) -> Children:
        self._journal()
        return self.extensions[CHILDREN_EXTENSION]  # type: ignore[no-any-return]

    def child(self, task: TaskSpec[Any, T] | str, *args: Any,
              **kwargs: Any) -> ChildHandle[T]:
        """A child execution of ``task(*args, **kwargs)``; ``await`` it for its
        result (:class:`~flowfabric_worker.errors.ChildFailed` when it did not
        complete). While the parent waits, its lease and worker slot are
        released; it runs again from the top once the child is done, and
        gets the same child back (spawns are journaled). Example::

            summary = await ctx.child(summarize, doc)
        """
        return self._children().submit(task, args, kwargs)

    def submit(self, task: TaskSpec[Any, T] | str, *args: Any,
               after: Sequence[ChildHandle[Any]] = (), join: Any = None,
               **kwargs: Any) -> ChildHandle[T]:
        """Like :meth:`child`, but the child runs only after the children in
        ``after`` (combined by ``join``: ``all_of()`` by default, ``any_of()``
        or ``quorum(n)``; skipped when that cannot be met). It is spawned at
        the next ``await`` of a child or :meth:`gather`."""
        return self._children().submit(task, args, kwargs, after, join)

    async def gather(self, *children: ChildHandle[Any],
                     return_exceptions: bool = False) -> list[Any]:
        """Spawn and wait for several children at once (one wait, whatever
        their number); results in argument order. A child that did not
        complete raises :class:`~flowfabric_worker.errors.ChildFailed`, or is
        returned as one with ``return_exceptions=True``. Example::

            parts = await ctx.gather(*(ctx.child(fetch, u) for u in urls))
        """
        self.ensure_lease()
        return await self._children().gather(list(children),
                                             return_exceptions=return_exceptions)

    async def _output_replayed(self) -> bool:
        """Frames a resumed run re-emits before reaching the point where the
        previous run of the same attempt suspended are already in this
        attempt's stream: drop them instead of writing them twice."""
        j = self.extensions.get(JOURNAL_EXTENSION)
        return bool(j is not None and await j.output_replayed())

    # -- budgets (docs/budgets.md) ---------------------------------------------

    async def report_usage(self, usage: Mapping[str, int] | None = None, /,
                           **dimensions: int) -> UsageReport:
        """Report usage against every budget attached to this execution.

        Pass a mapping and/or keywords: ``await ctx.report_usage(tokens=120,
        cost_microusd=3)``. Deltas are non-negative integers, at most 64
        dimensions. A report that would take a budget past a hard limit is
        not counted there and raises
        :class:`~flowfabric_worker.errors.BudgetExceeded` (uncaught, the
        execution fails without retry, category ``budget_hard_breach``).
        Passing a soft limit logs a warning in this execution's log and is
        told by the returned :class:`~flowfabric_worker.UsageReport`.
        Each report is counted once even when resent after a connection
        error, and a replay after a suspension re-sends the same reports,
        which are not counted again. No budget attached: nothing is sent.
        """
        reporter = self.extensions.get(USAGE_EXTENSION)
        if reporter is None:
            raise ConfigurationError("usage reports need a worker running on a backend")
        return await reporter.report(usage_deltas(usage, dimensions))  # type: ignore[no-any-return]

    @property
    def replaying(self) -> bool:
        """True while the task is re-running calls recorded by an earlier run."""
        j = self.extensions.get(JOURNAL_EXTENSION)
        return bool(j is not None and j.replaying)

    @property
    def lease_guard(self) -> anyio.Lock:
        """Held around lease renewals and around a suspend, which releases
        the lease (``lease_released``): no renewal races a suspension."""
        if self._guard is None:
            self._guard = anyio.Lock()
        return self._guard

    def ensure_lease(self) -> None:
        """Raise :class:`LeaseLost` if this attempt can no longer complete.

        That is: its time limit passed, it was handed back on drain or has
        ended, a renewal was refused, or the local monotonic clock is past
        the last confirmed lease expiry minus a margin (a tenth of the TTL)
        — checked here, so a process paused longer than its lease fails on
        waking, before any renewal answers. Sets ``lease_lost`` when it
        raises. Advisory: see docs/api.md for what it cannot guarantee.
        """
        if not self.lease_lost.is_set():
            now = time.monotonic()
            if self._time_limit_at is not None and now >= self._time_limit_at:
                self.end_attempt("attempt time limit passed", timed_out=True)
            elif self.lease_expired(now, self._lease_margin):
                self.mark_lease_lost("lease expired locally (last confirmed expiry passed)")
        if self.lease_lost.is_set():
            raise LeaseLost(self.execution_id, self.lease_lost_reason or "lease lost")

    def confirm_lease(self, sent_at: float, ttl_s: float) -> None:
        """A claim or renewal sent at ``sent_at`` (monotonic) granted
        ``ttl_s``: the lease holds at least until then, however long the
        answer took. Called by the executor and the renewer."""
        until = sent_at + ttl_s
        if self._lease_valid_until is None or until > self._lease_valid_until:
            self._lease_valid_until = until
        self._lease_margin = ttl_s * LEASE_FENCE_MARGIN

    def lease_expired(self, now: float | None = None, margin: float = 0.0) -> bool:
        """True once the monotonic clock is past the confirmed expiry
        (minus ``margin``); False while nothing was confirmed yet."""
        until = self._lease_valid_until
        if until is None:
            return False
        return (time.monotonic() if now is None else now) >= until - margin

    def lease_valid_for(self, now: float | None = None) -> float | None:
        """Seconds left before the confirmed expiry (never negative); None
        while nothing was confirmed yet."""
        until = self._lease_valid_until
        if until is None:
            return None
        return max(0.0, until - (time.monotonic() if now is None else now))

    def set_time_limit(self, at: float) -> None:
        """The executor's time limit for this attempt, as a monotonic time."""
        self._time_limit_at = at

    def end_attempt(self, reason: str, *, timed_out: bool = False) -> None:
        """The attempt can no longer complete although its lease may still
        hold (time limit, drain hand-back, attempt over): fence it.
        Idempotent; the first reason is kept."""
        if timed_out:
            self.timed_out = True
        if not self.lease_lost.is_set():
            self.lease_lost_reason = reason
            self.lease_lost.set()

    def mark_lease_lost(self, reason: str) -> None:
        """The lease itself is gone (renewal refused, local expiry); idempotent."""
        self.lease_gone = True
        if not self.lease_lost.is_set():
            self.lease_lost_reason = reason
            self.lease_lost.set()
