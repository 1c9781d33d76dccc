"""The ``@task`` and ``@flow`` decorators and the :class:`TaskDefinition`
they return."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.context.children import ChildHandle
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.tasks.retry import Retry
from flowfabric_worker.tasks.spec import P, R, TaskSpec

if TYPE_CHECKING:
    from flowfabric_worker.client.client import Client
    from flowfabric_worker.tasks.budgets import Budget, Quota


class TaskDefinition(TaskSpec[P, R]):
    """What ``@task`` returns: the task spec plus the ways to call it —
    through a client (:meth:`submit`), as a child of the running task
    (:meth:`child`), or directly in-process."""

    async def submit(
        self,
        client: Client,
        *args: Any,
        idempotency_key: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        tags: Mapping[str, str] | None = None,
        budgets: Iterable[Budget | str] | None = None,
        quota: Quota | str | None = None,
        **kwargs: Any,
    ) -> RunHandle[R]:
        """Submit one execution of this task through ``client``; ``budgets``
        and ``quota`` replace the task's defaults (``[]`` attaches none)."""
        return await client.submit(
            self, *args, idempotency_key=idempotency_key, delay=delay,
            priority=priority, tags=tags, budgets=budgets, quota=quota, **kwargs,
        )

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

    def child(self, *args: Any, **kwargs: Any) -> ChildHandle[R]:
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


@overload
def task(fn: Callable[..., Awaitable[R]], /) -> TaskDefinition[Any, R]: ...


@overload
def task(fn: Callable[..., R], /) -> TaskDefinition[Any, R]: ...


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
) -> Callable[[Callable[..., Any]], TaskDefinition[Any, Any]]: ...


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
) -> Any:
    """Declare a task. Use bare (``@task``) or with options (``@task(lane="x")``).

    ``budgets`` / ``quota`` are attached to every submission by default
    (handles or ids; see docs/budgets.md)."""

    def wrap(f: Callable[..., Any]) -> TaskDefinition[Any, Any]:
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
        )

    if fn is not None:
        return wrap(fn)
    return wrap


#: Decorator of a task that spawns children (``ctx.child`` / ``ctx.submit`` /
#: ``ctx.gather``); the same options as :func:`task`. Any task may spawn
#: children; ``@flow`` says that this one is meant to.
flow = task
