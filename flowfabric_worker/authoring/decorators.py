"""The ``@task`` and ``@flow`` decorators and the :class:`TaskDefinition`
they return.

Types: ``@task`` and ``@task(...)`` keep the function's parameters (after
its context) and its result for a type checker: ``charge.submit(client,
"not an order")`` is an error, ``await run.result()`` is the function's
return type (its awaited type for an async one). A first parameter annotated
``TaskContext`` is the context, as at run time; a function whose first
parameter has no annotation at all is read the same way by the type
checker (it cannot tell ``Any`` apart), so annotate it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Protocol, cast, overload

from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.context.children import ChildHandle
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.tasks.flow_control import Debounce, Limit, Rate, declare
from flowfabric_worker.tasks.retry import Retry
from flowfabric_worker.tasks.schedule_specs import SCHEDULE_ATTR, Cron, DeclaredSchedule, Every
from flowfabric_worker.tasks.spec import P, R, TaskSpec

if TYPE_CHECKING:
    from flowfabric_worker.client.client import Client
    from flowfabric_worker.tasks.budgets import Budget, Quota

#: The keywords of :meth:`TaskDefinition.submit` that are options of the
#: submission, not arguments of the task.
SUBMIT_OPTIONS = ("idempotency_key", "delay", "priority", "tags", "budgets", "quota")


class TaskDefinition(TaskSpec[P, R]):
    """What ``@task`` returns: the task spec plus the ways to call it —
    through a client (:meth:`submit`), as a child of the running task
    (:meth:`child`), or directly in-process."""

    # Typed: the task's own arguments. A call with submission options takes
    # one of the overloads below (each requires one option: a call without
    # any can only match this one, so wrong arguments are an error).
    @overload
    async def submit(self, client: Client, *args: P.args,
                     **kwargs: P.kwargs) -> RunHandle[R]: ...
    @overload
    async def submit(self, client: Client, *args: Any, idempotency_key: str | None,
                     delay: float | None = None, priority: int | None = None,
                     tags: Mapping[str, str] | None = None,
                     budgets: Iterable[Budget | str] | None = None,
                     quota: Quota | str | None = None, **kwargs: Any) -> RunHandle[R]: ...
    @overload
    async def submit(self, client: Client, *args: Any, delay: float | None,
                     priority: int | None = None, tags: Mapping[str, str] | None = None,
                     budgets: Iterable[Budget | str] | None = None,
                     quota: Quota | str | None = None, **kwargs: Any) -> RunHandle[R]: ...
    @overload
    async def submit(self, client: Client, *args: Any, priority: int | None,
                     tags: Mapping[str, str] | None = None,
                     budgets: Iterable[Budget | str] | None = None,
                     quota: Quota | str | None = None, **kwargs: Any) -> RunHandle[R]: ...
    @overload
    async def submit(self, client: Client, *args: Any, tags: Mapping[str, str] | None,
                     budgets: Iterable[Budget | str] | None = None,
                     quota: Quota | str | None = None, **kwargs: Any) -> RunHandle[R]: ...
    @overload
    async def submit(self, client: Client, *args: Any,
                     budgets: Iterable[Budget | str] | None,
                     quota: Quota | str | None = None, **kwargs: Any) -> RunHandle[R]: ...
    @overload
    async def submit(self, client: Client, *args: Any, quota: Quota | str | None,
                     **kwargs: Any) -> RunHandle[R]: ...

    async def submit(self, client: Client, *args: Any, **kwargs: Any) -> RunHandle[R]:
        """Submit one execution of this task through ``client``.

        Keyword options (``idempotency_key``, ``delay``, ``priority``,
        ``tags``, ``budgets``, ``quota``) are those of
        :meth:`Client.submit`; ``budgets`` and ``quota`` replace the task's
        defaults (``[]`` attaches none). Without options the arguments are
        type-checked against the function's."""
        options = {k: kwargs.pop(k) for k in SUBMIT_OPTIONS if k in kwargs}
        return await client.submit(self, *args, **options, **kwargs)

    async def map(
        self,
        client: Client,
        values: Iterable[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        delay: float | None = None,
        priority: int | None = None,
        tags: Mapping[str, str] | None = None,
        budgets: Iterable[Budget | str] | None = None,
        quota: Quota | str | None = None,
    ) -> list[RunHandle[R]]:
        """Submit one execution of this one-argument task per value, as one
        batch: ``runs = await resize.map(client, urls)`` is
        ``client.submit_many(resize, [(u,) for u in urls])`` (same checks,
        errors and options; see :meth:`Client.submit_many`)."""
        return await client.submit_many(
            self, [(value,) for value in values], idempotency_keys=idempotency_keys,
            delay=delay, priority=priority, tags=tags, budgets=budgets, quota=quota,
        )

    def child(self, *args: P.args, **kwargs: P.kwargs) -> ChildHandle[R]:
        """A child execution of this task, spawned by the task running now:
        ``await summarize.child(doc)``, or ``await ctx.gather(*(summarize.child(d)
        for d in docs))``. The same as ``ctx.child(summarize, doc)``; raises
        :class:`~flowfabric_worker.errors.ConfigurationError` outside a task."""
        return TaskContext.current().child(self, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, in-process (no Redis)."""
        return self.fn(*args, **kwargs)


TaskFn = Callable[..., Any]


def _default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


class TaskDecorator(Protocol):
    """What ``@task(...)`` with options returns: applied to a function, the
    :class:`TaskDefinition` typed by it."""

    @overload
    def __call__(self, fn: Callable[Concatenate[TaskContext, P], Awaitable[R]], /
                 ) -> TaskDefinition[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> TaskDefinition[P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[TaskContext, P], R], /
                 ) -> TaskDefinition[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> TaskDefinition[P, R]: ...


# The order matters: a context first, then async before sync (an async
# function also matches ``Callable[P, R]``, with R its coroutine).
@overload
def task(fn: Callable[Concatenate[TaskContext, P], Awaitable[R]], /) -> TaskDefinition[P, R]: ...


@overload
def task(fn: Callable[P, Awaitable[R]], /) -> TaskDefinition[P, R]: ...


@overload
def task(fn: Callable[Concatenate[TaskContext, P], R], /) -> TaskDefinition[P, R]: ...


@overload
def task(fn: Callable[P, R], /) -> TaskDefinition[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    lane: str = "default",
    retry: Retry | None = None,
    timeout: float | None = None,
    deadline: float | None = None,
    priority: int = 0,
    capabilities: frozenset[str] | set[str] | list[str] | tuple[str, ...] = (),
    tags: Mapping[str, str] | None = None,
    budgets: Iterable[Budget | str] = (),
    quota: Quota | str | None = None,
    concurrency: Limit | None = None,
    rate: Rate | None = None,
    debounce: Debounce | None = None,
    schedule: Cron | Every | DeclaredSchedule | None = None,
    schedule_args: tuple[Any, ...] = (),
) -> TaskDecorator: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    lane: str = "default",
    retry: Retry | None = None,
    timeout: float | None = None,
    deadline: float | None = None,
    priority: int = 0,
    capabilities: frozenset[str] | set[str] | list[str] | tuple[str, ...] = (),
    tags: Mapping[str, str] | None = None,
    budgets: Iterable[Budget | str] = (),
    quota: Quota | str | None = None,
    concurrency: Limit | None = None,
    rate: Rate | None = None,
    debounce: Debounce | None = None,
    schedule: Cron | Every | DeclaredSchedule | None = None,
    schedule_args: tuple[Any, ...] = (),
) -> Any:
    """Declare a task. Use bare (``@task``) or with options (``@task(lane="x")``).

    ``budgets`` / ``quota`` are attached to every submission by default
    (handles or ids; see docs/budgets.md). ``concurrency`` / ``rate`` /
    ``debounce`` limit the executions per key computed from the arguments
    (docs/flow-control.md). ``schedule`` (a ``Cron``, an ``Every`` or a
    ``DeclaredSchedule``) with ``schedule_args`` runs it on a recurring
    schedule, registered when a worker serving it starts (docs/schedules.md)."""
    flow_control = declare(concurrency, rate, debounce)

    # Recurring: registered when a worker serving the task starts
    # (docs/schedules.md); a DeclaredSchedule carries its own options.
    declared = (schedule if isinstance(schedule, DeclaredSchedule) or schedule is None
                else DeclaredSchedule(schedule, args=schedule_args))

    def wrap(f: Callable[..., Any]) -> TaskDefinition[Any, Any]:
        definition = _wrap(f)
        if declared is not None:
            setattr(definition, SCHEDULE_ATTR, declared)
        return definition

    def _wrap(f: Callable[..., Any]) -> TaskDefinition[Any, Any]:
        return TaskDefinition(
            fn=f,
            name=name or _default_name(f),
            lane=lane,
            retry=retry or Retry(),
            timeout=timeout,
            deadline=deadline,
            priority=priority,
            capabilities=frozenset(capabilities),
            tags=dict(tags or {}),
            budgets=tuple(budgets),
            quota=quota,
            flow_control=flow_control,
        )

    if fn is not None:
        return wrap(fn)
    return cast(TaskDecorator, wrap)


#: Decorator of a task that spawns children (``ctx.child`` / ``ctx.submit`` /
#: ``ctx.gather``); the same options as :func:`task`. Any task may spawn
#: children; ``@flow`` says that this one is meant to.
flow = task
