"""``ctx.sync``: the durable and reporting calls of a task context for sync
task functions.

A plain (sync) task runs in a worker thread; the context's async methods
live on the worker's event loop. Each method here runs its async twin there
(``anyio.from_thread.run``), blocks the thread until it finishes and returns
its value, so a sync task gets the same context an async one does::

    @task()
    def review(ctx: TaskContext, doc: str) -> str:
        text = ctx.sync.step("extract", extract_text, doc)
        decision = ctx.sync.wait_for_signal("approve", payload_type=Decision)
        return f"{text[:20]}: {decision.payload.ok}"

A wait suspends exactly as in an async task: the lease and the slot are
released, and the function runs again from the top once resumed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from flowfabric_worker.context.thread_bridge import on_event_loop, run_from_thread
from flowfabric_worker.context.waits import DEFAULT_WAITPOINT_TTL, OnTimeout, Waitpoint
from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.tasks.budgets import UsageReport

if TYPE_CHECKING:
    from flowfabric_worker.context.children import ChildHandle
    from flowfabric_worker.tasks.spec import TaskSpec

T = TypeVar("T")

__all__ = ["SyncContext"]


class _AsyncCalls(Protocol):
    """The async methods of :class:`~.task_context.TaskContext` that
    ``ctx.sync`` wraps. A protocol, so that this module does not import the
    context module (which imports it to build ``ctx.sync``)."""

    def progress(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def step(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def waitpoint(self, *args: Any, **kwargs: Any) -> Awaitable[Waitpoint]: ...
    def wait_for_signal(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def sleep(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def child(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def gather(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def report_usage(self, *args: Any, **kwargs: Any) -> Awaitable[UsageReport]: ...


def _blocking(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``call()`` on the worker's event loop from the task's thread."""
    if on_event_loop():
        raise ConfigurationError(
            f"ctx.sync.{what} blocks: in an async task use `await ctx.{what}(...)`")
    return run_from_thread(call, f"ctx.sync.{what}")


class SyncContext:
    """Blocking versions of :class:`~.context.TaskContext`'s async methods
    (same arguments, same results, same errors)."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: _AsyncCalls) -> None:
        self._ctx = ctx

    def progress(self, pct: float, message: str = "") -> None:
        _blocking(partial(self._ctx.progress, pct, message), "progress")

    def step(self, name: str, fn: Callable[..., Any], *args: Any,
             result_type: Any = None, **kwargs: Any) -> Any:
        """:meth:`TaskContext.step`; a sync ``fn`` runs in another worker thread."""
        return _blocking(partial(self._ctx.step, name, fn, *args,
                                 result_type=result_type, **kwargs), "step")

    def waitpoint(self, name: str = "", *,
                  expires_in: float = DEFAULT_WAITPOINT_TTL) -> Waitpoint:
        return _blocking(partial(self._ctx.waitpoint, name, expires_in=expires_in),
                         "waitpoint")

    def wait_for_signal(
        self, names: str | Sequence[str] | None = None, *, mode: str | int = "any",
        timeout: float | None = None, on_timeout: OnTimeout = "fail",
        payload_type: Any = None, waitpoint: Waitpoint | None = None,
        reason: str = "waiting_for_signal",
    ) -> Any:
        """:meth:`TaskContext.wait_for_signal`: a :class:`Signal` for
        ``mode="any"``, a list of them otherwise."""
        wait = self._ctx.wait_for_signal
        return _blocking(partial(
            wait, names, mode=mode, timeout=timeout, on_timeout=on_timeout,
            payload_type=payload_type, waitpoint=waitpoint, reason=reason),
            "wait_for_signal")

    def sleep(self, seconds: float) -> None:
        """Durable sleep (:meth:`TaskContext.sleep`): the slot is released."""
        _blocking(partial(self._ctx.sleep, seconds), "sleep")

    def child(self, task: TaskSpec[Any, T] | str, *args: Any, **kwargs: Any) -> T:
        """Spawn a child, wait for it and return its result (``await
        ctx.child(...)`` in an async task)."""
        def spawn() -> Awaitable[T]:
            return self._ctx.child(task, *args, **kwargs)

        return _blocking(spawn, "child")

    def gather(self, *children: ChildHandle[Any],
               return_exceptions: bool = False) -> list[Any]:
        """:meth:`TaskContext.gather` of handles made with ``ctx.child`` or
        ``ctx.submit`` (those two only record the spawn, so a sync task may
        call them directly)."""
        return _blocking(partial(self._ctx.gather, *children,
                                 return_exceptions=return_exceptions), "gather")

    def report_usage(self, usage: Mapping[str, int] | None = None, /,
                     **dimensions: int) -> UsageReport:
        return _blocking(partial(self._ctx.report_usage, usage, **dimensions),
                         "report_usage")
