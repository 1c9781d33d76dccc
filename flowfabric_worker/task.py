"""Task authoring: the ``@task`` decorator, :class:`TaskDefinition` and :class:`Retry`."""

from __future__ import annotations

import inspect
import json
import random
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from . import codec
from .errors import InvalidInput, PayloadError, Permanent, Transient
from .protocol.ids import validate_capability, validate_lane

if TYPE_CHECKING:
    from .budgets import Budget, Quota
    from .client import Client, RunHandle
    from .runtime.children import ChildHandle

P = TypeVar("P")
R = TypeVar("R")

Backoff = Literal["exponential", "linear", "fixed"]


@dataclass(frozen=True)
class Retry:
    """How a failing task is retried.

    ``max_attempts`` counts every attempt including the first, so the default
    of 1 means "never retry". Delays are computed here (the 0.15 library knows
    only exponential/fixed and ignores jitter) and sent as a fixed delay.
    """

    max_attempts: int = 1
    backoff: Backoff = "exponential"
    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidInput("Retry.max_attempts must be >= 1")
        if self.backoff not in ("exponential", "linear", "fixed"):
            raise InvalidInput(
                f"Retry.backoff must be exponential, linear or fixed, not {self.backoff!r}"
            )
        if self.initial < 0 or self.maximum < 0 or self.multiplier <= 0:
            raise InvalidInput("Retry delays must be >= 0 and multiplier > 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidInput("Retry.jitter is a fraction between 0 and 1")

    @property
    def max_retries(self) -> int:
        return self.max_attempts - 1

    def should_retry(self, exc: BaseException) -> bool:
        """Whether this exception class may be retried at all (ignores the count)."""
        if isinstance(exc, Permanent):
            return False
        if isinstance(exc, Transient):
            return True
        if self.give_up_on and isinstance(exc, self.give_up_on):
            return False
        return isinstance(exc, self.retry_on)

    def delay_for(self, retry_count: int) -> float:
        """Seconds to wait before retry number ``retry_count + 1`` (0-based count)."""
        if self.backoff == "fixed":
            base = self.initial
        elif self.backoff == "linear":
            base = self.initial * (retry_count + 1)
        else:
            base = self.initial * self.multiplier ** retry_count
        base = min(base, self.maximum)
        if self.jitter:
            base *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def fail_policy_json(self, retry_count: int) -> str:
        """The ``retry_policy`` JSON for ff_fail_execution; "" means no retry."""
        if retry_count >= self.max_retries:
            return ""
        delay_ms = round(self.delay_for(retry_count) * 1000)
        return json.dumps(
            {"max_retries": self.max_retries, "backoff": {"type": "fixed", "delay_ms": delay_ms}},
            separators=(",", ":"),
        )

    def policy_dict(self) -> dict[str, Any]:
        """The stored §6.2 form (informational; the worker sends fail_policy_json)."""
        backoff: dict[str, Any]
        if self.backoff == "fixed":
            backoff = {"type": "fixed", "delay_ms": int(self.initial * 1000)}
        else:
            backoff = {
                "type": "exponential",
                "initial_delay_ms": int(self.initial * 1000),
                "max_delay_ms": int(self.maximum * 1000),
                "multiplier": self.multiplier if self.backoff == "exponential" else 1.0,
                "jitter": self.jitter > 0,
            }
        return {"max_retries": self.max_retries, "backoff": backoff, "retryable_categories": []}


MAX_PRIORITY = 9000


def check_priority(priority: int) -> int:
    """Priorities are integers in [0, 9000] (the library would silently clamp)."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidInput("priority must be an integer")
    if not 0 <= priority <= MAX_PRIORITY:
        raise InvalidInput(f"priority must be between 0 and {MAX_PRIORITY}, not {priority}")
    return priority


def _wants_context(fn: Callable[..., Any], hints: Mapping[str, Any]) -> str | None:
    from .runtime.context import TaskContext

    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return None
    first = params[0]
    hint = hints.get(first.name, first.annotation)
    if hint is TaskContext or hint == "TaskContext":
        return first.name
    return None


@dataclass(eq=False)
class TaskDefinition(Generic[P, R]):
    """A registered task: the function plus its routing and retry options."""

    fn: Callable[..., Any]
    name: str
    lane: str = "default"
    retry: Retry = field(default_factory=Retry)
    timeout: float | None = None
    deadline: float | None = None
    priority: int = 0
    capabilities: frozenset[str] = frozenset()
    tags: dict[str, str] = field(default_factory=dict)
    #: Attached to every submission unless ``submit(budgets=..., quota=...)``
    #: says otherwise (docs/budgets.md).
    budgets: tuple[Budget | str, ...] = ()
    quota: Quota | str | None = None

    def __post_init__(self) -> None:
        validate_lane(self.lane)
        for cap in self.capabilities:
            validate_capability(cap)
        if not self.name:
            raise InvalidInput("task name must not be empty")
        check_priority(self.priority)
        for what, value in (("timeout", self.timeout), ("deadline", self.deadline)):
            if value is not None and value <= 0:
                raise InvalidInput(f"task {what} must be > 0 seconds")
        self.is_async: bool = inspect.iscoroutinefunction(self.fn)
        try:
            hints = typing.get_type_hints(self.fn)
        except Exception:  # unresolvable forward refs: fall back to raw annotations
            hints = {}
        self._hints = hints
        ctx = _wants_context(self.fn, hints)
        self.wants_context: bool = ctx is not None
        sig = inspect.signature(self.fn)
        params = list(sig.parameters.values())
        if ctx is not None:
            params = params[1:]
        self._signature = sig.replace(parameters=params)
        self._return_type: Any = hints.get("return", inspect.Parameter.empty)

    # --- payloads ---------------------------------------------------------

    def _param_type(self, name: str) -> Any:
        param = self._signature.parameters[name]
        fallback = Any if isinstance(param.annotation, str) else param.annotation
        return self._hints.get(name, fallback)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PayloadError(f"task {self.name}: {exc}") from exc

    def _check(self, bound: inspect.BoundArguments) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Convert each bound argument to its annotated type."""
        for pname, value in list(bound.arguments.items()):
            param = self._signature.parameters[pname]
            tp = self._param_type(pname)
            where = f"task {self.name}: argument {pname!r}"
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[pname] = tuple(codec.convert(v, tp, where=where) for v in value)
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[pname] = {
                    k: codec.convert(v, tp, where=where) for k, v in value.items()
                }
            else:
                bound.arguments[pname] = codec.convert(value, tp, where=where)
        return tuple(bound.args), dict(bound.kwargs)

    def encode_args(self, *args: Any, **kwargs: Any) -> bytes:
        """Validate the call against the signature and encode it as the payload."""
        bound = self._bind(args, kwargs)
        plain = inspect.BoundArguments(self._signature, bound.arguments.copy())
        for pname, value in plain.arguments.items():
            plain.arguments[pname] = codec.to_builtins(value)
        # Validate by decoding exactly what the worker will decode.
        self._check(inspect.BoundArguments(self._signature, dict(plain.arguments)))
        return codec.dumps({"args": list(plain.args), "kwargs": plain.kwargs})

    def decode_args(self, payload: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Decode a payload into typed ``(args, kwargs)`` for the function."""
        data = codec.loads(payload) if payload else {"args": [], "kwargs": {}}
        if not isinstance(data, dict):
            raise PayloadError(f"task {self.name}: payload must be a JSON object with args/kwargs")
        args = data.get("args", [])
        kwargs = data.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise PayloadError(
                f"task {self.name}: payload args must be a list and kwargs an object"
            )
        return self._check(self._bind(tuple(args), kwargs))

    def bind_check(self, n_args: int) -> None:
        """Raise ``TypeError`` unless the function takes ``n_args`` positional
        arguments (besides its context) and nothing else is required."""
        self._signature.bind(*([None] * n_args))

    def decode_input(self, value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Typed ``(args, kwargs)`` when ``value`` (an upstream flow member's
        result) is the function's one argument."""
        return self._check(self._bind((value,), {}))

    def encode_result(self, value: Any) -> bytes:
        return codec.dumps(codec.to_builtins(value))

    def decode_result(self, data: bytes) -> R:
        value = codec.loads(data) if data else None
        where = f"task {self.name}: result"
        return typing.cast(R, codec.convert(value, self._return_type, where=where))

    # --- policy -----------------------------------------------------------

    def policy_dict(self) -> dict[str, Any]:
        policy: dict[str, Any] = {
            "priority": self.priority,
            "max_reclaim_count": 100,
            "max_replay_count": 10,
            "budget_ids": [],
            "max_signals_per_execution": 10000,
        }
        if self.retry.max_retries > 0:
            policy["retry_policy"] = self.retry.policy_dict()
        timeout: dict[str, Any] = {}
        if self.timeout is not None:
            timeout["attempt_timeout_ms"] = int(self.timeout * 1000)
        if self.deadline is not None:
            timeout["execution_deadline_ms"] = int(self.deadline * 1000)
        if timeout:
            timeout["max_reclaim_count"] = 100
            policy["timeout_policy"] = timeout
        if self.capabilities:
            caps = sorted(set(self.capabilities))
            policy["routing_requirements"] = {"required_capabilities": caps}
        return policy

    def policy_json(self) -> str:
        """The ExecutionPolicy JSON (spec 01 §6.1) stored with each execution."""
        return json.dumps(self.policy_dict(), separators=(",", ":"), sort_keys=True)

    # --- calling ----------------------------------------------------------

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

    def child(self, *args: Any, **kwargs: Any) -> ChildHandle[R]:
        """A child execution of this task, spawned by the task running now:
        ``await summarize.child(doc)``, or ``await ctx.gather(*(summarize.child(d)
        for d in docs))``. The same as ``ctx.child(summarize, doc)``; raises
        :class:`~flowfabric_worker.errors.ConfigurationError` outside a task."""
        from .runtime.context import TaskContext

        return TaskContext.current().child(self, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, in-process (no Redis)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<TaskDefinition {self.name} lane={self.lane}>"


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
