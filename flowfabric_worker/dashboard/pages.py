"""The pages (GET): overview, executions, one execution, one flow, budgets;
and the snapshot readers their live streams share with them."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from flowfabric_worker.client.client import Client
from flowfabric_worker.client.execution_detail import read_execution_detail
from flowfabric_worker.client.listing import STATES, list_executions
from flowfabric_worker.client.overview import (
    lane_counts,
    read_budget_rows,
    read_quota_rows,
    read_throughput,
    read_workers,
)
from flowfabric_worker.client.replay import REPLAYABLE
from flowfabric_worker.dashboard import dag
from flowfabric_worker.dashboard.render import Renderer, now_ms, path_part
from flowfabric_worker.dashboard.streams import execution_events, snapshots, sse
from flowfabric_worker.errors import FlowFabricError

__all__ = ["Pages"]

PAGE_SIZE = 50
#: Pages reachable by "next": list_executions reads the newest N, so a page
#: costs its number; past this, filter instead.
MAX_PAGE = 40


async def overview_data(client: Client) -> dict[str, Any]:
    """Everything the overview shows, JSON-ready (the page and its stream)."""
    now = now_ms()
    throughput = await read_throughput(client.backend, now)
    return {
        "lanes": [{"lane": r.lane, **r.counts} for r in await lane_counts(client.backend)],
        "throughput": {"completed": throughput.completed, "failed": throughput.failed,
                       "failure_rate": round(throughput.failure_rate * 100, 1),
                       "capped": throughput.capped},
        "workers": [{"instance_id": w.instance_id, "worker_id": w.worker_id,
                     "lanes": ", ".join(w.lanes), "in_flight": w.in_flight,
                     "heartbeat_age_s": max(0, round((now - w.last_heartbeat_ms) / 1000))}
                    for w in await read_workers(client.backend, client.namespace)],
    }


async def flow_data(client: Client, flow_id: str) -> dict[str, Any]:
    doc = await client.flow_handle(flow_id).describe()
    created = await client.backend.exec_fields([m["id"] for m in doc["members"]],
                                               ["created_at"])
    for m, (at,) in zip(doc["members"], created, strict=True):
        m["created_at"] = int(at) if at else 0
    doc["members"].sort(key=lambda m: (m["created_at"], m["id"]))
    return doc


class Pages:
    def __init__(self, client: Client, renderer: Renderer) -> None:
        self.client = client
        self.r = renderer

    def _error(self, request: Request, exc: FlowFabricError, status: int = 404) -> Response:
        return self.r.page(request, "error.html", status=status, message=str(exc))

    async def overview(self, request: Request) -> Response:
        return self.r.page(request, "overview.html", data=await overview_data(self.client))

    async def overview_events(self, request: Request) -> Response:
        return sse(snapshots(request, lambda: overview_data(self.client)))

    async def executions(self, request: Request) -> Response:
        q = request.query_params
        lane, state = q.get("lane") or None, q.get("state") or None
        task, flow = q.get("task") or None, q.get("flow") or None
        try:
            page = min(max(int(q.get("page") or 1), 1), MAX_PAGE)
        except ValueError:
            page = 1
        try:
            rows = await list_executions(self.client.backend, lanes=[lane] if lane else (),
                                         state=state, task=task, flow_id=flow,
                                         limit=page * PAGE_SIZE + 1)
        except FlowFabricError as exc:
            return self._error(request, exc, 400)
        shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        lanes = [r.lane for r in await lane_counts(self.client.backend)]
        return self.r.page(
            request, "executions.html", rows=shown, page=page,
            more=len(rows) > page * PAGE_SIZE and page < MAX_PAGE, states=STATES, lanes=lanes,
            filters={"lane": lane or "", "state": state or "", "task": task or "",
                     "flow": flow or ""})

    async def execution(self, request: Request) -> Response:
        eid = request.path_params["eid"]
        try:
            detail = await read_execution_detail(self.client.backend, eid)
        except FlowFabricError as exc:
            return self._error(request, exc)
        open_wps = [w for w in detail.waitpoints if w.state in ("pending", "active")]
        return self.r.page(
            request, "execution.html", d=detail, core=detail.core, eid=eid,
            eid_part=path_part(eid), open_waitpoints=open_wps,
            awaited=sorted({n for w in open_wps for n in w.awaiting if n != "*"}),
            can_cancel=not detail.core.is_terminal,
            can_replay=detail.state in REPLAYABLE,
            summary=None if detail.summary is None else _pretty(detail.summary))

    async def execution_events(self, request: Request) -> Response:
        eid = request.path_params["eid"]
        try:
            self.client.run(eid)  # validates the id before the stream starts
        except FlowFabricError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return sse(execution_events(self.client, eid, request.headers.get("last-event-id")))

    async def flow(self, request: Request) -> Response:
        flow_id = request.path_params["flow_id"]
        try:
            doc = await flow_data(self.client, flow_id)
        except FlowFabricError as exc:
            return self._error(request, exc)
        root = request.scope.get("root_path") or ""
        return self.r.page(request, "flow.html", flow=doc, counts=_counts(doc),
                           graph=dag.svg(doc["members"], doc["edges"], f"{root}/executions/"))

    async def flow_graph(self, request: Request) -> Response:
        """The SVG alone: the page swaps it in when members were added."""
        try:
            doc = await flow_data(self.client, request.path_params["flow_id"])
        except FlowFabricError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        root = request.scope.get("root_path") or ""
        return Response(dag.svg(doc["members"], doc["edges"], f"{root}/executions/"),
                        media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    async def flow_events(self, request: Request) -> Response:
        flow_id = request.path_params["flow_id"]

        async def read() -> dict[str, Any]:
            st = await self.client.flow_handle(flow_id).state()
            return {"state": st.state, "members": dict(st.members), "counts": st.counts}

        return sse(snapshots(request, read, every=1.0))

    async def budgets(self, request: Request) -> Response:
        budgets = await read_budget_rows(self.client.backend)
        quotas = await read_quota_rows(self.client.backend, now_ms())
        return self.r.page(request, "budgets.html", budgets=budgets,
                           quotas=[dataclasses.asdict(q) for q in quotas])


def _counts(doc: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in doc["members"]:
        out[m["state"]] = out.get(m["state"], 0) + 1
    return out


def _pretty(doc: Any) -> str:
    import json

    return json.dumps(doc, indent=2, sort_keys=True, default=str)
