"""The task spec: a function plus its routing, retry and payload rules, as
every role (client, context, worker) sees it."""

from __future__ import annotations

import inspect
import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

from flowfabric_worker.errors import InvalidInput, PayloadError
from flowfabric_worker.protocol.ids import validate_capability, validate_lane
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.bounds import DEFAULT_LIMITS as _DEFAULT_LIMITS
from flowfabric_worker.tasks.result_check import plan as _plan_result_check
from flowfabric_worker.tasks.retry import Retry

if TYPE_CHECKING:
    from flowfabric_worker.tasks.budgets import Budget, Quota
    from flowfabric_worker.tasks.flow_control import FlowControl


#: The task's parameters after its context, as a type checker sees them
#: (``TaskDefinition.submit`` / ``child`` take exactly these).
P = ParamSpec("P")


R = TypeVar("R")


MAX_PRIORITY = 9000

# Argument types that are their own JSON form (TaskSpec._fast_payload).
_PLAIN_ARGS = frozenset({str, int, bool, float, type(None)})

#: Result types encoded as they are (exact types: a subclass, e.g. an
#: IntEnum, still goes through to_builtins).
_PLAIN_SCALARS = frozenset({bool, int, str})


def check_priority(priority: int) -> int:
    """Priorities are integers in [0, 9000] (the library would silently clamp)."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidInput("priority must be an integer")
    if not 0 <= priority <= MAX_PRIORITY:
        raise InvalidInput(f"priority must be between 0 and {MAX_PRIORITY}, not {priority}")
    return priority


#: Set on :class:`~flowfabric_worker.TaskContext`: a first parameter annotated
#: with a class carrying it receives the context. A marker rather than an
#: import, because the context layer sits above this one.
CONTEXT_MARKER = "__ffw_task_context__"


def _wants_context(fn: Callable[..., Any], hints: Mapping[str, Any]) -> str | None:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return None
    first = params[0]
    hint = hints.get(first.name, first.annotation)
    if getattr(hint, CONTEXT_MARKER, False) or hint == "TaskContext":
        return first.name
    return None


@dataclass(eq=False)
class TaskSpec(Generic[P, R]):
    """A registered task: the function plus its routing and retry options.

    What the client, the context and the worker need of a task. The
    decorator returns a :class:`~flowfabric_worker.TaskDefinition`, which
    adds the calling conveniences (``submit``, ``child``, plain calls).
    """

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
    #: Per-key concurrency, rate and debounce (docs/flow-control.md).
    flow_control: FlowControl | None = None

    def __post_init__(self) -> None:
        validate_lane(self.lane)
        for cap in self.capabilities:
            validate_capability(cap)
        if not self.name:
            raise InvalidInput("task name must not be empty")
        check_priority(self.priority)
        for what, value in (("timeout", self.timeout), ("deadline", self.deadline)):
            # NaN compares false to everything: test for the good range.
            if value is not None and not (0 < value < math.inf):
                raise InvalidInput(f"task {what} must be a finite number of seconds > 0")
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
        if self.flow_control is not None:
            self.flow_control = self.flow_control.bound(self._signature)
        self._return_type: Any = hints.get("return", inspect.Parameter.empty)
        self._plan_decoding(params)
        self._fast_types: tuple[Any, ...] | None = self._plain_parameter_types()
        self._policy_cache: tuple[tuple[Any, ...], str] | None = None

    def _plain_parameter_types(self) -> tuple[Any, ...] | None:
        """The annotated type of each parameter when the signature takes only
        plain positional parameters (no ``*args`` / ``**kwargs`` / keyword-only),
        else None: such a call can be encoded without binding (see
        :meth:`_fast_payload`)."""
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if any(p.kind not in kinds for p in self._signature.parameters.values()):
            return None
        return tuple(self._param_type(name) for name in self._signature.parameters)

    def _plan_decoding(self, params: list[inspect.Parameter]) -> None:
        """What decoding needs per parameter, worked out once per task rather
        than on every attempt (issue 18: binding and looking up each
        parameter's type per call was ~8-10% of a drain's worker CPU).

        ``_converters[name]`` is ``(type, error prefix)``, or ``None`` when the
        value is passed as it is (no annotation, ``Any``: what
        :func:`codec.convert` would do). ``_fast`` lists the positional
        parameters' converters when a payload of positional arguments alone
        can skip :meth:`inspect.Signature.bind` (no ``*args`` / ``**kwargs``,
        no required keyword-only parameter); ``_fast_min`` of them have no
        default and must be given."""
        self._converters: dict[str, tuple[Any, str] | None] = {}
        for p in params:
            tp = self._param_type(p.name)
            self._converters[p.name] = (
                None if tp is inspect.Parameter.empty or tp is Any
                else (tp, f"task {self.name}: argument {p.name!r}"))
        kinds = {p.kind for p in params}
        positional = [p for p in params if p.kind in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        simple = not kinds & {inspect.Parameter.VAR_POSITIONAL,
                              inspect.Parameter.VAR_KEYWORD} and all(
            p.default is not inspect.Parameter.empty for p in params
            if p.kind is inspect.Parameter.KEYWORD_ONLY)
        self._fast: tuple[tuple[Any, str] | None, ...] | None = (
            tuple(self._converters[p.name] for p in positional) if simple else None)
        self._fast_min = sum(p.default is inspect.Parameter.empty for p in positional)
        self._result_what = f"task {self.name}: result"
        # None for an unannotated / Any task: its results are not checked.
        self._result_check = _plan_result_check(self.name, self._return_type)

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
            conv = self._converters[pname]
            if conv is None:
                continue  # passed as it is (codec.convert's identity case)
            tp, where = conv
            kind = self._signature.parameters[pname].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[pname] = tuple(codec.convert(v, tp, where=where) for v in value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[pname] = {
                    k: codec.convert(v, tp, where=where) for k, v in value.items()
                }
            else:
                bound.arguments[pname] = codec.convert(value, tp, where=where)
        return tuple(bound.args), dict(bound.kwargs)

    def encode_args(self, *args: Any, **kwargs: Any) -> bytes:
        """Validate the call against the signature and encode it as the payload
        (bounded by the default :class:`Limits`; see :meth:`encode_call`)."""
        return self.encode_call(args, kwargs)

    def encode_call(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], *,
                    limits: Limits | None = None) -> bytes:
        """:meth:`encode_args` within ``limits``: each argument nested at most
        ``max_depth`` deep, the payload at most ``max_payload_bytes``
        (:class:`PayloadError` / :class:`PayloadTooLarge` otherwise)."""
        limits = limits or _DEFAULT_LIMITS
        fast = self._fast_payload(args, kwargs)
        if fast is not None:
            return codec.check_size(fast, limits.max_payload_bytes,
                                    f"task {self.name}: payload", "max_payload_bytes")
        bound = self._bind(args, dict(kwargs))
        plain = inspect.BoundArguments(self._signature, bound.arguments.copy())
        for pname, value in plain.arguments.items():
            plain.arguments[pname] = codec.to_builtins(value)
            # Before _check: converting a value nested past Python's
            # recursion limit would raise RecursionError there.
            kind = self._signature.parameters[pname].kind
            where = f"task {self.name}: argument {pname!r}"
            items = (plain.arguments[pname] if kind is inspect.Parameter.VAR_POSITIONAL
                     else plain.arguments[pname].values()
                     if kind is inspect.Parameter.VAR_KEYWORD else [plain.arguments[pname]])
            for item in items:
                codec.check_json(item, max_depth=limits.max_depth, what=where)
        # Validate by decoding exactly what the worker will decode.
        self._check(inspect.BoundArguments(self._signature, dict(plain.arguments)))
        data = codec.dumps({"args": list(plain.args), "kwargs": plain.kwargs})
        return codec.check_size(data, limits.max_payload_bytes, f"task {self.name}: payload",
                                "max_payload_bytes")

    def _fast_payload(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes | None:
        """The payload of the common call (every parameter given positionally,
        each a str / int / bool / None / finite float of exactly its annotated
        type, or unannotated), without the bind-convert-check round of
        :meth:`encode_call`, which costs most of a submission's client time;
        None for anything else, which takes the full path. The bytes are the
        ones the full path writes: such values are their own builtins, nest
        nowhere, and convert to themselves."""
        types = self._fast_types
        if types is None or kwargs or len(args) != len(types):
            return None
        for value, tp in zip(args, types, strict=True):
            kind = type(value)
            if kind not in _PLAIN_ARGS:
                return None
            if kind is float and not math.isfinite(value):
                return None  # the full path names the argument in its error
            if tp is not kind and tp is not Any and tp is not inspect.Parameter.empty:
                return None  # a conversion (int -> float, str -> enum...) or a refusal
        # codec.dumps still refuses a lone surrogate in a string.
        return codec.dumps({"args": list(args), "kwargs": {}})

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
        fast = self._fast
        if fast is not None and not kwargs and self._fast_min <= len(args) <= len(fast):
            # What encode_call writes for a call without keyword-only
            # arguments: positional values, a prefix of the parameters. The
            # bind would accept it as it is; convert in parameter order, as
            # _check does, without building BoundArguments.
            return tuple(v if c is None else codec.convert(v, c[0], where=c[1])
                         for v, c in zip(args, fast, strict=False)), {}  # a prefix
        return self._check(self._bind(tuple(args), kwargs))

    def bind_check(self, n_args: int) -> None:
        """Raise ``TypeError`` unless the function takes ``n_args`` positional
        arguments (besides its context) and nothing else is required."""
        self._signature.bind(*([None] * n_args))

    def decode_input(self, value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Typed ``(args, kwargs)`` when ``value`` (an upstream flow member's
        result) is the function's one argument."""
        return self._check(self._bind((value,), {}))

    def encode_result(self, value: Any, *, limits: Limits | None = None) -> bytes:
        """The stored form of a result: nested at most ``max_depth`` deep and
        decodable under the return annotation (:class:`ResultTypeError`
        otherwise; see :mod:`.result_check`). Its size is bounded by the
        worker (``max_result_bytes``), which writes it."""
        check = self._result_check
        if value is None or type(value) in _PLAIN_SCALARS:
            # Already JSON, no depth, nothing non-finite: to_builtins and
            # check_json would pass it through unchanged.
            if check is not None:
                check.check(value, value)
            return codec.dumps(value)
        plain = codec.to_builtins(value)
        codec.check_json(plain, max_depth=(limits or _DEFAULT_LIMITS).max_depth,
                         what=self._result_what)
        if check is not None:
            check.check(value, plain)
        return codec.dumps(plain)

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
        # Sent with every submission but changed (if ever) only by assigning
        # the options it is made of: remembered against their current values.
        key = (self.priority, self.retry, self.timeout, self.deadline, self.capabilities)
        cached = self._policy_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        text = json.dumps(self.policy_dict(), separators=(",", ":"), sort_keys=True)
        self._policy_cache = (key, text)
        return text

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} lane={self.lane}>"


class TaskLike(Protocol):
    """What the runtime needs of a registered task (a :class:`TaskSpec`, or a test double).

    Read-only members, so a frozen ``TaskDefinition`` satisfies it and
    ``Worker(client, tasks=[my_task])`` type-checks in user code.
    """

    @property
    def name(self) -> str: ...
    @property
    def lane(self) -> str: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def capabilities(self) -> Any: ...
    @property
    def fn(self) -> Callable[..., Any]: ...
    @property
    def is_async(self) -> bool: ...
    @property
    def wants_context(self) -> bool: ...
    @property
    def retry(self) -> Any: ...

    def decode_args(self, payload: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]: ...

    def encode_result(self, value: Any) -> bytes: ...
