"""Plain reads and coordination primitives the maintenance scanners need.

Scanners touch every partition, so each read here takes a batch of keys and
answers in one pipeline round trip: the cost of a tick is a handful of round
trips, not one per partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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

    async def server_time_ms(self) -> int:
        """Redis server time in ms: due checks use the clock the library uses."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def due_members(
        self, keys: Sequence[str], max_score: int, limit: int
    ) -> list[list[str]]:
        """For each zset in ``keys``: up to ``limit`` members scored ≤ ``max_score``,
        lowest first, in one pipeline."""
        if not keys:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zrangebyscore(key, "-inf", max_score, start=0, num=limit)
        replies = await pipe.execute()
        return [[_text(m) for m in reply] for reply in replies]

    async def all_members(self, keys: Sequence[str], limit: int) -> list[list[str]]:
        """For each zset in ``keys``: up to ``limit`` members regardless of score."""
        if not keys:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zrange(key, 0, limit - 1)
        replies = await pipe.execute()
        return [[_text(m) for m in reply] for reply in replies]

    async def hash_fields_many(
        self, keys: Sequence[str], fields: Sequence[str]
    ) -> list[list[str]]:
        """``HMGET`` of the same fields on many hashes; missing fields read as ""."""
        if not keys:
            return []
        pipe = self.redis.pipeline(transaction=False)
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

    async def lane_members(self, key: str) -> list[str]:
        """Members of a set (the ``ff:idx:lanes`` lane registry)."""
        return sorted(_text(m) for m in await self.redis.smembers(key))

    async def try_scan_lock(self, key: str, token: str, ttl_ms: int) -> bool:
        """Take a short lease on a scan slice (SET NX PX); ``True`` if we hold it."""
        return bool(await self.redis.set(key, token, nx=True, px=ttl_ms))

    async def release_scan_lock(self, key: str, token: str) -> None:
        """Give a slice back early, only if we still hold it."""
        await self.redis.eval(_RELEASE, 1, key, token)
