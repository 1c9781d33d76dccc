"""The scheduler role: fires the ticks of recurring schedules, exactly once
per tick, from any number of processes and without a leader.

It is a scanner of the catalogue (``schedules``), so every worker and every
``flowfabric-worker scan`` runs it on the partition ranges it holds
(:mod:`flowfabric_worker.engine.scan_leases`). For each schedule whose next
tick has fired by the server's clock (the ``due`` set of its partition):

1. it works out which ticks to run by the ``catchup`` policy and the
   ``overlap`` policy (the schedule's previous run still going?);
2. it creates each tick's execution through the normal create call, with the
   idempotency key ``sched:<id>:<tick ms>`` — two processes firing the same
   tick create one execution;
3. it moves the schedule past the ticks with a compare-and-set on the tick it
   started from (``ffw_schedule_advance``): of several processes, one moves
   it on; a crash between 2 and 3 only makes the next pass fire the same
   ticks again, which the idempotency keys absorb.

Time is the server's (``TIME`` through the scanner's read), so the virtual
clock of a time-skipping test environment drives schedules too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import msgspec

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.runner import Candidate, Scanner
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.budgets import AttachAdmission
from flowfabric_worker.protocol.ids import ExecutionId, new_uuid, parse_execution_id
from flowfabric_worker.protocol.keys import LANES_INDEX, WAKE_CHANNEL, ExecKeys, PartitionKeys
from flowfabric_worker.protocol.lifecycle import CancelExecution, CreateExecution
from flowfabric_worker.protocol.partitions import solo_partition
from flowfabric_worker.protocol.schedules import ScheduleAdvance, ScheduleKeys, ScheduleRecord
from flowfabric_worker.tasks.schedule_specs import SCHEDULE_TAG, TICK_TAG, TimePlan
from flowfabric_worker.tasks.schedule_store import read_records
from flowfabric_worker.tasks.schedule_ticks import due_ticks, fire_at

__all__ = [
    "MISSED_AFTER_MS",
    "RECHECK_MS",
    "SCHEDULER",
    "create_run",
    "fire_schedule",
    "schedule_scanner",
]

log = logging.getLogger("flowfabric_worker.schedules")

SCHEDULER = "schedules"

#: A tick fired more than this late (ms) was *missed* (every scheduler was
#: down or paused): ``catchup="none"`` drops it.
MISSED_AFTER_MS = 5_000

#: ``overlap="buffer_one"``: how often a schedule whose previous run is
#: still going looks again (ms).
RECHECK_MS = 1_000

#: A schedule whose record cannot be read (a spec this SDK does not know)
#: is looked at again this much later (ms), not at every pass.
BROKEN_RETRY_MS = 60_000


def schedule_scanner(interval: float = 1.0, batch: int = 100) -> Scanner:
    """The scheduler role as a scanner of the partitions' ``due`` sets."""
    def indexes(pk: PartitionKeys, _lane: str | None) -> list[str]:
        return [ScheduleKeys(pk.tag).due]

    return Scanner(name=SCHEDULER, interval=interval, batch=batch, indexes=indexes,
                   handle=fire_due)


async def fire_due(backend: Backend, candidates: Sequence[Candidate], now_ms: int) -> int:
    """The scanner's handler: fire every due schedule found; the number of
    executions created."""
    by_tag: dict[str, list[str]] = {}
    for c in candidates:
        by_tag.setdefault(c.tag, []).append(c.member)
    done = 0
    for tag, ids in by_tag.items():
        for record in await read_records(backend, tag, ids):
            try:
                done += await fire_schedule(backend, tag, record, now_ms)
            except InvalidInput as exc:
                log.warning("schedule %s cannot fire: %s", record.id, exc)
                await _put_off(backend, tag, record, now_ms + BROKEN_RETRY_MS)
    return done


async def fire_schedule(backend: Backend, tag: str, r: ScheduleRecord, now_ms: int) -> int:
    """Fire what is due of one schedule at ``now_ms``; executions created."""
    if r.state != "active" or r.next_tick is None:
        return 0
    plan = TimePlan.from_json(r.spec)
    due = due_ticks(plan, r.id, r.next_tick, now_ms, r.catchup_limit)
    if not due.ticks:
        return 0  # a score read before an update: not due any more
    chosen = _by_catchup(plan, r, due.ticks, now_ms)
    if chosen and r.overlap != "allow":
        # Runs started together would overlap each other: the newest only.
        chosen = chosen[-1:]
        if r.last_eid and await _still_running(backend, r.last_eid):
            if r.overlap == "skip":
                chosen = []
            elif r.overlap == "buffer_one":
                # Keep the tick; look again shortly (the buffered run).
                await _put_off(backend, tag, r, now_ms + RECHECK_MS)
                return 0
            else:  # cancel_previous
                await _cancel(backend, r.last_eid, f"schedule {r.id}: next run started")
    skipped = len(due.ticks) + due.dropped - len(chosen)
    eid = ""
    for tick in chosen:
        eid = await create_run(backend, r, tick, now_ms)
    outcome = await backend.call(ScheduleAdvance(
        tag=tag, schedule_id=r.id, expected_tick=r.next_tick, next_tick=due.next,
        next_fire=None if due.next is None else fire_at(plan, r.id, due.next),
        last_tick=chosen[-1] if chosen else None, last_eid=eid,
        fired=len(chosen), skipped=skipped))
    if outcome != "advanced":
        log.debug("schedule %s: tick %d advanced by another process", r.id, r.next_tick)
        return 0
    if skipped:
        log.info("schedule %s: %d tick(s) not run (catchup=%s, overlap=%s)",
                 r.id, skipped, r.catchup, r.overlap)
    return len(chosen)


def _by_catchup(plan: TimePlan, r: ScheduleRecord, ticks: list[int], now_ms: int) -> list[int]:
    """The due ``ticks`` to run. Only *missed* ones (fired more than
    MISSED_AFTER_MS late) follow ``catchup``: a tick found late — a busy
    box, a scan interval as long as the schedule's period — was not missed,
    and dropping it would lose a run nobody chose to skip."""
    if r.catchup == "all":
        return list(ticks)
    late = [t for t in ticks if now_ms - fire_at(plan, r.id, t) <= MISSED_AFTER_MS]
    missed = ticks[:len(ticks) - len(late)]  # ticks are in time order
    if r.catchup == "skip":
        return missed[-1:] + late
    return late  # "none"


async def create_run(backend: Backend, r: ScheduleRecord, tick_ms: int, now_ms: int, *,
                     idempotency_key: str | None = None) -> ExecutionId:
    """Create the execution of ``r`` for ``tick_ms`` (key
    ``sched:<id>:<tick>`` unless given); the id of the execution that holds
    the key (an earlier one when another process created it)."""
    partition = solo_partition(r.lane, backend.partitions)
    eid: ExecutionId = f"{{fp:{partition}}}:{new_uuid()}"
    tags: dict[str, Any] = json.loads(r.tags) if r.tags else {}
    tags[SCHEDULE_TAG] = r.id
    tags[TICK_TAG] = str(tick_ms)
    create = CreateExecution(
        eid=eid, namespace=r.namespace, lane_id=r.lane, execution_kind=r.task,
        priority=r.priority, creator_identity="flowfabric-worker:schedule",
        policy_json=r.policy or "{}", input_payload=r.payload,
        idempotency_key=idempotency_key or f"sched:{r.id}:{tick_ms}",
        tags_json=json.dumps(tags, separators=(",", ":")),
        execution_deadline_at=now_ms + r.deadline_ms if r.deadline_ms else None,
        partition_id=partition)
    extra: list[Sequence[Any]] = []
    if r.budget_ids or r.quota_id:
        extra.append(backend.fcall_command(AttachAdmission(
            eid=eid, budget_ids=r.budget_ids, quota_policy_id=r.quota_id)))
    extra.append(["SADD", LANES_INDEX, r.lane])
    extra.append(["PUBLISH", WAKE_CHANNEL.format(lane=r.lane), "1"])
    result = await backend.call_and_send(create, *extra, durable=True)
    return parse_execution_id(result.execution_id) if result.duplicate else eid


async def _still_running(backend: Backend, eid: str) -> bool:
    """Whether the schedule's previous run has not ended (queued counts)."""
    (phase,) = await backend.read_many([["HGET", ExecKeys(eid).core, "lifecycle_phase"]])
    return phase is not None and (phase.decode() if isinstance(phase, bytes)
                                  else str(phase)) != "terminal"


async def _cancel(backend: Backend, eid: str, reason: str) -> None:
    core = await backend.get_exec_core(eid)
    if core is None or core.lifecycle_phase == "terminal":
        return
    call = CancelExecution(
        eid=eid, lane_id=core.lane_id, reason=reason, source="operator_override",
        attempt_index=core.current_attempt_index or 0,
        worker_instance_id=core.current_worker_instance_id or "")
    if core.current_waitpoint_id:
        call = msgspec.structs.replace(call, waitpoint_id=core.current_waitpoint_id)
    try:
        await backend.cancel_execution(call)
    except Exception as exc:  # it may have ended meanwhile: the new run starts anyway
        log.info("schedule: cancelling the previous run %s failed: %s", eid, exc)


async def _put_off(backend: Backend, tag: str, r: ScheduleRecord, when_ms: int) -> None:
    """Keep the schedule at its tick but look at it again at ``when_ms``."""
    if r.next_tick is None:
        return
    await backend.call(ScheduleAdvance(
        tag=tag, schedule_id=r.id, expected_tick=r.next_tick, next_tick=r.next_tick,
        next_fire=when_ms))
