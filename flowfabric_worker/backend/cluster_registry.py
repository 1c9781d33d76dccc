"""The worker registry on a cluster, in plain commands.

``ff_register_worker`` / ``ff_heartbeat_worker`` take keys without a hash tag
(``ff:worker:<ns>:<id>:alive``, ``…:caps``, the namespace index), which a
cluster spreads over several slots, so one FCALL cannot reach them (spec 01
§1.3 note 4: 0.15 accepts that limitation). The registry is advisory (the
unblock scanner reads capabilities from it), so on a cluster the same writes
go as plain commands, each routed to its own slot: not atomic, with the
same keys, fields and TTLs as the functions write.
"""

from __future__ import annotations

from typing import Any

from flowfabric_worker.protocol.keys import worker_alive, worker_caps, workers_index
from flowfabric_worker.protocol.lifecycle_results import OkResult
from flowfabric_worker.protocol.worker_registry import (
    HeartbeatResult,
    HeartbeatWorker,
    RegisterWorker,
)

__all__ = ["heartbeat_worker", "register_worker"]


async def register_worker(redis: Any, args: RegisterWorker) -> OkResult:
    ns, wiid = args.namespace, args.instance_id
    _id, worker_id, lanes, caps, ttl, now = args.argv()
    alive, hash_key = worker_alive(ns, wiid), worker_caps(ns, wiid)
    existed = bool(await redis.exists(alive))
    await redis.set(alive, "1", px=int(ttl))
    await redis.hset(hash_key, mapping={
        "worker_id": worker_id, "lanes_csv": lanes, "caps_csv": caps, "ttl_ms": ttl,
        "registered_at_ms": now, "last_heartbeat_ms": now})
    await redis.pexpire(hash_key, int(ttl))
    await redis.sadd(workers_index(ns), wiid)
    return OkResult(status="OK", tag="refreshed" if existed else "registered")


async def heartbeat_worker(redis: Any, args: HeartbeatWorker) -> HeartbeatResult:
    alive, hash_key = worker_alive(args.namespace, args.instance_id), worker_caps(
        args.namespace, args.instance_id)
    raw = await redis.hget(hash_key, "ttl_ms")
    if raw is None:
        return HeartbeatResult(tag="not_registered")
    ttl = int(float(raw))
    if not await redis.pexpire(alive, ttl):
        return HeartbeatResult(tag="not_registered")
    await redis.pexpire(hash_key, ttl)
    await redis.hset(hash_key, "last_heartbeat_ms", str(args.now_ms))
    return HeartbeatResult(tag="refreshed", ttl_ms=ttl)
