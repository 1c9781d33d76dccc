"""Budget and quota maintenance (spec 05 §7.2 #7, #12–#14): the re-evaluation
the ``unblock`` scanner applies to ``blocked:budget`` / ``blocked:quota``,
and the ``budget_reset``, ``budget_reconciler`` and ``quota_reconciler``
scanners, which walk the budget (``b``) and quota (``q``) partition families.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.ops_budgets import QuotaLimits
from flowfabric_worker.engine.admission import budget_block_detail, quota_id_of
from flowfabric_worker.engine.runner import Candidate, IndexKeys, Scanner
from flowfabric_worker.protocol.budgets import ResetBudget
from flowfabric_worker.protocol.keys import PartitionKeys
from flowfabric_worker.tasks.budgets import attached_budgets

__all__ = ["budget_scanners", "still_blocked"]

log = logging.getLogger("flowfabric_worker.scanners")


async def still_blocked(backend: Backend, source: str, items: Sequence[tuple[str, str]],
                        now_ms: int) -> list[bool]:
    """For ``blocked:<source>`` members (``source`` = budget | quota), given
    each one's ``budget_ids`` or ``quota_policy_id`` field: must it stay
    blocked? Read errors keep everything blocked (fail closed).

    * budget: no (valid) budget → clear; else blocked while some budget has
      a hard limit > 0 with ``usage >= limit``.
    * quota: no (valid) policy, a missing or unlimited policy → clear; else
      trim the claim window (``default``, the one admissions fill: our
      extension, 0.15 checks a window nobody fills) and require room under
      the rate and the concurrency cap.
    """
    try:
        if source == "budget":
            ids = [attached_budgets(field) for _eid, field in items]
            states = await backend.read_budgets([b for group in ids for b in group])
            return [any(budget_block_detail(states[b]) is not None for b in group)
                    for group in ids]
        qids = [quota_id_of(field) for _eid, field in items]
        limits = await backend.read_quota_limits([q for q in qids if q])
        out: list[bool] = []
        cache: dict[str, bool] = {}
        for qid in qids:
            lim: QuotaLimits | None = limits.get(qid) if qid else None
            if lim is None or lim.unlimited:
                out.append(False)
                continue
            if qid not in cache:
                state = await backend.read_quota_state(qid, lim, now_ms)
                full = ((lim.rate_limit > 0 and state.in_window >= lim.rate_limit)
                        or (lim.concurrency_cap > 0 and state.active >= lim.concurrency_cap))
                cache[qid] = full
            out.append(cache[qid])
        return out
    except Exception as exc:
        log.warning("unblock: %s re-evaluation failed, kept blocked: %s", source, exc)
        return [True] * len(items)


async def _budget_reset(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    calls = [ResetBudget(tag=c.tag, budget_id=c.member, now_ms=now) for c in found]
    done = 0
    for c, outcome in zip(found, await backend.call_many(list(calls)), strict=True):
        if isinstance(outcome, Exception):
            log.warning("scanner budget_reset: %s failed: %s", c.member, outcome)
        else:
            done += 1
    return done


async def _budget_reconciler(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    states = await backend.read_budgets([c.member for c in found])
    gone: dict[str, list[str]] = {}
    marks: list[tuple[str, bool]] = []
    for c in found:
        state = states[c.member]
        if not state.definition:
            gone.setdefault(c.index, []).append(c.member)
            continue
        if state.definition.get("reset_interval_ms", "0") not in ("", "0"):
            continue  # resetting budgets are left to budget_reset
        # The reconciler's marker uses a strict "exceeded" (usage > limit).
        exceeded = any(limit > 0 and state.usage.get(dim, 0) > limit
                       for dim, limit in state.hard.items())
        marks.append((c.member, exceeded))
    await backend.mark_budget_breaches(marks, now)
    dropped = 0
    for index, ids in gone.items():
        dropped += await backend.drop_budget_policies(index, ids)
    return dropped + len(marks)


async def _quota_reconciler(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    limits = await backend.read_quota_limits([c.member for c in found])
    fixed = 0
    for c in found:
        lim = limits.get(c.member)
        if lim is None or lim.concurrency_cap <= 0:
            continue  # 0.15 recounts only policies with a concurrency cap
        try:
            fixed += int(await backend.recount_quota(c.member, lim.window_seconds, now))
        except Exception as exc:
            log.warning("scanner quota_reconciler: %s failed: %s", c.member, exc)
    return fixed


def _index(name: str) -> IndexKeys:
    def keys(pk: PartitionKeys, _lane: str | None) -> list[str]:
        return [f"ff:idx:{pk.tag}:{name}"]
    return keys


def budget_scanners() -> list[Scanner]:
    """``budget_reset`` (15 s, 20 due per partition), ``budget_reconciler``
    (30 s, SSCAN of budget_policies), ``quota_reconciler`` (30 s, every
    policy) — 0.15's defaults."""
    return [
        Scanner("budget_reset", 15.0, 20, _index("budget_resets"),
                _budget_reset, family="b"),
        Scanner("budget_reconciler", 30.0, 1000, _index("budget_policies"),
                _budget_reconciler, set_read="scan", family="b"),
        Scanner("quota_reconciler", 30.0, 1000, _index("quota_policies"),
                _quota_reconciler, set_read="scan", family="q"),
    ]
