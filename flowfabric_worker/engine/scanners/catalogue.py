"""The scanners a standalone runtime runs (spec 05 §7.2/§7.3), with the default
intervals and batch sizes of the catalogue.

Each handler pipelines one library call per candidate (``call_many``): a batch
costs one round trip, and a refusal of one item is a value, not a failure of
the batch. The library functions re-check every condition, so a stale index
entry or a duplicate scan by another process is harmless.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.runner import Candidate, Scanner
from flowfabric_worker.engine.scanners.budgets import still_blocked
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.keys import ExecKeys, PartitionKeys
from flowfabric_worker.protocol.maintenance import (
    ExpireExecution,
    MarkLeaseExpiredIfDue,
    PromoteDelayed,
    UnblockExecution,
)
from flowfabric_worker.protocol.signals import CloseWaitpoint, ExpireSuspension

__all__ = ["lifecycle_scanners"]

log = logging.getLogger("flowfabric_worker.scanners")

# Blocked sets the unblock scanner visits, and the reason each must carry
# (never `paused_by_flow_cancel` or operator pauses: spec 05 §7.2 #7).
_UNBLOCK_REASONS = {"route": "waiting_for_capable_worker", "budget": "waiting_for_budget",
                    "quota": "waiting_for_quota"}


async def _run(backend: Backend, calls: Sequence[FCall[Any]], name: str) -> int:
    if not calls:
        return 0
    done = 0
    for fn, outcome in zip(calls, await backend.call_many(list(calls)), strict=True):
        if isinstance(outcome, Exception):
            log.warning("scanner %s: %s failed: %s", name, fn.NAME, outcome)
        else:
            done += 1
    return done


async def _lease_expiry(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    calls = [MarkLeaseExpiredIfDue(eid=c.member) for c in found]
    return await _run(backend, calls, "lease_expiry")


async def _promote(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    calls = [
        PromoteDelayed(eid=c.member, lane_id=c.lane or "", now_ms=now)
        for c in found if c.lane
    ]
    return await _run(backend, calls, "delayed_promoter")


def _expirer(reason: str) -> Any:
    async def handle(backend: Backend, found: Sequence[Candidate], now: int) -> int:
        # The key list depends on the lane and attempt index: pre-read both.
        cores = await backend.hash_fields_many(
            [ExecKeys(c.member).core for c in found], ["lane_id", "current_attempt_index"]
        )
        calls: list[FCall[Any]] = []
        for c, (lane, attempt) in zip(found, cores, strict=True):
            calls.append(ExpireExecution(
                eid=c.member, lane_id=lane or "default",
                attempt_index=int(attempt) if attempt.isdigit() else 0,
                expire_reason=reason,
            ))
        return await _run(backend, calls, reason)
    return handle


async def _suspension_timeout(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    # The keys name the current waitpoint and attempt: pre-read them, and the
    # suspension's timeout_at, because the function raises a script error on
    # an open suspension whose timeout_at is blank (spec 03 §5.5) — such an
    # index entry is stale and is left to the function's own cleanup paths.
    ks = [ExecKeys(c.member) for c in found]
    cores = await backend.hash_fields_many(
        [k.core for k in ks], ["lane_id", "current_attempt_index", "current_waitpoint_id",
                               "lifecycle_phase"])
    susp = await backend.hash_fields_many([k.suspension_current for k in ks],
                                          ["timeout_at", "closed_at"])
    calls: list[FCall[Any]] = []
    for c, (lane, attempt, wp, phase), (timeout_at, closed_at) in zip(
            found, cores, susp, strict=True):
        if phase == "suspended" and not closed_at and not timeout_at:
            continue
        calls.append(ExpireSuspension(
            eid=c.member, lane=lane or "default",
            current_waitpoint_id=wp,
            current_attempt_index=int(attempt) if attempt.isdigit() else 0))
    return await _run(backend, calls, "suspension_timeout")


async def _pending_wp_expiry(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    # Members are waitpoint ids; the owning execution is on the waitpoint
    # record, which lives on the same partition as the index.
    owners = await backend.hash_fields_many(
        [PartitionKeys(c.tag).waitpoint(c.member) for c in found], ["execution_id"])
    calls: list[FCall[Any]] = []
    orphans: dict[str, list[str]] = {}
    for c, (eid,) in zip(found, owners, strict=True):
        if not eid:
            orphans.setdefault(c.index, []).append(c.member)
            continue
        calls.append(CloseWaitpoint(eid=eid, waitpoint_id=c.member, reason="never_committed"))
    removed = 0
    for index, members in orphans.items():
        removed += await backend.remove_index_members(index, members)
    return removed + await _run(backend, calls, "pending_wp_expiry")


#: Default retention of a terminal execution's records (spec 05 §7.2 #17).
DEFAULT_RETENTION_MS = 24 * 3600 * 1000


def _retention_ms(policy: bytes | None) -> int:
    """``stream_policy.retention_ttl_ms`` of the execution policy, else 24 h."""
    if not policy:
        return DEFAULT_RETENTION_MS
    try:
        value = json.loads(policy).get("stream_policy", {}).get("retention_ttl_ms")
    except (ValueError, AttributeError):
        return DEFAULT_RETENTION_MS
    return int(value) if isinstance(value, int) and value >= 0 else DEFAULT_RETENTION_MS


async def _retention(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    ks = [ExecKeys(c.member) for c in found]
    cores = await backend.hash_fields_many(
        [k.core for k in ks], ["completed_at", "total_attempt_count", "lifecycle_phase"])
    policies = await backend.string_values([k.policy for k in ks])
    done = 0
    for c, (completed, attempts, phase), policy in zip(found, cores, policies, strict=True):
        lane = c.lane or ""
        if not completed.isdigit() or phase not in ("terminal", ""):
            # No completion time, or no longer terminal (replayed): only the
            # stale terminal-set entry goes.
            await backend.remove_index_members(c.index, [c.member])
            done += 1
            continue
        if int(completed) + _retention_ms(policy) > now:
            continue
        try:
            await backend.purge_execution(c.member, lane,
                                          int(attempts) if attempts.isdigit() else 0)
            done += 1
        except Exception as exc:
            log.warning("scanner retention_trimmer: purge of %s failed: %s", c.member, exc)
    return done


async def _unblock(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    # Route blocks: spec 05 §7.2 fails open here (the scheduler re-blocks an
    # execution nobody can take), so only the stored reason is checked.
    # Budget and quota blocks are re-evaluated and fail closed.
    cores = await backend.hash_fields_many(
        [ExecKeys(c.member).core for c in found],
        ["blocking_reason", "budget_ids", "quota_policy_id"])
    clear: list[tuple[Candidate, str]] = []
    recheck: dict[str, list[tuple[Candidate, str]]] = {"budget": [], "quota": []}
    for c, (reason, budgets, quota) in zip(found, cores, strict=True):
        source = c.index.rsplit(":", 1)[-1]
        expected = _UNBLOCK_REASONS.get(source)
        if expected is None or reason != expected or not c.lane:
            continue
        if source in recheck:
            recheck[source].append((c, budgets if source == "budget" else quota))
        else:
            clear.append((c, source))
    for source, items in recheck.items():
        if not items:
            continue
        blocked = await still_blocked(backend, source, [(c.member, f) for c, f in items], now)
        clear += [(c, source) for (c, _f), b in zip(items, blocked, strict=True) if not b]
    calls: list[FCall[Any]] = [
        UnblockExecution(eid=c.member, lane_id=c.lane or "", source=source, now_ms=now,
                         expected_blocking_reason=_UNBLOCK_REASONS[source])
        for c, source in clear]
    return await _run(backend, calls, "unblock")


def lifecycle_scanners() -> list[Scanner]:
    return [
        Scanner("lease_expiry", 1.5, 50,
                lambda pk, _lane: [pk.lease_expiry], _lease_expiry),
        Scanner("delayed_promoter", 0.75, 50,
                lambda pk, lane: [pk.lane_delayed(lane or "")], _promote, per_lane=True),
        Scanner("attempt_timeout", 2.0, 50,
                lambda pk, _lane: [pk.attempt_timeout], _expirer("attempt_timeout")),
        Scanner("execution_deadline", 5.0, 50,
                lambda pk, _lane: [pk.execution_deadline], _expirer("execution_deadline")),
        Scanner("suspension_timeout", 2.0, 50,
                lambda pk, _lane: [pk.suspension_timeout], _suspension_timeout),
        Scanner("pending_wp_expiry", 5.0, 100,
                lambda pk, _lane: [pk.pending_waitpoint_expiry], _pending_wp_expiry),
        Scanner("unblock", 5.0, 100,
                _unblock_indexes, _unblock, per_lane=True, due_only=False),
        Scanner("retention_trimmer", 60.0, 20,
                lambda pk, lane: [pk.lane_terminal(lane or "")], _retention, per_lane=True,
                lag_ms=DEFAULT_RETENTION_MS),
    ]


def _unblock_indexes(pk: PartitionKeys, lane: str | None) -> list[str]:
    return [pk.lane_blocked(lane or "", source) for source in _UNBLOCK_REASONS]
