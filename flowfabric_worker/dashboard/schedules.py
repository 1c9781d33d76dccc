"""The schedules page (GET ``/schedules``) and its actions (POST, CSRF-checked):
pause, resume, trigger — what ``flowfabric-worker schedule`` does.

The page reads every schedule of the client's namespace in two round trips
(``client.schedules()``), and the state of each one's last run in one more;
the next runs are tick math on the stored plan (no read per schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from flowfabric_worker.client.client import Client
from flowfabric_worker.client.schedule_handle import ScheduleInfo
from flowfabric_worker.dashboard.render import Renderer, path_part
from flowfabric_worker.dashboard.security import FLASH_COOKIE, Keys, set_cookie
from flowfabric_worker.errors import FlowFabricError
from flowfabric_worker.tasks.schedule_specs import Cron, TimePlan
from flowfabric_worker.tasks.schedule_ticks import ticks_after

__all__ = ["NEXT_RUNS", "ScheduleRow", "Schedules", "schedule_rows"]

#: How many upcoming ticks a row shows.
NEXT_RUNS = 3


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One schedule as the page shows it: times already formatted."""

    info: ScheduleInfo
    when: str
    next_runs: list[str]
    last_run: str
    last_state: str


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _fmt(ms: int, when: object) -> str:
    """UTC like every time on the dashboard; a cron schedule's own zone too,
    since that is the zone its expression is written in."""
    at = datetime.fromtimestamp(ms / 1000, UTC)
    text = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(when, Cron) and when.tz != "UTC":
        text += at.astimezone(when.zone).strftime(f" (%H:%M {when.tz})")
    return text


def _when(info: ScheduleInfo) -> str:
    if isinstance(info.when, Cron):
        return f"cron {info.when.expr} ({info.when.tz})"
    return f"every {info.when.interval_ms / 1000:g} s"


def _next_runs(info: ScheduleInfo, n: int) -> list[int]:
    """What ``ScheduleHandle.next_runs`` gives, from the listed record."""
    first = _ms(info.next_run)
    if info.state != "active" or first is None:
        return []
    plan = TimePlan(info.when, start_ms=_ms(info.start_at), end_ms=_ms(info.end_at),
                    jitter_ms=int(info.jitter * 1000))
    return [first, *islice(ticks_after(plan, first), n - 1)]


async def schedule_rows(client: Client) -> list[ScheduleRow]:
    infos = await client.schedules()
    last = [i.last_execution_id for i in infos if i.last_execution_id]
    rows = await client.backend.exec_fields(last, ["public_state"])
    states = {eid: state for eid, (state,) in zip(last, rows, strict=True)}
    return [ScheduleRow(
        info=i, when=_when(i),
        next_runs=[_fmt(t, i.when) for t in _next_runs(i, NEXT_RUNS)],
        last_run="-" if i.last_run is None else _fmt(_ms(i.last_run) or 0, i.when),
        # "" when the run's record is gone (retention trimmed it).
        last_state=states.get(i.last_execution_id, "")) for i in infos]


class Schedules:
    def __init__(self, client: Client, keys: Keys, renderer: Renderer) -> None:
        self.client = client
        self.keys = keys
        self.r = renderer

    async def page(self, request: Request) -> Response:
        return self.r.page(request, "schedules.html", rows=await schedule_rows(self.client))

    def _back(self, request: Request, level: str, message: str, to: str = "/schedules") -> Response:
        root = request.scope.get("root_path") or ""
        response = RedirectResponse(root + to, status_code=303)
        set_cookie(response, request, FLASH_COOKIE, self.keys.flash_cookie(level, message),
                   max_age=60)
        return response

    async def _checked(self, request: Request) -> Response | None:
        refused = await self.keys.check_post(request)
        return None if refused is None else PlainTextResponse(refused, status_code=403)

    async def pause(self, request: Request) -> Response:
        return await self._set_state(request, "pause")

    async def resume(self, request: Request) -> Response:
        return await self._set_state(request, "resume")

    async def _set_state(self, request: Request, action: str) -> Response:
        if (refused := await self._checked(request)) is not None:
            return refused
        sid = request.path_params["sid"]
        try:
            # An unknown id is refused (schedule_not_found) and nothing is written.
            handle = self.client.schedule_handle(sid)
            before = await (handle.pause() if action == "pause" else handle.resume())
        except FlowFabricError as exc:
            return self._back(request, "error", f"schedule {sid!r} not {action}d: {exc}")
        return self._back(request, "ok", f"schedule {sid!r} {action}d (was {before})")

    async def trigger(self, request: Request) -> Response:
        """Run it now; the answer opens the new run's page."""
        if (refused := await self._checked(request)) is not None:
            return refused
        sid = request.path_params["sid"]
        try:
            run = await self.client.schedule_handle(sid).trigger()
        except FlowFabricError as exc:
            return self._back(request, "error", f"schedule {sid!r} not triggered: {exc}")
        return self._back(request, "ok", f"schedule {sid!r} triggered: this run",
                          to=f"/executions/{path_part(run.id)}")
