"""Plain reads and coordination primitives the maintenance scanners need.

Scanners touch every partition, so each read here takes a batch of keys and
answers in one pipeline round trip: the cost of a tick is a handful of round
trips, not one per partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from flowfabric_worker.protocol.keys import LANES_INDEX, ExecKeys
from flowfabric_worker.protocol.signal_types import signal_types_key

# Release only our own lock: a lock that expired and was taken by another
# process must not be deleted by the late previous holder.
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) else return 0 end"
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ScanOps:
    """Batched index reads and the per-slice scan lock (spec 05 §7)."""

    redis: Any  # the client's stubs differ between redis-py 5 and 8
    read_many: Any  # Backend.read_many
    reads: Any  # self.redis for reads (retried; read_client.py)

    async def server_time_ms(self) -> int:
        """Redis server time in ms: due checks use the clock the library uses."""
        ((seconds, micros),) = await self.read_many([["TIME"]])
        return int(seconds) * 1000 + int(micros) // 1000

    async def due_members(
        self, keys: Sequence[str], max_score: int, limit: int
    ) -> list[list[str]]:
        """For each zset in ``keys``: up to ``limit`` members scored ≤ ``max_score``,
        lowest first, in one pipeline."""
        if not keys:
            return []
        pipe = self.reads.pipeline()
        for key in keys:
            pipe.zrangebyscore(key, "-inf", max_score, start=0, num=limit)
        replies = await pipe.execute()
        return [[_text(m) for m in reply] for reply in replies]

    async def all_members(self, keys: Sequence[str], limit: int) -> list[list[str]]:
        """For each zset in ``keys``: up to ``limit`` members regardless of score."""
        if not keys:
            return []
        replies = await self.read_many([["ZRANGE", key, 0, limit - 1] for key in keys])
        return [[_text(m) for m in reply] for reply in replies]

    async def hash_fields_many(
        self, keys: Sequence[str], fields: Sequence[str]
    ) -> list[list[str]]:
        """``HMGET`` of the same fields on many hashes; missing fields read as ""."""
        if not keys:
            return []
        pipe = self.reads.pipeline()
        for key in keys:
            pipe.hmget(key, list(fields))
        replies = await pipe.execute()
        return [["" if v is None else _text(v) for v in reply] for reply in replies]

    async def remove_index_members(self, key: str, members: Sequence[str]) -> int:
        """``ZREM`` index entries whose record is gone (nothing else can clean
        them: the library functions need the record to find their keys)."""
        if not members:
            return 0
        return int(await self.redis.zrem(key, *members))

    async def add_lanes(self, lanes: Iterable[str]) -> None:
        """Seed the ``ff:idx:lanes`` registry (spec 01 §3: written "at boot";
        spec 05 §7.3), so lane-scoped scanners of every process — a ``scan``
        process started without ``--lane`` included — visit these lanes."""
        names = sorted(set(lanes))
        if names:
            await self.redis.sadd(LANES_INDEX, *names)

    async def lane_members(self, key: str) -> list[str]:
        """Members of a set (the ``ff:idx:lanes`` lane registry)."""
        return sorted(_text(m) for m in await self.reads.smembers(key))

    async def try_scan_lock(self, key: str, token: str, ttl_ms: int) -> bool:
        """Take a short lease on a scan slice (SET NX PX); ``True`` if we hold it."""
        return bool(await self.redis.set(key, token, nx=True, px=ttl_ms))

    async def release_scan_lock(self, key: str, token: str) -> None:
        """Give a slice back early, only if we still hold it."""
        await self.redis.eval(_RELEASE, 1, key, token)

    async def string_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """``GET`` of many string keys in one pipeline (e.g. policies)."""
        if not keys:
            return []
        pipe = self.reads.pipeline()
        for key in keys:
            pipe.get(key)
        return list(await pipe.execute())

    async def purge_execution(self, eid: str, lane: str, attempts: int) -> None:
        """Delete every record of a terminal execution (spec 05 §7.2 #17),
        our step journal included, then drop it from the lane's terminal set
        and ``all_executions``. Plain commands, as in 0.15: the per-attempt and
        per-waitpoint keys are only known after a first read. Every key shares
        the execution's hash tag, so both pipelines stay on one slot."""
        k = ExecKeys(eid)
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(k.waitpoints)
        pipe.zrange(k.signals, 0, -1)
        pipe.smembers(k.deps_all_edges)
        waitpoints, signals, edges = await pipe.execute()
        doomed = [k.payload, k.result, k.tags, k.lease_current, k.lease_history,
                  k.claim_grant, k.attempts, k.suspension_current, k.satisfied_set,
                  k.satisfied_signals, k.member_map, k.deps_meta, k.deps_unresolved,
                  k.deps_all_edges, k.waitpoints, k.signals, k.journal,
                  signal_types_key(k.eid)]
        for i in range(max(attempts, 0)):
            doomed += [k.attempt(i), k.attempt_usage(i), k.attempt_policy(i),
                       k.attempt_summary(i), k.stream(i), k.stream_meta(i)]
        for raw in waitpoints:
            wp = _text(raw)
            doomed += [k.waitpoint(wp), k.waitpoint_signals(wp), k.waitpoint_condition(wp)]
        for raw in signals:
            sid = _text(raw)
            doomed += [k.signal(sid), k.signal_payload(sid)]
        doomed += [k.dep(_text(e)) for e in edges]
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(doomed), 256):
            pipe.delete(*doomed[start:start + 256])
        # The core and policy last: until they go, a rerun can find the rest.
        pipe.delete(k.core, k.policy)
        pipe.zrem(k.lane_terminal(lane), eid)
        pipe.srem(k.all_executions, eid)
        await pipe.execute()
