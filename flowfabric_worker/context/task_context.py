"""TaskContext: what a running task sees of its execution.

Later features attach themselves through the ``extensions`` mapping (e.g. a
frames writer, a step journal, a flow spawner) from their own modules, so this
class stays small: ``ctx.extensions["frames"]`` is set by the worker when that
feature is installed. Its durable calls (steps, waits, children, usage) are
in ``context/durable_calls.py`` and its lease fence (``ensure_lease``...) in
``context/lease_fence.py``, both inherited.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from contextvars import ContextVar, Token
from typing import Any, ClassVar

from flowfabric_worker.context.durable_calls import (
    CHILDREN_EXTENSION,
    JOURNAL_EXTENSION,
    WAITS_EXTENSION,
    DurableCalls,
)
from flowfabric_worker.context.extensions import Extensions
from flowfabric_worker.context.lease_fence import LEASE_FENCE_MARGIN
from flowfabric_worker.context.streaming import emit_event, emit_stream, emit_summary, writer_of
from flowfabric_worker.context.sync_context import SyncContext
from flowfabric_worker.context.thread_bridge import loop_or_thread
from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks.bounds import DEFAULT_LIMITS
from flowfabric_worker.tasks.schedule_specs import ScheduleTick

__all__ = [
    "CHILDREN_EXTENSION",
    "JOURNAL_EXTENSION",
    "LEASE_FENCE_MARGIN",
    "WAITS_EXTENSION",
    "TaskContext",
]

_base_log = logging.getLogger("flowfabric_worker.task")


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


class TaskContext(DurableCalls):
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
        # The lease fence's state (lease_lost, timed_out...): lease_fence.py.
        super().__init__(execution_id)
        #: The name of the task this attempt runs.
        self.task = task
        #: The worker's bounds; children spawned here are checked against them.
        self.limits = limits
        self.attempt_index = attempt_index
        self.attempt_type = attempt_type
        self.lane = lane
        self.tags: Mapping[str, str] = dict(tags)
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
