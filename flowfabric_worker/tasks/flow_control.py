"""Flow control per key (docs/flow-control.md): ``@task(concurrency=Limit(...),
rate=Rate(...), debounce=Debounce(...))``.

A *key* is computed from each submission's arguments (an argument name, a
dotted path into one, or a function of the arguments). Limits are enforced
by the contract's quotas (spec 04 §7): every key gets its own quota policy,
with an id derived from the namespace, the task and the key, created on
first use and attached to the execution in the same transaction as its
create, so the claim-time admission of every worker (ours or a 0.15 peer)
applies it. Debounce keeps one delayed execution per key and replaces its
payload while it waits.
"""

from __future__ import annotations

import enum
import inspect
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.flow_control import STRATEGIES
from flowfabric_worker.tasks.budgets import Limit as _BudgetLimit

__all__ = ["Debounce", "FlowControl", "Limit", "QuotaPlan", "Rate", "declare"]

Strategy = Literal["queue", "cancel_newest", "cancel_in_progress"]
KeySource = str | Callable[..., Any]

#: Longest key value (after conversion to text) a submission may produce.
MAX_KEY_LENGTH = 512
#: Ids of the per-key quota policies and debounce keys: uuid5 in this namespace.
_ID_NAMESPACE = uuid.UUID("6f1c2d0e-5b7a-4c8e-9d3f-1a2b3c4d5e6f")


def _check_source(per: object, what: str) -> None:
    if callable(per):
        return
    if not isinstance(per, str) or not per or any(not p for p in per.split(".")):
        raise InvalidInput(f"{what} must be an argument name or dotted path (e.g. "
                           f"'user.id') or a function of the arguments, not {per!r}")


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{what} must be a positive integer, not {value!r}")
    return value


def _seconds(value: object, what: str, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not (minimum <= value < math.inf):
        raise InvalidInput(f"{what} must be a finite number of seconds >= {minimum}, "
                           f"not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Limit(_BudgetLimit):
    """A limit. Two uses share the name:

    - ``Limit(per="user_id", max=2)`` for ``@task(concurrency=...)``: at most
      ``max`` executions with the same key run at once. ``per`` is an
      argument name, a dotted path into one (``"user.id"``: attributes or
      mapping keys) or a function called with the task's arguments.
      ``strategy`` decides what happens to the rest: ``"queue"`` (they wait,
      in order), ``"cancel_newest"`` (they are cancelled),
      ``"cancel_in_progress"`` (the oldest running one is cancelled to make
      room). ``slot_ttl`` (seconds): how long a slot is held for a run whose
      holder vanished without ending, and the longest run that keeps
      counting against ``max`` (docs/flow-control.md).
    - ``Limit(hard=..., soft=...)`` for a budget dimension (docs/budgets.md).
    """

    per: KeySource | None = None
    max: int | None = None
    strategy: Strategy = "queue"
    slot_ttl: float = 600.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.per is None and self.max is None:
            return  # a budget dimension's limits
        if self.hard is not None or self.soft is not None:
            raise InvalidInput("a Limit is either a concurrency limit (per=, max=) or a "
                               "budget dimension's (hard=, soft=), not both")
        if self.per is None:
            raise InvalidInput("Limit(max=...) needs per= (the key of the limit)")
        _check_source(self.per, "Limit.per")
        _positive_int(self.max, "Limit.max")
        if self.strategy not in STRATEGIES:
            raise InvalidInput(f"Limit.strategy must be one of {', '.join(STRATEGIES)}, "
                               f"not {self.strategy!r}")
        _seconds(self.slot_ttl, "Limit.slot_ttl", minimum=1)

    @property
    def is_concurrency(self) -> bool:
        return self.per is not None

    def pair(self) -> tuple[int, int]:
        if self.is_concurrency:
            raise InvalidInput("a concurrency Limit(per=, max=) is not a budget dimension's "
                               "limit: use Limit(hard=..., soft=...)")
        return super().pair()


@dataclass(frozen=True)
class Rate:
    """``@task(rate=Rate(per="tenant", limit=100, period=60))``: at most
    ``limit`` executions with the same key start per sliding ``period``
    (whole seconds). The rest wait, blocked, and start as the window makes
    room; nothing is dropped."""

    per: KeySource
    limit: int
    period: int = 60

    def __post_init__(self) -> None:
        _check_source(self.per, "Rate.per")
        _positive_int(self.limit, "Rate.limit")
        _positive_int(self.period, "Rate.period (whole seconds)")


@dataclass(frozen=True)
class Debounce:
    """``@task(debounce=Debounce(key="doc_id", period=5))``: submissions with
    the same key within ``period`` seconds of the first make one execution,
    which starts ``period`` seconds after the first submission with the
    arguments of the last one received before it starts."""

    key: KeySource
    period: float

    def __post_init__(self) -> None:
        _check_source(self.key, "Debounce.key")
        # A delay of at most a second is sent as "eligible now" (client/
        # submission.py), which would leave nothing to replace.
        if _seconds(self.period, "Debounce.period", minimum=1) <= 1:
            raise InvalidInput("Debounce.period must be more than 1 second")


@dataclass(frozen=True)
class QuotaPlan:
    """The quota policy of one key: what ``ffw_flow_quota`` writes."""

    quota_id: str
    window_seconds: int
    rate: int
    cap: int
    strategy: str
    label: str


def _source_name(per: KeySource) -> str:
    return per if isinstance(per, str) else getattr(per, "__name__", "key")


def _key_text(value: object, what: str) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, str | int | uuid.UUID):
        raise InvalidInput(f"{what} must be a str, int or UUID, not {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_KEY_LENGTH:
        raise InvalidInput(f"{what} longer than {MAX_KEY_LENGTH} characters")
    return text


@dataclass(frozen=True)
class FlowControl:
    """What ``@task(concurrency=, rate=, debounce=)`` declared; ``signature``
    (the task's, without the context) is set by the task spec."""

    concurrency: Limit | None = None
    rate: Rate | None = None
    debounce: Debounce | None = None
    signature: inspect.Signature | None = None

    def bound(self, signature: inspect.Signature) -> FlowControl:
        """This declaration checked against the task's parameters."""
        params = signature.parameters
        open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for what, per in (("Limit.per", self.concurrency and self.concurrency.per),
                          ("Rate.per", self.rate and self.rate.per),
                          ("Debounce.key", self.debounce and self.debounce.key)):
            if isinstance(per, str) and not open_kwargs and per.split(".")[0] not in params:
                raise InvalidInput(f"{what} {per!r} names no parameter of the task "
                                   f"(parameters: {', '.join(params) or 'none'})")
        return replace(self, signature=signature)

    def _key(self, per: KeySource, what: str, args: tuple[Any, ...],
             kwargs: Mapping[str, Any]) -> str:
        if not isinstance(per, str):
            try:
                return _key_text(per(*args, **kwargs), f"the {what} key")
            except InvalidInput:
                raise
            except Exception as exc:
                raise InvalidInput(f"the {what} key function raised {exc!r}") from exc
        if self.signature is None:
            raise InvalidInput("flow control used before the task was declared")
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(f"arguments do not match the task: {exc}") from exc
        bound.apply_defaults()
        head, *rest = per.split(".")
        if head not in bound.arguments:
            extra = bound.arguments.get(next((p.name for p in self.signature.parameters.values()
                                              if p.kind is inspect.Parameter.VAR_KEYWORD), ""))
            if not isinstance(extra, Mapping) or head not in extra:
                raise InvalidInput(f"the {what} key {per!r}: no argument {head!r}")
            value: Any = extra[head]
        else:
            value = bound.arguments[head]
        for part in rest:
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif hasattr(value, part):
                value = getattr(value, part)
            else:
                raise InvalidInput(f"the {what} key {per!r}: {part!r} not found")
        return _key_text(value, f"the {what} key {per!r}")

    def quota_plan(self, task: str, namespace: str, args: tuple[Any, ...],
                   kwargs: Mapping[str, Any]) -> QuotaPlan | None:
        """The quota policy this call's key uses (None without a limit)."""
        lim, rate = self.concurrency, self.rate
        if lim is None and rate is None:
            return None
        per = lim.per if lim is not None else rate.per if rate is not None else None
        assert per is not None
        key = self._key(per, "concurrency" if lim is not None else "rate", args, kwargs)
        qid = str(uuid.uuid5(_ID_NAMESPACE, f"quota\x1f{namespace}\x1f{task}\x1f{key}"))
        label = f"{task} per {_source_name(per)}={key}"
        if rate is not None:
            return QuotaPlan(qid, rate.period, rate.limit, lim.max or 0 if lim else 0,
                             lim.strategy if lim else "queue", label)
        assert lim is not None and lim.max is not None
        return QuotaPlan(qid, math.ceil(lim.slot_ttl), 0, lim.max, lim.strategy, label)

    def debounce_key(self, task: str, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any]) -> str | None:
        """The idempotency key that names this call's debounce group."""
        if self.debounce is None:
            return None
        key = self._key(self.debounce.key, "debounce", args, kwargs)
        return f"ffw.debounce:{uuid.uuid5(_ID_NAMESPACE, f'debounce{chr(31)}{task}{chr(31)}{key}')}"


def declare(concurrency: Limit | None, rate: Rate | None,
            debounce: Debounce | None) -> FlowControl | None:
    """Check ``@task``'s flow-control options (None when none is given)."""
    if concurrency is None and rate is None and debounce is None:
        return None
    if concurrency is not None and (not isinstance(concurrency, Limit)
                                    or not concurrency.is_concurrency):
        raise InvalidInput("concurrency= takes a Limit(per=..., max=...)")
    if rate is not None and not isinstance(rate, Rate):
        raise InvalidInput("rate= takes a Rate(per=..., limit=..., period=...)")
    if debounce is not None and not isinstance(debounce, Debounce):
        raise InvalidInput("debounce= takes a Debounce(key=..., period=...)")
    if concurrency is not None and rate is not None and concurrency.per != rate.per:
        # An execution carries one quota (spec 04 §7.5): both limits live on
        # the policy of one key.
        raise InvalidInput("concurrency= and rate= must use the same per= (an execution "
                           "carries one quota)")
    return FlowControl(concurrency, rate, debounce)
