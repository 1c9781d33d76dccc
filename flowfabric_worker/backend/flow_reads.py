"""Plain reads of flow records and the set-shaped flow indexes (spec 04 §3.1).

The engine roles (completion cascade, reconcilers, projector) and the flow
handle read the graph with these; every read that touches several keys is one
pipeline round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys, FlowKeys

__all__ = ["FlowReads"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


class FlowReads:
    """Typed plain reads of flows, edges, dependency records and set indexes."""

    redis: Any  # the client's stubs differ between redis-py 5 and 8
    reads: Any  # self.redis for reads (retried; read_client.py)

    async def flow_core(self, fk: FlowKeys) -> dict[str, str] | None:
        """``flow_core`` as text fields, or ``None`` when the flow does not exist."""
        raw = await self.reads.hgetall(fk.core)
        return _hash(raw) if raw else None

    async def flow_members(self, fk: FlowKeys) -> list[ExecutionId]:
        return sorted(_text(m) for m in await self.reads.smembers(fk.members))

    async def outgoing_edges(self, fk: FlowKeys, upstream: ExecutionId) -> list[str]:
        """Edge ids leaving ``upstream`` (``out_adj``)."""
        return sorted(_text(m) for m in await self.reads.smembers(fk.outgoing(upstream)))

    async def hashes(self, keys: Sequence[str]) -> list[dict[str, str]]:
        """``HGETALL`` of many hashes in one pipeline (missing → ``{}``)."""
        if not keys:
            return []
        pipe = self.reads.pipeline()
        for key in keys:
            pipe.hgetall(key)
        return [_hash(r) for r in await pipe.execute()]

    async def sets(self, keys: Sequence[str]) -> list[list[str]]:
        """``SMEMBERS`` of many sets in one pipeline, each sorted."""
        if not keys:
            return []
        pipe = self.reads.pipeline()
        for key in keys:
            pipe.smembers(key)
        return [sorted(_text(m) for m in r) for r in await pipe.execute()]

    async def exec_fields(
        self, eids: Sequence[ExecutionId], fields: Sequence[str]
    ) -> list[list[str]]:
        """``HMGET`` of the same ``exec_core`` fields for many executions
        (missing fields and missing cores read as ``""``)."""
        if not eids:
            return []
        pipe = self.reads.pipeline()
        for eid in eids:
            pipe.hmget(ExecKeys(eid).core, list(fields))
        return [["" if v is None else _text(v) for v in r] for r in await pipe.execute()]

    async def set_sizes(self, keys: Sequence[str]) -> list[int]:
        """``SCARD`` of many sets in one pipeline."""
        if not keys:
            return []
        pipe = self.reads.pipeline()
        for key in keys:
            pipe.scard(key)
        return [int(n) for n in await pipe.execute()]

    async def sample_sets(self, keys: Sequence[str], limit: int) -> list[list[str]]:
        """``SRANDMEMBER key limit`` for many sets (the sibling-cancel scanners'
        read, spec 04 §4.9)."""
        if not keys:
            return []
        pipe = self.reads.pipeline()
        for key in keys:
            pipe.srandmember(key, limit)
        return [sorted(_text(m) for m in r or []) for r in await pipe.execute()]

    async def scan_sets(self, keys: Sequence[str], limit: int) -> list[list[str]]:
        """Every member of each set, walked with ``SSCAN … COUNT 100`` (the
        projector's read, spec 04 §4.7), at most ``limit`` per set."""
        found: list[set[str]] = [set() for _ in keys]
        cursors: list[Any] = [0] * len(keys)
        todo = list(range(len(keys)))
        while todo:  # one pipeline per page depth, not one round trip per set
            pipe = self.reads.pipeline()
            for i in todo:
                pipe.sscan(keys[i], cursors[i], count=100)
            replies = await pipe.execute()
            nxt: list[int] = []
            for i, (cursor, batch) in zip(todo, replies, strict=True):
                found[i].update(_text(m) for m in batch)
                cursors[i] = cursor
                if int(cursor) != 0 and len(found[i]) < limit:
                    nxt.append(i)
            todo = nxt
        return [sorted(f)[:limit] for f in found]

    async def claim_once(self, key: str, ttl_ms: int) -> bool:
        """``SET key 1 NX PX ttl``: ``True`` for the first caller only."""
        return bool(await self.redis.set(key, "1", nx=True, px=ttl_ms))

    async def publish(self, channel: str, message: str) -> None:
        await self.redis.publish(channel, message)
