"""What a deployment looks like right now, from the server's indexes: lane
counts per state, recent throughput and failures, live workers, budgets and
quotas (the dashboard's overview and budgets pages).

Every read is bounded and index-driven: ``ZCARD`` of the lane indexes, a
score-range read of each lane's ``terminal`` index for the last minutes
(capped), the worker registry (spec 01 §3.6) and the budget / quota policy
sets. Nothing scans the keyspace.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.ops_budgets import BudgetState, QuotaLimits
from flowfabric_worker.engine.queue_depth import read_queue_depths
from flowfabric_worker.protocol.budgets import CLAIM_WINDOW
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import (
    LANES_INDEX,
    ExecKeys,
    PartitionKeys,
    worker_alive,
    worker_caps,
    workers_index,
)
from flowfabric_worker.protocol.partitions import tag

__all__ = ["BudgetRow", "LaneCounts", "QuotaRow", "Throughput", "WorkerRow", "lane_counts",
           "read_budget_rows", "read_quota_rows", "read_throughput", "read_workers"]

_CHUNK = 2000
#: Terminal executions read for the throughput chart: past this the chart
#: says "at least" rather than reading without bound.
_THROUGHPUT_CAP = 5000
#: The lane-index states a page shows, each summing some of queue_depth's.
_GROUPS: dict[str, tuple[str, ...]] = {
    "waiting": ("eligible",), "delayed": ("delayed",), "active": ("active",),
    "suspended": ("suspended",),
    "blocked": tuple(f"blocked_{r}" for r in ("dependencies", "budget", "quota",
                                              "route", "operator")),
    "finished": ("terminal",),
}


@dataclass(frozen=True)
class LaneCounts:
    lane: str
    counts: dict[str, int]  # the keys of _GROUPS


@dataclass(frozen=True)
class Throughput:
    """Executions finished per minute over the last ``minutes`` (oldest
    first), split into completed and failed (failed, expired); ``capped``
    when more finished than were read."""

    minutes: int
    completed: list[int]
    failed: list[int]
    capped: bool

    @property
    def failure_rate(self) -> float:
        done = sum(self.completed) + sum(self.failed)
        return sum(self.failed) / done if done else 0.0


@dataclass(frozen=True)
class WorkerRow:
    instance_id: str
    worker_id: str
    lanes: list[str]
    capabilities: list[str]
    last_heartbeat_ms: int
    in_flight: int


@dataclass(frozen=True)
class BudgetRow:
    budget_id: str
    scope: str
    dimensions: list[tuple[str, int, int, int]]  # (name, used, soft, hard)
    breaches: int  # hard-limit refusals so far
    soft_breaches: int
    last_breach_at: int
    last_breach_dim: str

    @property
    def breached(self) -> list[str]:
        return [d for d, used, _soft, hard in self.dimensions if hard > 0 and used >= hard]


@dataclass(frozen=True)
class QuotaRow:
    quota_id: str
    limits: QuotaLimits | None
    in_window: int
    active: int


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _hash(reply: object) -> dict[str, str]:
    """An ``HGETALL`` reply through ``read_many``: a dict, or a flat list."""
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    items = list(reply) if isinstance(reply, list | tuple) else []
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


async def _read(backend: Backend, commands: list[list[str]]) -> list[object]:
    out: list[object] = []
    for start in range(0, len(commands), _CHUNK):
        out.extend(await backend.read_many(commands[start:start + _CHUNK]))
    return out


async def lane_counts(backend: Backend) -> list[LaneCounts]:
    """Per lane, executions in each of its indexes (``finished`` is every
    terminal execution the server still keeps: the retention window)."""
    depths = (await read_queue_depths(backend)).depths
    lanes = sorted({lane for lane, _ in depths})
    return [LaneCounts(lane, {g: sum(depths.get((lane, s), 0) for s in states)
                              for g, states in _GROUPS.items()}) for lane in lanes]


async def read_throughput(backend: Backend, now_ms: int, minutes: int = 10) -> Throughput:
    """Finished executions per minute (from each lane's ``terminal`` index,
    scored by when they finished), completed vs failed."""
    start = now_ms - minutes * 60_000
    (lanes,) = await backend.read_many([["SMEMBERS", LANES_INDEX]])
    keys = [PartitionKeys(tag("fp", p)).lane_terminal(_text(lane))
            for lane in lanes for p in range(backend.partitions.num_flow_partitions)]
    replies = await _read(backend, [
        ["ZRANGEBYSCORE", k, str(start), "+inf", "WITHSCORES", "LIMIT", "0",
         str(_THROUGHPUT_CAP)] for k in keys])
    rows: list[tuple[float, str]] = []
    for reply in replies:
        items = list(reply) if isinstance(reply, list | tuple) else []
        if items and isinstance(items[0], list | tuple):
            rows += [(float(s), _text(m)) for m, s in items]
        else:
            rows += [(float(items[i + 1]), _text(items[i])) for i in range(0, len(items) - 1, 2)]
    capped = len(rows) > _THROUGHPUT_CAP
    rows = heapq.nlargest(_THROUGHPUT_CAP, rows)
    states = await _read(backend, [["HGET", ExecKeys(ExecutionId(eid)).core, "public_state"]
                                   for _score, eid in rows])
    completed, failed = [0] * minutes, [0] * minutes
    for (score, _eid), state in zip(rows, states, strict=True):
        bucket = min(minutes - 1, max(0, int((score - start) // 60_000)))
        s = _text(state) if state else ""
        if s == "completed":
            completed[bucket] += 1
        elif s in ("failed", "expired"):
            failed[bucket] += 1
    return Throughput(minutes, completed, failed, capped)


async def read_workers(backend: Backend, namespace: str) -> list[WorkerRow]:
    """The namespace's live workers with their lanes and how many leases
    each holds (its ``worker:<id>:leases`` sets, one per partition)."""
    (members,) = await backend.read_many([["SMEMBERS", workers_index(namespace)]])
    ids = sorted(_text(m) for m in members)
    if not ids:
        return []
    replies = await backend.read_many(
        [c for wid in ids for c in (["EXISTS", worker_alive(namespace, wid)],
                                    ["HGETALL", worker_caps(namespace, wid)])])
    live: list[tuple[str, dict[str, str]]] = []
    for wid, alive, caps in zip(ids, replies[::2], replies[1::2], strict=True):
        if alive and caps:
            live.append((wid, _hash(caps)))
    parts = [PartitionKeys(tag("fp", p)) for p in range(backend.partitions.num_flow_partitions)]
    sizes = await _read(backend, [["SCARD", pk.worker_leases(wid)]
                                  for wid, _ in live for pk in parts])
    out = []
    for n, (wid, caps) in enumerate(live):
        held = sum(int(_text(s) or 0) for s in sizes[n * len(parts):(n + 1) * len(parts)])
        out.append(WorkerRow(
            instance_id=wid, worker_id=caps.get("worker_id", ""),
            lanes=[x for x in caps.get("lanes_csv", "").split(",") if x],
            capabilities=[x for x in caps.get("caps_csv", "").split(",") if x],
            last_heartbeat_ms=int(caps.get("last_heartbeat_ms") or 0), in_flight=held))
    return out


async def _policy_ids(backend: Backend, family: str, index: str, count: int,
                      limit: int) -> list[str]:
    replies = await backend.read_many(
        [["SMEMBERS", f"ff:idx:{tag(family, p)}:{index}"] for p in range(count)])
    return sorted({_text(m) for r in replies for m in (r or [])})[:limit]


def _budget_row(state: BudgetState) -> BudgetRow:
    dims = sorted(set(state.hard) | set(state.soft) | set(state.usage))
    d = state.definition
    scope = d.get("scope_type", "") + (":" + d["scope_id"] if d.get("scope_id") else "")
    return BudgetRow(state.budget_id, scope,
                     [(d, state.usage.get(d, 0), state.soft.get(d, 0), state.hard.get(d, 0))
                      for d in dims],
                     int(d.get("breach_count") or 0), int(d.get("soft_breach_count") or 0),
                     int(d.get("last_breach_at") or 0), d.get("last_breach_dim", ""))


async def read_budget_rows(backend: Backend, limit: int = 500) -> list[BudgetRow]:
    """Every budget (up to ``limit``) with usage against its limits."""
    ids = await _policy_ids(backend, "b", "budget_policies",
                            backend.partitions.num_budget_partitions, limit)
    states = await backend.read_budgets(ids)
    return [_budget_row(states[i]) for i in ids if states[i].exists]


async def read_quota_rows(backend: Backend, now_ms: int, limit: int = 500) -> list[QuotaRow]:
    """Every quota policy (up to ``limit``) with its window and concurrency counts."""
    ids = await _policy_ids(backend, "q", "quota_policies",
                            backend.partitions.num_quota_partitions, limit)
    limits = await backend.read_quota_limits(ids)
    # Counted, not trimmed: a page view must not write (the scheduler trims).
    commands: list[list[str]] = []
    for qid in ids:
        lim = limits.get(qid)
        qk = backend.quota_keys(qid)
        since = now_ms - (lim.window_seconds if lim else 60) * 1000
        commands += [["ZCOUNT", qk.window(CLAIM_WINDOW), f"({since}", "+inf"],
                     ["GET", qk.concurrency]]
    replies = await _read(backend, commands)
    return [QuotaRow(qid, limits.get(qid), int(_text(replies[2 * n] or 0)),
                     int(_text(replies[2 * n + 1] or 0)))
            for n, qid in enumerate(ids)]
