"""Typed backend methods for budgets, quota policies and admission (spec 04
§6–§8), plus the plain reads their callers need (limits, usage, quota
definitions, window sizes) — batched, one pipeline per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flowfabric_worker.backend._caller import Caller
from flowfabric_worker.protocol.budgets import (
    CLAIM_WINDOW,
    AdmissionResult,
    BudgetReply,
    CheckAdmissionAndRecord,
    CreateBudget,
    CreateQuotaPolicy,
    CreateResult,
    ReleaseAdmission,
    ReportUsageAndCheck,
    ResetBudget,
    ResetResult,
)
from flowfabric_worker.protocol.flow_control import LABEL_FIELD, STRATEGY_FIELD, waiting_key
from flowfabric_worker.protocol.keys import BudgetKeys, QuotaKeys
from flowfabric_worker.protocol.partitions import PartitionConfig, budget_tag, quota_tag
from flowfabric_worker.protocol.quotas import QuotaRecount

__all__ = ["BudgetOps", "BudgetState", "QuotaLimits", "QuotaState"]

#: Usage-hash fields that are markers, not dimensions (spec 04 §6.1).
NOT_DIMENSIONS = frozenset({"breached_at", "_init"})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    try:
        return int(_text(value)) if value is not None else 0
    except ValueError:
        return 0


@dataclass(frozen=True)
class BudgetState:
    """One budget as stored: definition fields, limits and usage."""

    budget_id: str
    definition: dict[str, str]
    hard: dict[str, int]
    soft: dict[str, int]
    usage: dict[str, int]

    @property
    def exists(self) -> bool:
        return bool(self.definition.get("budget_id"))

    def hard_breach(self) -> tuple[str, int, int] | None:
        """The first dimension (by name) whose hard limit > 0 is reached —
        ``usage >= limit``, the claim-time rule of spec 04 §7.5 — as
        ``(dimension, used, limit)``; ``None`` when no limit is reached."""
        for dim in sorted(self.hard):
            limit = self.hard[dim]
            used = self.usage.get(dim, 0)
            if limit > 0 and used >= limit:
                return dim, used, limit
        return None


@dataclass(frozen=True)
class QuotaLimits:
    """The admission limits of a policy as the scheduler reads them (§7.5)."""

    rate_limit: int
    window_seconds: int
    concurrency_cap: int
    jitter_ms: int
    #: Ours, on flow-control policies only (docs/flow-control.md): what
    #: happens over the cap, and which task and key the policy limits.
    strategy: str = "queue"
    label: str = ""

    @property
    def unlimited(self) -> bool:
        return self.rate_limit <= 0 and self.concurrency_cap <= 0


@dataclass(frozen=True)
class QuotaState:
    """Limits plus the live counts (the claim window and the concurrency counter)."""

    limits: QuotaLimits
    in_window: int
    active: int


class BudgetOps(Caller):
    """Budget / quota functions and their plain reads."""

    redis: Any
    partitions: PartitionConfig

    # --- library functions ----------------------------------------------------

    async def create_budget(self, args: CreateBudget) -> CreateResult:
        return await self.call(args)

    async def report_usage(self, args: ReportUsageAndCheck) -> BudgetReply:
        return await self.call(args)

    async def reset_budget(self, args: ResetBudget) -> ResetResult:
        return await self.call(args)

    async def create_quota_policy(self, args: CreateQuotaPolicy) -> CreateResult:
        return await self.call(args)

    async def check_admission(self, args: CheckAdmissionAndRecord) -> AdmissionResult:
        return await self.call(args)

    async def release_admission(self, args: ReleaseAdmission) -> None:
        await self.call(args)

    # --- plain reads ------------------------------------------------------------

    def budget_keys(self, budget_id: str) -> BudgetKeys:
        return BudgetKeys(budget_tag(budget_id, self.partitions), budget_id)

    def quota_keys(self, quota_id: str) -> QuotaKeys:
        return QuotaKeys(quota_tag(quota_id, self.partitions), quota_id)

    async def read_budgets(self, budget_ids: Sequence[str]) -> dict[str, BudgetState]:
        """Definition, limits and usage of each budget, in one pipeline.

        Usage markers (``breached_at``, ``_init``) are not dimensions and are
        dropped (spec 04 §6.1). Read errors propagate: callers fail closed.
        """
        ids = list(dict.fromkeys(budget_ids))
        if not ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for bid in ids:
            bk = self.budget_keys(bid)
            pipe.hgetall(bk.definition)
            pipe.hgetall(bk.limits)
            pipe.hgetall(bk.usage)
        raw = await pipe.execute()
        out: dict[str, BudgetState] = {}
        for n, bid in enumerate(ids):
            definition, limits, usage = raw[3 * n: 3 * n + 3]
            hard: dict[str, int] = {}
            soft: dict[str, int] = {}
            for k, v in (limits or {}).items():
                name = _text(k)
                if name.startswith("hard:"):
                    hard[name[5:]] = _int(v)
                elif name.startswith("soft:"):
                    soft[name[5:]] = _int(v)
            out[bid] = BudgetState(
                budget_id=bid,
                definition={_text(k): _text(v) for k, v in (definition or {}).items()},
                hard=hard, soft=soft,
                usage={_text(k): _int(v) for k, v in (usage or {}).items()
                       if _text(k) not in NOT_DIMENSIONS},
            )
        return out

    async def read_quota_limits(self, quota_ids: Sequence[str]) -> dict[str, QuotaLimits | None]:
        """``HMGET quota_def max_requests_per_window requests_per_window_seconds
        active_concurrency_cap jitter_ms`` per policy (absent fields = 0, a
        window of 0 = 60 s: spec 04 §7.5); ``None`` for a missing policy."""
        ids = list(dict.fromkeys(quota_ids))
        if not ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for qid in ids:
            pipe.hmget(self.quota_keys(qid).definition,
                       ["max_requests_per_window", "requests_per_window_seconds",
                        "active_concurrency_cap", "jitter_ms", STRATEGY_FIELD, LABEL_FIELD])
        out: dict[str, QuotaLimits | None] = {}
        for qid, vals in zip(ids, await pipe.execute(), strict=True):
            if all(v is None for v in vals):
                out[qid] = None
                continue
            rate, window, cap, jitter = (_int(v) for v in vals[:4])
            out[qid] = QuotaLimits(rate_limit=max(rate, 0), window_seconds=window or 60,
                                   concurrency_cap=max(cap, 0), jitter_ms=max(jitter, 0),
                                   strategy=_text(vals[4]) if vals[4] is not None else "queue",
                                   label=_text(vals[5]) if vals[5] is not None else "")
        return out

    async def read_quota_state(self, quota_id: str, limits: QuotaLimits,
                               now_ms: int) -> QuotaState:
        """Trim the claim window (``default``) to the last ``window`` and read
        its size and the concurrency counter (the unblock re-check)."""
        qk = self.quota_keys(quota_id)
        window = qk.window(CLAIM_WINDOW)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(window, "-inf", now_ms - limits.window_seconds * 1000)
        pipe.zcard(window)
        pipe.get(qk.concurrency)
        _trimmed, count, active = await pipe.execute()
        return QuotaState(limits=limits, in_window=int(count or 0), active=_int(active))

    # --- flow control (docs/flow-control.md) -----------------------------------

    async def add_quota_waiters(self, waiters: Sequence[tuple[str, str, str]],
                                now_ms: int) -> None:
        """Note ``(quota_id, eid, lane)`` as blocked on a flow quota, in
        first-refusal order (a second refusal keeps the first place)."""
        if not waiters:
            return
        pipe = self.redis.pipeline(transaction=False)
        for qid, eid, lane in waiters:
            pipe.zadd(waiting_key(quota_tag(qid, self.partitions), qid),
                      {f"{eid}|{lane}": now_ms}, nx=True)
        await pipe.execute()

    async def pop_quota_waiters(self, quota_ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """The longest-waiting ``(quota_id, eid, lane)`` of each quota (taken
        off its waiting set), for the quotas that have one."""
        if not quota_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for qid in quota_ids:
            pipe.zpopmin(waiting_key(quota_tag(qid, self.partitions), qid))
        out: list[tuple[str, str, str]] = []
        for qid, popped in zip(quota_ids, await pipe.execute(), strict=True):
            for member, _score in popped or ():
                eid, _, lane = _text(member).partition("|")
                out.append((qid, eid, lane))
        return out

    async def quota_admitted(self, quota_id: str) -> list[tuple[str, float]]:
        """The executions holding a slot of the quota with their admission
        time (ms), oldest first."""
        qk = self.quota_keys(quota_id)
        members = sorted(_text(m) for m in await self.redis.smembers(qk.admitted_set))
        if not members:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for eid in members:
            pipe.zscore(qk.window(CLAIM_WINDOW), eid)
        scores = await pipe.execute()
        return sorted(((eid, float(sc or 0)) for eid, sc in zip(members, scores, strict=True)),
                      key=lambda p: p[1])

    async def set_quota_jitter(self, quota_id: str, jitter_ms: int) -> None:
        """``jitter_ms`` on the policy (no 0.15 function writes it; §7.2)."""
        await self.redis.hset(self.quota_keys(quota_id).definition, "jitter_ms", str(jitter_ms))

    # --- maintenance (budget_reconciler, quota_reconciler) -----------------------

    async def mark_budget_breaches(self, marks: Sequence[tuple[str, bool]], now_ms: int) -> None:
        """Set (``True``) or clear (``False``) ``breached_at`` on each budget's
        usage hash (spec 05 §7.2 #13), in one pipeline."""
        if not marks:
            return
        pipe = self.redis.pipeline(transaction=False)
        for bid, breached in marks:
            usage = self.budget_keys(bid).usage
            if breached:
                pipe.hsetnx(usage, "breached_at", str(now_ms))
            else:
                pipe.hdel(usage, "breached_at")
        await pipe.execute()

    async def drop_budget_policies(self, index: str, budget_ids: Sequence[str]) -> int:
        """Remove ids whose definition is gone from ``budget_policies``."""
        if not budget_ids:
            return 0
        return int(await self.redis.srem(index, *budget_ids))

    async def recount_quota(self, quota_id: str, window_seconds: int, now_ms: int) -> bool:
        """Quota reconciler (spec 05 §7.2 #14): trim the windows, keep in
        ``admitted_set`` only ids whose guard key still exists, rewrite the
        concurrency counter to that count when it drifted; one atomic call,
        so an admission meanwhile is never overwritten. ``True`` on a fix."""
        qk = self.quota_keys(quota_id)
        return await self.call(QuotaRecount(
            tag=qk.tag, quota_id=quota_id, cutoff_ms=now_ms - window_seconds * 1000))
