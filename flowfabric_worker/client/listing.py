"""Listing executions from the server's indexes (``flowfabric-worker ls``),
and which lanes live workers serve.

Everything here reads the per-partition scheduling indexes of spec 01 §3.2
(``ff:idx:<tag>:lane:<lane>:{eligible,delayed,active,suspended,terminal,
blocked:*}``) and the lane set ``ff:idx:lanes``; nothing scans the keyspace.
An execution is in exactly one of its lane's scheduling indexes at a time, so
reading them all finds every live or kept execution once.

The contract keeps no "by creation time" index for most states. Each index
is read from its highest score down, which is the newest by the time that
index keeps:

- ``eligible``: ``created_at`` minus ``priority × 10^12`` — newest first within
  a priority (a higher priority sorts lower and is reached later);
- ``blocked:dependencies``: ``created_at``;
- ``terminal``: when it finished;
- ``active``: the lease expiry at claim time (most recently claimed first);
- ``blocked:budget|quota|route|operator``: when it was blocked;
- ``delayed``: when it becomes due; ``suspended``: its timeout (no timeout
  sorts first).

The newest ``limit`` of each index (across partitions and lanes) are read in
full, then every row is sorted by ``created_at``, newest first. With a filter
(task, state) that the indexes cannot apply the window is doubled until
``limit`` rows match or the indexes are exhausted (bounded by ``max_window``).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.ids import ExecutionId, validate_uuid
from flowfabric_worker.protocol.keys import (
    LANES_INDEX,
    ExecKeys,
    FlowKeys,
    PartitionKeys,
    worker_alive,
    worker_caps,
    workers_index,
)
from flowfabric_worker.protocol.partitions import flow_tag, tag
from flowfabric_worker.protocol.records import ExecCore, PublicState

__all__ = ["STATES", "ExecutionRow", "list_executions", "live_worker_lanes"]

_BLOCKED = ("dependencies", "budget", "quota", "route", "operator")
#: Index name -> the public states an execution in it can show. ``--state S``
#: reads only the indexes that can hold S, then keeps rows whose state is S.
_INDEX_STATES: dict[str, frozenset[str]] = {
    "eligible": frozenset({"waiting", "resumable"}),
    "delayed": frozenset({"delayed", "waiting"}),
    "active": frozenset({"active"}),
    "suspended": frozenset({"suspended", "resumable"}),
    "terminal": frozenset({"completed", "failed", "cancelled", "expired", "skipped"}),
    "blocked:dependencies": frozenset({"waiting_children", "waiting"}),
    "blocked:budget": frozenset({"rate_limited", "waiting"}),
    "blocked:quota": frozenset({"rate_limited", "waiting"}),
    "blocked:route": frozenset({"waiting"}),
    "blocked:operator": frozenset({"waiting"}),
}
#: Every public state ``ls --state`` accepts.
STATES: tuple[str, ...] = get_args(PublicState)
#: Commands per pipeline: a deployment has 256 partitions × lanes × 10 indexes.
_CHUNK = 2000


@dataclass(frozen=True)
class ExecutionRow:
    """One execution as ``ls`` shows it (times in epoch ms)."""

    id: str
    task: str
    lane: str
    state: str
    attempts: int
    created_at: int
    progress_pct: str
    progress_message: str
    flow_id: str | None
    #: Why a waiting execution waits (e.g. a flow-control key at its limit).
    blocking_detail: str = ""

    @classmethod
    def of(cls, core: ExecCore) -> ExecutionRow:
        return cls(id=core.execution_id, task=core.execution_kind, lane=core.lane_id,
                   state=str(core.public_state), attempts=core.total_attempt_count,
                   created_at=core.created_at, progress_pct=core.progress_pct,
                   progress_message=core.progress_message, flow_id=core.flow_id,
                   blocking_detail="" if core.is_terminal else core.blocking_detail)


def _index_key(keys: PartitionKeys, lane: str, index: str) -> str:
    if index.startswith("blocked:"):
        return keys.lane_blocked(lane, index.removeprefix("blocked:"))
    return {"eligible": keys.lane_eligible, "delayed": keys.lane_delayed,
            "active": keys.lane_active, "suspended": keys.lane_suspended,
            "terminal": keys.lane_terminal}[index](lane)


async def _lanes(backend: Backend) -> list[str]:
    (members,) = await backend.read_many([["SMEMBERS", LANES_INDEX]])
    return sorted(_text(m) for m in members)


async def _read_chunked(backend: Backend, commands: list[list[str]]) -> list[object]:
    out: list[object] = []
    for start in range(0, len(commands), _CHUNK):
        out.extend(await backend.read_many(commands[start:start + _CHUNK]))
    return out


async def _cores(backend: Backend, eids: Sequence[ExecutionId]) -> list[ExecCore]:
    hashes = await backend.hashes([ExecKeys(e).core for e in eids])
    return [ExecCore.from_hash(h) for h in hashes if h]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(reply: object) -> list[tuple[float, str]]:
    """A ``ZREVRANGE … WITHSCORES`` reply as (score, member): a flat list on
    RESP2, [member, score] pairs on RESP3 or through redis-py's callbacks."""
    items = list(reply) if isinstance(reply, list | tuple) else []
    if items and isinstance(items[0], list | tuple):
        return [(float(score), _text(member)) for member, score in items]
    return [(float(items[i + 1]), _text(items[i])) for i in range(0, len(items) - 1, 2)]


def _keep(core: ExecCore, task: str | None, state: str | None) -> bool:
    return ((task is None or core.execution_kind == task)
            and (state is None or core.public_state == state))


def _newest(cores: list[ExecCore], limit: int) -> list[ExecutionRow]:
    cores.sort(key=lambda c: (c.created_at, c.execution_id), reverse=True)
    return [ExecutionRow.of(c) for c in cores[:limit]]


async def list_executions(
    backend: Backend, *, lanes: Sequence[str] = (), state: str | None = None,
    task: str | None = None, flow_id: str | None = None, limit: int = 50,
    max_window: int = 2_000,
) -> list[ExecutionRow]:
    """The newest ``limit`` executions matching every filter given, newest
    ``created_at`` first. ``lanes`` empty means every lane in ``ff:idx:lanes``.
    ``flow_id`` reads the flow's member set instead of the lane indexes."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, got {limit}")
    if state is not None and state not in STATES:
        raise InvalidInput(f"unknown state {state!r}; one of: {', '.join(STATES)}")
    if flow_id is not None:
        validate_uuid(flow_id)
        fk = FlowKeys(flow_tag(flow_id, backend.partitions), flow_id)
        members = await backend.flow_members(fk)
        cores = [c for c in await _cores(backend, members) if _keep(c, task, state)
                 and (not lanes or c.lane_id in lanes)]
        return _newest(cores, limit)

    indexes = [i for i, states in _INDEX_STATES.items() if state is None or state in states]
    lane_ids = list(lanes) or await _lanes(backend)
    sources = [_index_key(PartitionKeys(tag("fp", p)), lane, index)
               for index in indexes for lane in lane_ids
               for p in range(backend.partitions.num_flow_partitions)]
    index_of = [index for index in indexes for _lane in lane_ids
                for _p in range(backend.partitions.num_flow_partitions)]
    window = limit
    while True:
        replies = await _read_chunked(
            backend, [["ZREVRANGE", key, "0", str(window - 1), "WITHSCORES"] for key in sources])
        more = False
        # Per index, the newest `window` across every partition and lane: the
        # scores of one index mean the same thing everywhere.
        by_index: dict[str, list[tuple[float, str]]] = {i: [] for i in indexes}
        for index, reply in zip(index_of, replies, strict=True):
            pairs = _pairs(reply)
            more = more or len(pairs) >= window
            by_index[index].extend(pairs)
        picked = [eid for rows in by_index.values()
                  for _score, eid in heapq.nlargest(window, rows)]
        cores = [c for c in await _cores(backend, picked) if _keep(c, task, state)]
        if len(cores) >= limit or not more or window >= max_window:
            return _newest(cores, limit)
        window = min(window * 4, max_window)


async def live_worker_lanes(backend: Backend, namespace: str) -> set[str]:
    """Lanes served by the namespace's live workers (spec 01 §3.6: the
    worker index, each worker's ``:alive`` key and its ``lanes_csv``)."""
    (members,) = await backend.read_many([["SMEMBERS", workers_index(namespace)]])
    ids = sorted(_text(m) for m in members)
    if not ids:
        return set()
    commands: list[list[str]] = []
    for wid in ids:
        commands.append(["EXISTS", worker_alive(namespace, wid)])
        commands.append(["HGET", worker_caps(namespace, wid), "lanes_csv"])
    replies = await backend.read_many(commands)
    lanes: set[str] = set()
    for alive, csv in zip(replies[::2], replies[1::2], strict=True):
        if alive and csv:
            lanes.update(lane for lane in _text(csv).split(",") if lane)
    return lanes
