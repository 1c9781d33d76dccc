"""Helpers of the schedule tests: the executions a schedule created."""

from __future__ import annotations

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.keys import ExecKeys, PartitionKeys
from flowfabric_worker.protocol.partitions import solo_partition, tag
from flowfabric_worker.tasks.schedule_specs import SCHEDULE_TAG, TICK_TAG


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def scheduled_runs(backend: Backend, lane: str = "default",
                         schedule_id: str | None = None) -> list[tuple[str, int]]:
    """``(execution id, tick ms)`` of every execution of ``lane`` a schedule
    created (of ``schedule_id`` when given), by tick."""
    pk = PartitionKeys(tag("fp", solo_partition(lane, backend.partitions)))
    (members,) = await backend.read_many([["SMEMBERS", pk.all_executions]])
    eids = [_text(m) for m in members]
    if not eids:
        return []
    replies = await backend.read_many(
        [["HMGET", ExecKeys(e).tags, SCHEDULE_TAG, TICK_TAG] for e in eids])
    out = []
    for eid, (sid, tick) in zip(eids, replies, strict=True):
        if sid is None or (schedule_id is not None and _text(sid) != schedule_id):
            continue
        out.append((eid, int(_text(tick))))
    return sorted(out, key=lambda x: x[1])
