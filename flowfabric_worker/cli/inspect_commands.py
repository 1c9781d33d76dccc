"""``inspect``: one execution or one flow, for people (default) or as JSON.

A stored failure reason is ``Type: message`` on its first line and a short
traceback after it (``worker/failures.describe``): people see the first line,
``--traceback`` adds the rest, ``--json`` keeps the whole text."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from flowfabric_worker.cli.common import server_settings
from flowfabric_worker.cli.display import local_time, progress, span, table, when
from flowfabric_worker.errors import FlowFabricError
from flowfabric_worker.settings import Settings

#: Outcomes whose stored reason explains them. A completed execution keeps
#: the failure reason of an earlier attempt (a replay does not clear it):
#: showing it would contradict the state.
_REASON_STATES = ("failed", "cancelled", "expired", "skipped")


def _is_flow_id(text: str) -> bool:
    from flowfabric_worker.protocol.ids import validate_uuid

    try:
        validate_uuid(text)
    except FlowFabricError:
        return False
    return True


def _client(settings: Settings) -> Any:
    from flowfabric_worker.client.client import Client

    return Client.connect(settings.url, mode=settings.mode, namespace=settings.namespace,
                          limits=settings.limits)


async def _awaited_signals(client: Any, eid: str, waitpoints: list[Any]) -> dict[str, list[str]]:
    """Per open waitpoint id, the signal names its condition still waits
    for (``*`` for a matcher that takes any name)."""
    from flowfabric_worker.protocol.ids import execution_tag
    from flowfabric_worker.protocol.keys import PartitionKeys

    keys = PartitionKeys(execution_tag(eid))
    hashes = await client.backend.hashes(
        [keys.waitpoint_condition(w.waitpoint_id) for w in waitpoints])
    out: dict[str, list[str]] = {}
    for w, cond in zip(waitpoints, hashes, strict=True):
        names = []
        for i in range(int(cond.get("total_matchers") or 0)):
            if cond.get(f"matcher:{i}:satisfied") != "1":
                names.append(cond.get(f"matcher:{i}:name") or "*")
        out[w.waitpoint_id] = names
    return out


async def _schedule_of(client: Any, eid: str) -> Any:
    """The schedule and tick that created ``eid`` (from its tags), or None."""
    from flowfabric_worker.protocol.keys import ExecKeys
    from flowfabric_worker.tasks.schedule_specs import SCHEDULE_TAG, TICK_TAG, ScheduleTick

    (raw,) = await client.backend.read_many(
        [["HMGET", ExecKeys(eid).tags, SCHEDULE_TAG, TICK_TAG]])
    sid, tick = (v.decode() if isinstance(v, bytes) else v for v in raw)
    return ScheduleTick.from_tags({SCHEDULE_TAG: sid or "", TICK_TAG: tick or ""})


async def _execution(settings: Settings, eid: str) -> dict[str, Any]:
    """The machine form (``--json``), plus private ``_`` keys for the text form."""
    async with _client(settings) as client:
        run = client.run(eid)
        core = await run.info()
        state = str(core.public_state)
        out: dict[str, Any] = {
            "id": run.id, "task": core.execution_kind, "lane": core.lane_id,
            "state": state, "attempts": core.total_attempt_count,
            "retries": core.retry_count, "replays": core.replay_count,
            "created_at": core.created_at, "started_at": core.started_at,
            "completed_at": core.completed_at,
        }
        if core.current_attempt_index is not None:
            att = await client.backend.get_attempt(run.id, core.current_attempt_index)
            if att is not None:
                out["attempt"] = {"index": att.attempt_index, "type": att.attempt_type,
                                  "state": att.attempt_state, "started_at": att.started_at,
                                  "ended_at": att.ended_at}
        if core.progress_pct or core.progress_message:
            out["progress"] = {"pct": core.progress_pct, "message": core.progress_message}
        if core.flow_id:
            out["flow"] = core.flow_id  # `inspect FLOW_ID` shows the flow
        tick = await _schedule_of(client, run.id)
        if tick is not None:  # started by a recurring schedule (`schedule ls`)
            out["schedule"] = {"id": tick.schedule_id, "tick": tick.tick.isoformat()}
        reason = core.failure_reason or core.cancellation_reason
        if state in _REASON_STATES and reason:
            out["reason"] = reason
            out["category"] = await run.failure_category(core)
        elif not core.is_terminal and core.failure_reason:
            out["last_failure"] = core.failure_reason  # an earlier attempt's, retry pending
        if state == "completed":
            data = await client.backend.get_result(run.id)
            out["result"] = json.loads(data) if data else None
        if not core.is_terminal and core.blocking_detail:
            # Why it waits: e.g. which flow-control key and limit (docs/flow-control.md).
            out["waiting"] = {"reason": str(core.blocking_reason),
                              "detail": core.blocking_detail}
        if not core.is_terminal:
            # Open waitpoints, tokens redacted to their kid.
            wps = await client.pending_waitpoints(run.id)
            out["waitpoints"] = [w.to_display() for w in wps]
            awaited = await _awaited_signals(client, run.id, wps)
            for shown in out["waitpoints"]:
                shown["awaiting"] = awaited.get(shown["waitpoint_id"], [])
            if state == "suspended":
                susp = await client.backend.get_suspension(run.id)
                if susp is not None and susp.is_open:
                    out["suspension"] = {"timeout_at": susp.timeout_at,
                                         "timeout_behavior": susp.timeout_behavior}
        return out


def _execution_text(doc: dict[str, Any], traceback: bool) -> str:
    lines = [f"execution {doc['id']}"]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<10} {value}")

    row("task", doc["task"])
    row("lane", doc["lane"])
    state = doc["state"]
    row("state", state + (f" ({doc['category']})" if doc.get("category") else ""))
    row("attempts", f"{doc['attempts']} (retries {doc['retries']}, replays {doc['replays']})")
    row("created", when(doc["created_at"]))
    if doc["started_at"]:
        row("started", when(doc["started_at"]))
    if doc["completed_at"]:
        row("finished", when(doc["completed_at"]))
    att = doc.get("attempt") or {}
    if att.get("started_at"):
        # The last attempt's run time: after retries or a replay, the span
        # from the first start would count the waits in between.
        which = f"attempt {att['index']} ({att['type']})"
        if att.get("ended_at"):
            row("duration", f"{span(att['ended_at'] - att['started_at'])}, {which}")
        elif state == "active":
            row("running", f"for {span(_now() - att['started_at'])}, {which}")
    if "waiting" in doc:
        row("waiting", f"{doc['waiting']['reason']}: {doc['waiting']['detail']}")
    if "progress" in doc:
        row("progress", progress(doc["progress"]["pct"], doc["progress"]["message"]))
    if doc.get("flow"):
        row("flow", doc["flow"])
    if doc.get("schedule"):
        row("schedule", f"{doc['schedule']['id']} (tick {doc['schedule']['tick']})")
    for key, label in (("reason", "reason"), ("last_failure", "last error")):
        if key in doc:
            first, _, rest = doc[key].partition("\n")
            row(label, first + ("" if traceback or not rest else "  (--traceback for more)"))
            if traceback and rest:
                lines.extend("    " + t for t in rest.splitlines())
    if "result" in doc:
        row("result", json.dumps(doc["result"]))
    susp = doc.get("suspension")
    if susp is not None:
        row("timeout", (when(susp["timeout_at"]) + f", then {susp['timeout_behavior']}")
            if susp["timeout_at"] else "none")
    for w in doc.get("waitpoints", []):
        names = ", ".join(w["awaiting"]) or "-"
        row("awaits", f"signal {names} on waitpoint {w['key'] or w['waitpoint_id']} "
                      f"({w['state']}, {w['signals']} received)")
    return "\n".join(lines)


def _now() -> int:
    from flowfabric_worker.cli.display import now_ms

    return now_ms()


async def _flow(settings: Settings, flow_id: str) -> dict[str, Any]:
    async with _client(settings) as client:
        doc: dict[str, Any] = await client.flow_handle(flow_id).describe()
        members = doc["members"]
        created = await client.backend.exec_fields([m["id"] for m in members], ["created_at"])
        for m, (at,) in zip(members, created, strict=True):
            m["created_at"] = int(at) if at else 0
        # Creation order. created_at has ms resolution and a flow's members
        # are often created within one ms: an upstream is always created
        # before its downstreams, so depth in the graph breaks those ties.
        depth = _depths([m["id"] for m in members], doc["edges"])
        members.sort(key=lambda m: (m["created_at"], depth[m["id"]], m["id"]))
        return doc


def _depths(eids: list[str], edges: list[dict[str, Any]]) -> dict[str, int]:
    """Longest path from a root to each member."""
    ups: dict[str, list[str]] = {e: [] for e in eids}
    for e in edges:
        if e["downstream"] in ups and e["upstream"] in ups:
            ups[e["downstream"]].append(e["upstream"])
    depth: dict[str, int] = {}

    def of(eid: str, seen: frozenset[str]) -> int:
        if eid not in depth:
            parents = [u for u in ups[eid] if u not in seen]  # a cycle never recurses
            depth[eid] = 1 + max((of(u, seen | {eid}) for u in parents), default=-1)
        return depth[eid]

    for eid in eids:
        of(eid, frozenset())
    return depth


def _tree(doc: dict[str, Any]) -> list[str]:
    """Members under their upstreams; a member with several upstreams is
    drawn in full under the first and as ``(see above)`` under the others."""
    order = [m["id"] for m in doc["members"]]
    label = {m["id"]: f"{m['name'] or m['task']} [{m['state']}]" for m in doc["members"]}
    children: dict[str, list[str]] = {e: [] for e in order}
    has_parent: set[str] = set()
    for e in doc["edges"]:
        if e["upstream"] in children and e["downstream"] in children:
            children[e["upstream"]].append(e["downstream"])
            has_parent.add(e["downstream"])
    rank = {e: i for i, e in enumerate(order)}
    lines: list[str] = []
    drawn: set[str] = set()

    def draw(eid: str, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        seen = eid in drawn
        lines.append(f"  {prefix}{branch}{label[eid]}" + (" (see above)" if seen else ""))
        if seen:
            return
        drawn.add(eid)
        kids = sorted(children[eid], key=rank.__getitem__)
        inner = prefix + ("" if top else ("   " if last else "│  "))
        for i, kid in enumerate(kids):
            draw(kid, inner, i == len(kids) - 1, False)

    for eid in order:
        if eid not in has_parent:
            draw(eid, "", True, True)
    return lines


def _flow_text(doc: dict[str, Any]) -> str:
    head = f"flow {doc['flow']} ({doc['kind'] or 'dag'}): {doc['state']}"
    if doc.get("cancel_reason"):
        head += f", cancelled: {doc['cancel_reason']}"
    out = [head, "", "members, in creation order:"]
    out.append("\n".join("  " + line for line in table(
        ["NAME", "TASK", "STATE", "CREATED", "ID"],
        [[m["name"] or "-", m["task"], m["state"], local_time(m["created_at"]), m["id"]]
         for m in doc["members"]]).splitlines()))
    if doc["members"]:
        out += ["", "tree:", *_tree(doc)]
    return "\n".join(out)


def inspect_command(args: argparse.Namespace) -> int:
    settings = server_settings(args)
    if _is_flow_id(args.id):
        doc = anyio.run(_flow, settings, args.id)
        text = _flow_text(doc) if not args.json else ""
    else:
        doc = anyio.run(_execution, settings, args.id)
        text = _execution_text(doc, args.traceback) if not args.json else ""
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0


def add_inspect_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print the machine form: JSON, times in epoch ms, whole failure text")
    p.add_argument("--traceback", action="store_true",
                   help="also print the stored traceback of a failure")
