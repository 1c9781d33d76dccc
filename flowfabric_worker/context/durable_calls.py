"""The durable-execution calls of :class:`TaskContext` (which inherits
them): journaled steps, waitpoints, waits for signals and sleeps, child
executions and usage reports. Each reaches the feature the worker installed
in ``ctx.extensions``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from flowfabric_worker.context.extensions import Extensions
from flowfabric_worker.context.lease_fence import LeaseFence
from flowfabric_worker.context.step_journal import StepJournal
from flowfabric_worker.context.usage_reporter import USAGE_EXTENSION
from flowfabric_worker.context.waits import (
    DEFAULT_WAITPOINT_TTL,
    OnTimeout,
    Signal,
    Waitpoint,
    Waits,
)
from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.observability import tracing
from flowfabric_worker.tasks.budgets import UsageReport, usage_deltas

if TYPE_CHECKING:
    from flowfabric_worker.context.children import ChildHandle, Children
    from flowfabric_worker.tasks.spec import TaskSpec

__all__ = ["CHILDREN_EXTENSION", "JOURNAL_EXTENSION", "WAITS_EXTENSION", "DurableCalls"]

T = TypeVar("T")

#: ``ctx.extensions`` keys of the durable-execution features (installed by
#: the worker when its engine is a real backend).
JOURNAL_EXTENSION = "journal"


WAITS_EXTENSION = "waits"


CHILDREN_EXTENSION = "children"


class DurableCalls(LeaseFence):
    """Steps, waits, sleeps, children and usage reports of ``ctx``."""

    #: Feature hooks installed by the worker (set by TaskContext.__init__).
    extensions: Extensions

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
