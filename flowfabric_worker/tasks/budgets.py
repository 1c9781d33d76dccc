"""Budgets and quotas (spec 04 §6, §7): the handles the client creates, the
attachment of both to submitted executions, and the value a usage report
returns. See docs/budgets.md.

A **budget** counts usage per dimension (``tokens``, ``cost_microusd``, ...)
against hard and soft limits; tasks report usage with
``ctx.report_usage(...)`` and the scheduler stops claiming executions whose
budget sits at its hard limit. A **quota** limits how often (per sliding
window) and how many at once executions carrying it are admitted to a claim.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.budgets import (
    MAX_DIMENSIONS,
    CreateBudget,
    CreateQuotaPolicy,
    ResetBudget,
)
from flowfabric_worker.protocol.ids import validate_uuid
from flowfabric_worker.protocol.partitions import budget_tag, quota_tag

if TYPE_CHECKING:
    from flowfabric_worker.backend.backend import Backend

__all__ = [
    "Budget",
    "BudgetInfo",
    "BudgetResult",
    "Limit",
    "Quota",
    "QuotaInfo",
    "UsageReport",
    "attached_budgets",
]

ScopeType = Literal["execution", "flow", "lane", "tenant"]
SCOPE_TYPES = ("execution", "flow", "lane", "tenant")
#: The conventional action vocabulary (stored verbatim; spec 04 §6.1).
ACTIONS = ("fail", "suspend", "warn", "deny_child", "reroute_fallback", "close_scope")
#: Usage-hash fields that are not dimensions.
_RESERVED_DIMENSIONS = frozenset({"breached_at", "_init"})


def _non_negative_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} must be a non-negative integer, not {value!r}")
    return value


def check_dimension(name: object) -> str:
    """A dimension name: a non-empty string, not one of the usage markers."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"dimension names must be non-empty strings, not {name!r}")
    if name in _RESERVED_DIMENSIONS:
        raise InvalidInput(f"{name!r} is reserved and cannot be a dimension")
    return name


@dataclass(frozen=True)
class Limit:
    """Limits of one dimension. ``hard``: a report that would go past it is
    refused as a whole (landing exactly on it is allowed) and new claims are
    blocked once usage reaches it. ``soft``: advisory, reported as a warning.
    ``None`` (or 0) means no such limit."""

    hard: int | None = None
    soft: int | None = None

    def __post_init__(self) -> None:
        hard = _non_negative_int(self.hard or 0, "Limit.hard")
        soft = _non_negative_int(self.soft or 0, "Limit.soft")
        if hard and soft and soft > hard:
            raise InvalidInput(f"Limit.soft ({soft}) above Limit.hard ({hard}) never fires")

    def pair(self) -> tuple[int, int]:
        return (self.hard or 0, self.soft or 0)


def usage_deltas(usage: Mapping[str, int] | None, more: Mapping[str, int]) -> dict[str, int]:
    """Merge ``usage`` and keyword deltas into one validated, name-sorted dict
    (spec 04 §6.1: at most 64 dimensions, non-negative integer deltas)."""
    merged: dict[str, int] = {}
    for source in (usage or {}), more:
        for dim, delta in source.items():
            check_dimension(dim)
            if dim in merged:
                raise InvalidInput(f"dimension {dim!r} given twice")
            merged[dim] = _non_negative_int(delta, f"usage of {dim!r}")
    if not merged:
        raise InvalidInput("report at least one dimension")
    if len(merged) > MAX_DIMENSIONS:
        raise InvalidInput(f"at most {MAX_DIMENSIONS} dimensions per report, got {len(merged)}")
    return dict(sorted(merged.items()))


def build_create_budget(
    dimensions: Mapping[str, Limit], *, budget_id: str | None, reset_every: float | None,
    scope: tuple[str, str], on_hard_limit: str, on_soft_limit: str,
    enforcement_mode: str, now_ms: int, backend: Backend,
) -> CreateBudget:
    """Validate :meth:`Client.create_budget`'s arguments into the FCALL struct."""
    if not isinstance(dimensions, Mapping) or not dimensions:
        raise InvalidInput("a budget needs at least one dimension")
    if len(dimensions) > MAX_DIMENSIONS:
        raise InvalidInput(f"at most {MAX_DIMENSIONS} dimensions, got {len(dimensions)}")
    limits: dict[str, tuple[int, int]] = {}
    for dim in sorted(dimensions, key=str):
        check_dimension(dim)
        limit = dimensions[dim]
        if not isinstance(limit, Limit):
            raise InvalidInput(f"limits of {dim!r} must be a Limit, not {type(limit).__name__}")
        limits[dim] = limit.pair()
    bid = validate_uuid(budget_id, "budget id") if budget_id is not None else str(uuid.uuid4())
    if (not isinstance(scope, tuple) or len(scope) != 2
            or scope[0] not in SCOPE_TYPES or not isinstance(scope[1], str) or not scope[1]):
        raise InvalidInput(f"scope must be (one of {', '.join(SCOPE_TYPES)}, non-empty id), "
                           f"not {scope!r}")
    for what, action in (("on_hard_limit", on_hard_limit), ("on_soft_limit", on_soft_limit)):
        if action not in ACTIONS:
            raise InvalidInput(f"{what} must be one of {', '.join(ACTIONS)}, not {action!r}")
    if enforcement_mode not in ("strict", "advisory"):
        raise InvalidInput(f"enforcement_mode must be strict or advisory, not {enforcement_mode!r}")
    interval_ms = 0
    if reset_every is not None:
        if isinstance(reset_every, bool) or not isinstance(reset_every, int | float) \
                or reset_every <= 0:
            raise InvalidInput("reset_every must be a positive number of seconds")
        interval_ms = max(1, round(reset_every * 1000))
    return CreateBudget(
        tag=budget_tag(bid, backend.partitions), budget_id=bid, scope_type=scope[0],
        scope_id=scope[1], enforcement_mode=enforcement_mode, on_hard_limit=on_hard_limit,
        on_soft_limit=on_soft_limit, reset_interval_ms=interval_ms, now_ms=now_ms,
        limits=limits)


@dataclass(frozen=True)
class BudgetInfo:
    """A budget as stored: limits, usage (dimensions never reported read 0)
    and its counters."""

    id: str
    scope_type: str
    scope_id: str
    hard: dict[str, int]
    soft: dict[str, int]
    usage: dict[str, int]
    breach_count: int
    soft_breach_count: int
    reset_interval_ms: int
    next_reset_at: int
    reset_count: int


class Budget:
    """A handle on a budget (``client.create_budget(...)`` or ``client.budget(id)``).

    Pass it to ``submit(..., budgets=[b])`` to attach it to an execution.
    """

    def __init__(self, backend: Backend, budget_id: str) -> None:
        self.backend = backend
        self.id = validate_uuid(budget_id, "budget id")

    def __repr__(self) -> str:
        return f"<Budget {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Budget) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("budget", self.id))

    @property
    def tag(self) -> str:
        """The budget's partition hash tag ``{b:M}``."""
        return budget_tag(self.id, self.backend.partitions)

    async def info(self) -> BudgetInfo:
        """Definition, limits and usage; :class:`InvalidInput` when it does not exist."""
        state = (await self.backend.read_budgets([self.id]))[self.id]
        if not state.exists:
            raise InvalidInput(f"budget {self.id} does not exist")
        d = state.definition

        def num(name: str) -> int:
            value = d.get(name, "")
            return int(value) if value.isdigit() else 0

        dims = set(state.hard) | set(state.soft)
        return BudgetInfo(
            id=self.id, scope_type=d.get("scope_type", ""), scope_id=d.get("scope_id", ""),
            hard=dict(sorted(state.hard.items())), soft=dict(sorted(state.soft.items())),
            usage={k: state.usage.get(k, 0) for k in sorted(dims | set(state.usage))},
            breach_count=num("breach_count"), soft_breach_count=num("soft_breach_count"),
            reset_interval_ms=num("reset_interval_ms"), next_reset_at=num("next_reset_at"),
            reset_count=num("reset_count"))

    async def usage(self) -> dict[str, int]:
        """Current usage per dimension (sorted by name)."""
        return (await self.info()).usage

    async def reset(self) -> int:
        """Zero every usage counter now (``ff_reset_budget``); returns the next
        scheduled reset (ms) or 0. Blocked executions are released by the
        ``unblock`` scanner's next pass."""
        now = int(time.time() * 1000)
        res = await self.backend.reset_budget(
            ResetBudget(tag=self.tag, budget_id=self.id, now_ms=now))
        return res.next_reset_at


def build_create_quota(*, quota_id: str | None, rate: int | None, per: float,
                       concurrency: int | None, now_ms: int,
                       backend: Backend) -> CreateQuotaPolicy:
    """Validate :meth:`Client.create_quota`'s arguments into the FCALL struct."""
    qid = validate_uuid(quota_id, "quota id") if quota_id is not None else str(uuid.uuid4())
    rate_n = _non_negative_int(rate or 0, "rate")
    cap = _non_negative_int(concurrency or 0, "concurrency")
    if not rate_n and not cap:
        raise InvalidInput("a quota needs a rate, a concurrency cap or both")
    if isinstance(per, bool) or not isinstance(per, int | float) or per <= 0 \
            or float(per) != int(per):
        raise InvalidInput("per must be a positive whole number of seconds")
    return CreateQuotaPolicy(tag=quota_tag(qid, backend.partitions), quota_id=qid,
                             window_seconds=int(per), max_requests_per_window=rate_n,
                             max_concurrent=cap, now_ms=now_ms)


@dataclass(frozen=True)
class QuotaInfo:
    """A quota policy's limits and its live counts (claims admitted in the
    current window, executions holding a concurrency slot)."""

    id: str
    rate: int
    per: int
    concurrency: int
    jitter_ms: int
    in_window: int
    active: int


class Quota:
    """A handle on a quota policy (``client.create_quota(...)`` or ``client.quota(id)``).

    Pass it to ``submit(..., quota=q)``; an execution carries at most one.
    """

    def __init__(self, backend: Backend, quota_id: str) -> None:
        self.backend = backend
        self.id = validate_uuid(quota_id, "quota id")

    def __repr__(self) -> str:
        return f"<Quota {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quota) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("quota", self.id))

    async def info(self) -> QuotaInfo:
        """Limits and live counts; :class:`InvalidInput` when it does not exist."""
        limits = (await self.backend.read_quota_limits([self.id]))[self.id]
        if limits is None:
            raise InvalidInput(f"quota {self.id} does not exist")
        state = await self.backend.read_quota_state(self.id, limits, int(time.time() * 1000))
        return QuotaInfo(id=self.id, rate=limits.rate_limit, per=limits.window_seconds,
                         concurrency=limits.concurrency_cap, jitter_ms=limits.jitter_ms,
                         in_window=state.in_window, active=state.active)


def attachment(budgets: Iterable[Budget | str] | None,
               quota: Quota | str | None) -> tuple[str, str]:
    """``(budget_ids, quota_policy_id)`` as written on exec_core: budget ids
    comma-separated (deduplicated, in the given order), "" for none."""
    ids: list[str] = []
    for b in budgets or ():
        bid = b.id if isinstance(b, Budget) else validate_uuid(b, "budget id")
        if bid not in ids:
            ids.append(bid)
    qid = "" if quota is None else (
        quota.id if isinstance(quota, Quota) else validate_uuid(quota, "quota id"))
    return ",".join(ids), qid


@dataclass(frozen=True)
class BudgetResult:
    """What one budget answered to a usage report: ``OK``, ``SOFT_BREACH``
    or ``ALREADY_APPLIED`` (a resend of a report already counted). On a soft
    breach, ``dimension`` crossed ``limit`` and now stands at ``value``."""

    budget_id: str
    status: str
    dimension: str = ""
    value: int = 0
    limit: int = 0


@dataclass(frozen=True)
class UsageReport:
    """The outcome of ``ctx.report_usage(...)`` across the attached budgets."""

    usage: Mapping[str, int]
    results: Sequence[BudgetResult] = field(default_factory=tuple)

    @property
    def soft_breaches(self) -> list[BudgetResult]:
        return [r for r in self.results if r.status == "SOFT_BREACH"]

    @property
    def soft_breached(self) -> bool:
        """True when some budget went past a soft limit with this report."""
        return any(r.status == "SOFT_BREACH" for r in self.results)

    @property
    def duplicate(self) -> bool:
        """True when every budget had already counted this report (a resend)."""
        return bool(self.results) and all(r.status == "ALREADY_APPLIED" for r in self.results)


def attached_budgets(csv: str) -> list[str]:
    """Budget ids of an exec_core ``budget_ids`` field; non-UUID entries are
    ignored, as the 0.15 scheduler does (spec 04 §7.5)."""
    out: list[str] = []
    for part in csv.split(","):
        part = part.strip()
        try:
            validate_uuid(part)
        except Exception:
            continue
        if part not in out:
            out.append(part)
    return out
