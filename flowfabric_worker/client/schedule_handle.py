"""Recurring schedules on the submitting side: ``client.schedule(...)``,
``client.schedules()`` and the :class:`ScheduleHandle` they give.

Example::

    sched = await client.schedule(report, "eu", cron="0 9 * * MON-FRI",
                                  tz="Europe/Paris", schedule_id="daily-report")
    print(await sched.next_runs(3))
    await sched.pause()

See docs/schedules.md for the policies and guarantees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from flowfabric_worker.client.run_handle import HandleOwner, RunHandle
from flowfabric_worker.engine.schedule_firing import create_run
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.errors.schedules import ScheduleNotFound
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.schedules import ScheduleRecord
from flowfabric_worker.tasks.clock import wall_ms
from flowfabric_worker.tasks.schedule_specs import (
    Cron,
    Every,
    TimePlan,
    When,
    check_policies,
    check_schedule_id,
    to_ms,
)
from flowfabric_worker.tasks.schedule_store import (
    delete_schedule,
    read_schedule,
    schedule_fields,
    set_schedule_state,
    upsert_schedule,
)
from flowfabric_worker.tasks.schedule_ticks import ticks_after
from flowfabric_worker.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from flowfabric_worker.tasks.budgets import Budget, Quota

__all__ = ["ScheduleHandle", "ScheduleInfo", "create_schedule", "plan_of"]


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as stored: what it runs, when, its policies and state
    (``active`` / ``paused`` / ``ended``), its next and last ticks (UTC),
    the last execution it created and how many ticks ran / were not run."""

    id: str
    task: str
    lane: str
    when: When
    start_at: datetime | None
    end_at: datetime | None
    jitter: float
    overlap: str
    catchup: str
    state: str
    next_run: datetime | None
    last_run: datetime | None
    last_execution_id: str
    fired: int
    skipped: int
    source: str

    @classmethod
    def from_record(cls, r: ScheduleRecord) -> ScheduleInfo:
        plan = TimePlan.from_json(r.spec)
        return cls(id=r.id, task=r.task, lane=r.lane, when=plan.when,
                   start_at=_dt(plan.start_ms), end_at=_dt(plan.end_ms),
                   jitter=plan.jitter_ms / 1000, overlap=r.overlap, catchup=r.catchup,
                   state=r.state, next_run=_dt(r.next_tick), last_run=_dt(r.last_tick),
                   last_execution_id=r.last_eid, fired=r.fired, skipped=r.skipped,
                   source=r.source)


def plan_of(cron: str | Cron | None, every: float | Every | None, tz: str | None,
            start_at: datetime | float | None, end_at: datetime | float | None,
            jitter: float) -> TimePlan:
    """The checked time plan of ``cron=`` / ``every=`` (seconds or an
    :class:`Every`) and the time options."""
    if (cron is None) == (every is None):
        raise InvalidInput("give exactly one of cron= and every=")
    when: When
    if cron is not None:
        when = cron if isinstance(cron, Cron) else Cron(cron, tz=tz or "UTC")
    elif isinstance(every, Every):
        when = every
    else:
        if isinstance(every, bool) or not isinstance(every, int | float):
            raise InvalidInput(f"every= takes seconds or an Every, not {every!r}")
        when = Every(seconds=every)
    if tz is not None and not isinstance(when, Cron):
        raise InvalidInput("tz= applies to cron schedules only")
    if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not jitter >= 0:
        raise InvalidInput(f"jitter must be >= 0 seconds, not {jitter!r}")
    return TimePlan(when, start_ms=to_ms(start_at, "start_at"), end_ms=to_ms(end_at, "end_at"),
                    jitter_ms=int(jitter * 1000))


async def create_schedule(
    client: HandleOwner, task: TaskSpec[Any, Any] | str, args: tuple[Any, ...],
    kwargs: Mapping[str, Any], *, plan: TimePlan, schedule_id: str | None,
    overlap: str, catchup: str, catchup_limit: int, lane: str | None,
    priority: int | None, tags: Mapping[str, str] | None,
    budgets: Iterable[Budget | str] | None, quota: Quota | str | None,
    source: str = "client",
) -> ScheduleHandle:
    """Create or update (upsert by id) a schedule; see :meth:`Client.schedule`."""
    sid = check_schedule_id(schedule_id if schedule_id is not None
                            else task.name if isinstance(task, TaskSpec) else str(task))
    fields = schedule_fields(task, args, kwargs, namespace=client.namespace,
                             limits=client.limits, lane=lane, priority=priority, tags=tags,
                             budgets=budgets, quota=quota, overlap=overlap, catchup=catchup,
                             catchup_limit=catchup_limit, source=source)
    await upsert_schedule(client.backend, sid, plan, fields)
    return ScheduleHandle(client, sid)


class ScheduleHandle:
    """A stored schedule, by id. Every method reads or writes the server
    (nothing is cached), so it works on a schedule another process made."""

    def __init__(self, client: HandleOwner, schedule_id: str) -> None:
        self.client = client
        self.id = check_schedule_id(schedule_id)

    def __repr__(self) -> str:
        return f"ScheduleHandle({self.id!r})"

    async def _record(self) -> ScheduleRecord:
        record = await read_schedule(self.client.backend, self.id)
        if record is None:
            raise ScheduleNotFound(details=(self.id,), function="schedule")
        return record

    async def info(self) -> ScheduleInfo:
        """The schedule as stored (:class:`ScheduleNotFound` if deleted)."""
        return ScheduleInfo.from_record(await self._record())

    async def pause(self) -> str:
        """Stop creating runs (a run already started is left alone); the
        state before."""
        return await set_schedule_state(self.client.backend, self.id, "paused")

    async def resume(self) -> str:
        """Start again from the first tick after now (ticks of the pause are
        not caught up); the state before."""
        return await set_schedule_state(self.client.backend, self.id, "active")

    async def trigger(self) -> RunHandle[Any]:
        """Run it now, once, outside the plan (the next tick is unchanged)."""
        record = await self._record()
        now = wall_ms()
        eid = await create_run(self.client.backend, record, now, now,
                               idempotency_key=f"sched:{self.id}:trigger:{new_uuid()}")
        return RunHandle(self.client, eid, None)

    async def update(
        self, *, cron: str | Cron | None = None, every: float | Every | None = None,
        tz: str | None = None, start_at: datetime | float | None = None,
        end_at: datetime | float | None = None, jitter: float | None = None,
        overlap: str | None = None, catchup: str | None = None,
    ) -> ScheduleInfo:
        """Change when it runs or its policies (what it runs stays: to
        change the arguments, call ``client.schedule`` again with the same
        id). A changed plan starts at its first tick after now."""
        record = await self._record()
        plan = TimePlan.from_json(record.spec)
        when: When = plan.when
        if cron is not None or every is not None:
            when = plan_of(cron, every, tz, None, None, 0).when
        elif tz is not None:
            if not isinstance(when, Cron):
                raise InvalidInput("tz= applies to cron schedules only")
            when = Cron(when.expr, tz=tz)
        new = TimePlan(
            when, start_ms=plan.start_ms if start_at is None else to_ms(start_at, "start_at"),
            end_ms=plan.end_ms if end_at is None else to_ms(end_at, "end_at"),
            jitter_ms=plan.jitter_ms if jitter is None else int(jitter * 1000))
        fields: dict[str, str | bytes] = {}
        if overlap is not None or catchup is not None:
            check_policies(overlap or record.overlap, catchup or record.catchup,
                           record.catchup_limit)
            fields = {"overlap": overlap or record.overlap,
                      "catchup": catchup or record.catchup}
        await upsert_schedule(self.client.backend, self.id, new, fields)
        return await self.info()

    async def delete(self) -> bool:
        """Delete the schedule (its runs are left alone); whether it existed."""
        return await delete_schedule(self.client.backend, self.id)

    async def next_runs(self, n: int = 5) -> list[datetime]:
        """The next ``n`` nominal tick times (UTC), from the stored next tick
        (none when paused or ended)."""
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 10_000:
            raise InvalidInput(f"n must be an integer in 0..10000, not {n!r}")
        record = await self._record()
        if record.state != "active" or record.next_tick is None:
            return []
        plan = TimePlan.from_json(record.spec)
        first = [record.next_tick]
        rest = islice(ticks_after(plan, record.next_tick), max(n - 1, 0))
        return [datetime.fromtimestamp(t / 1000, UTC) for t in [*first, *rest][:n]]
