"""Reading and writing schedule records (the ``ffw_schedule_*`` calls and
plain reads), shared by the client's handles, the worker's registration of
declared schedules and the scheduler role.

:func:`schedule_fields` checks and encodes everything a schedule creates
executions from (arguments, lane, tags, budgets) before anything is sent, so
a bad schedule raises :class:`InvalidInput` / :class:`PayloadError` and
writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.ids import validate_lane
from flowfabric_worker.protocol.schedules import (
    ScheduleDelete,
    ScheduleKeys,
    ScheduleRecord,
    ScheduleSetState,
    ScheduleUpsert,
    schedule_tag,
)
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks.bounds import check_tags, encode_untyped
from flowfabric_worker.tasks.budgets import Budget, Quota, attachment
from flowfabric_worker.tasks.clock import wall_ms
from flowfabric_worker.tasks.schedule_specs import (
    TimePlan,
    check_policies,
    check_schedule_id,
    declared_schedule,
)
from flowfabric_worker.tasks.schedule_ticks import fire_at, tick_after
from flowfabric_worker.tasks.spec import TaskSpec, check_priority

__all__ = [
    "delete_schedule",
    "list_schedules",
    "read_schedule",
    "register_declared",
    "schedule_fields",
    "set_schedule_state",
    "upsert_schedule",
]


def schedule_fields(
    task: TaskSpec[Any, Any] | str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *,
    namespace: str, limits: Limits, lane: str | None = None, priority: int | None = None,
    tags: Mapping[str, str] | None = None, budgets: Iterable[Budget | str] | None = None,
    quota: Quota | str | None = None, overlap: str = "allow", catchup: str = "skip",
    catchup_limit: int = 100, source: str = "client",
) -> dict[str, str | bytes]:
    """The record fields of a schedule of ``task(*args, **kwargs)``, checked."""
    check_policies(overlap, catchup, catchup_limit)
    if isinstance(task, TaskSpec):
        name, policy, deadline = task.name, task.policy_json(), task.deadline
        lane_id = lane or task.lane
        prio = task.priority if priority is None else priority
        all_tags = dict(task.tags)
        budgets = task.budgets if budgets is None else budgets
        quota = task.quota if quota is None else quota
        payload = task.encode_call(args, kwargs, limits=limits)
    else:
        if not isinstance(task, str) or not task:
            raise InvalidInput(f"a schedule needs a task or a task name, not {task!r}")
        name, policy, deadline = task, "{}", None
        lane_id, prio, all_tags = lane or "default", priority or 0, {}
        payload = encode_untyped(task, args, kwargs, limits)
    validate_lane(lane_id)
    check_priority(prio)
    all_tags.update(tags or {})
    check_tags(all_tags, limits)
    budget_ids, quota_id = attachment(budgets, quota)
    return {
        "namespace": namespace, "task": name, "lane": lane_id, "priority": str(prio),
        "policy": policy, "payload": payload,
        "tags": json.dumps(all_tags, separators=(",", ":")) if all_tags else "",
        "deadline_ms": str(int(deadline * 1000)) if deadline else "0",
        "budget_ids": budget_ids, "quota_id": quota_id, "overlap": overlap,
        "catchup": catchup, "catchup_limit": str(catchup_limit), "source": source,
    }


def _first(plan: TimePlan, schedule_id: str, now_ms: int) -> tuple[int | None, int | None]:
    tick = tick_after(plan, now_ms)
    return (None, None) if tick is None else (tick, fire_at(plan, schedule_id, tick))


async def upsert_schedule(backend: Backend, schedule_id: str, plan: TimePlan,
                          fields: dict[str, str | bytes], *, only_new: bool = False) -> str:
    """Create or update a schedule (``created`` / ``updated``). A new or
    re-planned schedule starts at the first tick after now."""
    check_schedule_id(schedule_id)
    tick, fire = _first(plan, schedule_id, wall_ms())
    return await backend.call(ScheduleUpsert(
        tag=schedule_tag(schedule_id, backend.partitions), schedule_id=schedule_id,
        fields=fields, spec=plan.to_json(), next_tick=tick, next_fire=fire,
        only_new=only_new))


async def set_schedule_state(backend: Backend, schedule_id: str, state: str) -> str:
    """Pause or resume (the state before). Resuming starts at the first
    tick after now: the ticks of the pause are not caught up."""
    check_schedule_id(schedule_id)
    tick = fire = None
    if state == "active":
        record = await read_schedule(backend, schedule_id)
        if record is not None:
            tick, fire = _first(TimePlan.from_json(record.spec), schedule_id, wall_ms())
    return await backend.call(ScheduleSetState(
        tag=schedule_tag(schedule_id, backend.partitions), schedule_id=schedule_id,
        state=state,  # type: ignore[arg-type]  # checked by the struct
        next_tick=tick, next_fire=fire))


async def delete_schedule(backend: Backend, schedule_id: str) -> bool:
    check_schedule_id(schedule_id)
    return await backend.call(ScheduleDelete(
        tag=schedule_tag(schedule_id, backend.partitions), schedule_id=schedule_id))


async def read_schedule(backend: Backend, schedule_id: str) -> ScheduleRecord | None:
    check_schedule_id(schedule_id)
    key = ScheduleKeys(schedule_tag(schedule_id, backend.partitions), schedule_id).record
    (raw,) = await backend.read_many([["HGETALL", key]])
    return ScheduleRecord.from_hash(_pairs(raw))


async def read_records(backend: Backend, tag: str, ids: list[str]) -> list[ScheduleRecord]:
    """The records of ``ids`` on one partition, in one round trip (missing
    ones left out)."""
    if not ids:
        return []
    raws = await backend.read_many([["HGETALL", ScheduleKeys(tag, sid).record] for sid in ids])
    found = (ScheduleRecord.from_hash(_pairs(raw)) for raw in raws)
    return [r for r in found if r is not None]


async def list_schedules(backend: Backend, namespace: str | None = None) -> list[ScheduleRecord]:
    """Every schedule (of ``namespace`` when given), by id: one round trip
    for the partitions' id sets, one for the records."""
    n = backend.partitions.num_flow_partitions
    tags = [f"{{fp:{i}}}" for i in range(n)]
    members = await backend.read_many([["SMEMBERS", ScheduleKeys(t).all] for t in tags])
    wanted = [(t, _text(m)) for t, ms in zip(tags, members, strict=True) for m in ms or ()]
    if not wanted:
        return []
    raws = await backend.read_many([["HGETALL", ScheduleKeys(t, sid).record]
                                    for t, sid in wanted])
    out = [r for r in (ScheduleRecord.from_hash(_pairs(raw)) for raw in raws) if r is not None]
    if namespace is not None:
        out = [r for r in out if r.namespace == namespace]
    return sorted(out, key=lambda r: r.id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(raw: Any) -> dict[Any, Any]:
    """An ``HGETALL`` reply (a flat list, or a dict) as a dict."""
    if isinstance(raw, dict):
        return raw
    items = list(raw or [])
    return dict(zip(items[0::2], items[1::2], strict=True))


async def register_declared(backend: Backend, tasks: Iterable[Any], *, namespace: str,
                            limits: Limits) -> list[str]:
    """Upsert the schedules ``@task(schedule=...)`` declared on ``tasks``
    (what a worker does when it starts); the ids registered. Each is checked
    first: a bad declaration raises before any is written. An unchanged
    declaration keeps its next tick and its state (a paused one stays
    paused)."""
    plans: list[tuple[str, TimePlan, dict[str, str | bytes]]] = []
    for task in tasks:
        declared = declared_schedule(task)
        if declared is None or not isinstance(task, TaskSpec):
            continue
        sid = check_schedule_id(declared.schedule_id or task.name)
        plan = TimePlan(declared.when, jitter_ms=int(declared.jitter * 1000))
        fields = schedule_fields(task, declared.args, declared.kwargs, namespace=namespace,
                                 limits=limits, overlap=declared.overlap,
                                 catchup=declared.catchup,
                                 catchup_limit=declared.catchup_limit, source="code")
        plans.append((sid, plan, fields))
    for sid, plan, fields in plans:
        await upsert_schedule(backend, sid, plan, fields)
    return [sid for sid, _, _ in plans]
