"""The :class:`FlowHandle` of a submitted flow: state, members, waiting,
cancellation and live completions."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from flowfabric_worker.client.flow_graph import FlowEdge, FlowNode, R
from flowfabric_worker.client.run_handle import HandleOwner, RunHandle
from flowfabric_worker.engine.flows.cancel import cancel_members
from flowfabric_worker.errors import InvalidInput, ResultTimeout
from flowfabric_worker.protocol.completions import parse_completion
from flowfabric_worker.protocol.flows import CancelFlow
from flowfabric_worker.protocol.ids import ExecutionId, parse_execution_id, validate_uuid
from flowfabric_worker.protocol.keys import DAG_COMPLETIONS, ExecKeys, FlowKeys
from flowfabric_worker.protocol.partitions import flow_tag

__all__ = [
    "FLOW_DONE",
    "CancelPolicy",
    "FlowCancelResult",
    "FlowHandle",
    "FlowState",
    "completions",
]


CancelPolicy = Literal["flow_only", "cancel_all", "cancel_pending"]


#: Flow states :meth:`FlowHandle.wait` returns on.
FLOW_DONE = frozenset({"completed", "failed", "cancelled"})


_TERMINAL = frozenset({"completed", "skipped", "failed", "cancelled", "expired"})


_SIBLING_REASONS = frozenset({"sibling_quorum_satisfied", "sibling_quorum_impossible"})


_POLL_FIRST, _POLL_CAP = 0.2, 2.0




@dataclass(frozen=True)
class FlowState:
    """A flow's state as users see it.

    ``state``: ``cancelled`` (the flow record was cancelled), ``open`` (no
    members), ``running`` (some member not terminal), ``failed`` (all terminal
    and one failed, expired, or was cancelled other than as a losing
    ``cancel_remaining`` sibling) or ``completed``. ``members`` maps each
    member to its public state.
    """

    flow_id: str
    state: str
    members: dict[ExecutionId, str]
    cancel_reason: str = ""

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(self.members.values()))

    @property
    def settled(self) -> bool:
        """Every member reached a terminal state."""
        return all(s in _TERMINAL for s in self.members.values())


@dataclass(frozen=True)
class FlowCancelResult:
    """``cancelled``: members cancelled (or already done) now; ``pending``:
    members whose cancel failed transiently — the cancel reconciler retries
    them once the grace window has passed."""

    policy: str
    cancelled: list[ExecutionId]
    pending: list[ExecutionId]


class FlowHandle:
    """A submitted flow: its members, state, completion and cancellation."""

    def __init__(self, client: HandleOwner, flow_id: str,
                 nodes: Iterable[FlowNode[Any]] = ()) -> None:
        self.client = client
        self.id = validate_uuid(flow_id, "flow id")
        self.tag = flow_tag(self.id, client.backend.partitions)
        self.keys = FlowKeys(self.tag, self.id)
        self.nodes = list(nodes)

    def __repr__(self) -> str:
        return f"<FlowHandle {self.id}>"

    @property
    def members(self) -> dict[str, RunHandle[Any]]:
        """The members this handle was built with, by node name."""
        return {n.name: self.run(n) for n in self.nodes}

    def run(self, node: FlowNode[R]) -> RunHandle[R]:
        """The :class:`RunHandle` of one member (typed by its task)."""
        return RunHandle(self.client, parse_execution_id(node.id), node.task)

    async def member_ids(self) -> list[ExecutionId]:
        """Every member as stored (also for a handle opened by id)."""
        return await self.client.backend.flow_members(self.keys)

    async def state(self) -> FlowState:
        """Read the flow record and every member's state (exact, not sampled)."""
        backend = self.client.backend
        core = await backend.flow_core(self.keys)
        if core is None:
            raise InvalidInput(f"flow {self.id} does not exist")
        eids = await backend.flow_members(self.keys)
        rows = await backend.exec_fields(eids, ["public_state", "cancellation_reason"])
        members = {e: (s or "unknown") for e, (s, _) in zip(eids, rows, strict=True)}
        if core.get("public_flow_state") == "cancelled":
            state = "cancelled"
        elif not members:
            state = "open"
        elif any(s not in _TERMINAL for s in members.values()):
            state = "running"
        elif any(s in ("failed", "expired") or (s == "cancelled" and r not in _SIBLING_REASONS)
                 for s, r in rows):
            state = "failed"
        else:
            state = "completed"
        return FlowState(self.id, state, members, core.get("cancel_reason", ""))

    async def wait(self, timeout: float | None = None) -> FlowState:  # noqa: ASYNC109
        """Wait until the flow is ``completed``, ``failed`` or ``cancelled``.

        Woken by the members' completion messages; a poll (0.2 s doubling to
        2 s) covers lost ones. Raises :class:`ResultTimeout` after ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        news = anyio.Event()

        async def listen() -> None:
            async for data in self.client.backend.messages(DAG_COMPLETIONS):
                text = data.decode() if isinstance(data, bytes) else str(data)
                if self.id in text:
                    news.set()

        finished: FlowState | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            poll = _POLL_FIRST
            while finished is None:
                news = anyio.Event()  # set from here on means: look again
                st = await self.state()
                if st.state in FLOW_DONE:
                    finished = st
                    break
                wait = poll
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    wait = min(wait, left)
                with anyio.move_on_after(wait):
                    await news.wait()
                poll = min(poll * 2, _POLL_CAP)
            tg.cancel_scope.cancel()
        if finished is None:  # raised here, not in the task group (no exception group)
            raise ResultTimeout(self._timeout_message(st, timeout))
        return finished

    def _timeout_message(self, st: FlowState, timeout: float | None) -> str:
        counts: dict[str, int] = {}
        for member_state in st.members.values():
            counts[member_state] = counts.get(member_state, 0) + 1
        seen = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return (f"flow {self.id} not finished after {timeout}s "
                f"(state {st.state}; members: {seen})")

    async def cancel(self, policy: CancelPolicy = "cancel_all", reason: str = "",
                     grace: float | None = None) -> FlowCancelResult:
        """Cancel the flow (spec 04 §4.8) and dispatch its member cancels now.

        ``cancel_all`` cancels every member, running and waiting;
        ``cancel_pending`` the members that have not started (running ones
        finish); ``flow_only`` only flips the flow. Cancelling twice answers
        from the stored record. ``grace`` (s, default 30) is how long the
        cancel reconciler stays away from this dispatch.
        """
        backend = self.client.backend
        reply = await backend.cancel_flow_idempotent(CancelFlow(
            tag=self.tag, flow_id=self.id, reason=reason, policy=policy,
            grace_ms=None if grace is None else int(grace * 1000)))
        effective = reply.policy
        targets: list[ExecutionId] = []
        if effective == "cancel_all":
            targets = list(reply.members)
        elif effective == "cancel_pending":
            rows = await backend.exec_fields(list(reply.members), ["public_state"])
            targets = [e for e, (s,) in zip(reply.members, rows, strict=True)
                       if s not in _TERMINAL and s != "active"]
        core = await backend.flow_core(self.keys) or {}
        why = core.get("cancel_reason") or reason or "flow_cancelled"
        pending = await cancel_members(backend, self.tag, self.id, targets, why,
                                       spare_active=effective == "cancel_pending")
        return FlowCancelResult(effective, sorted(set(targets) - set(pending)), pending)

    async def edges(self) -> list[FlowEdge]:
        """Every edge of the flow with its resolution state."""
        backend = self.client.backend
        eids = await backend.flow_members(self.keys)
        ins = await backend.sets([self.keys.incoming(e) for e in eids])
        pairs = [(e, edge) for e, edge_ids in zip(eids, ins, strict=True) for edge in edge_ids]
        deps = await backend.hashes([ExecKeys(e).dep(edge) for e, edge in pairs])
        return [FlowEdge(edge, d.get("upstream_execution_id", ""), e, d.get("state", "staged"))
                for (e, edge), d in zip(pairs, deps, strict=True)]

    async def describe(self) -> dict[str, Any]:
        """A JSON-ready picture of the flow: record, derived state, members
        (name, task, state, join) and edges — what ``flowfabric-worker inspect
        FLOW_ID`` prints."""
        backend = self.client.backend
        st = await self.state()
        core = await backend.flow_core(self.keys) or {}
        eids = sorted(st.members)
        kinds = await backend.exec_fields(eids, ["execution_kind", "lane_id"])
        tags = await backend.hashes([ExecKeys(e).tags for e in eids])
        groups = await backend.hashes([self.keys.edge_group(e) for e in eids])
        summary = (await backend.hashes([self.keys.summary]))[0]
        members = []
        for eid, (kind, lane), tag_map, group in zip(eids, kinds, tags, groups, strict=True):
            entry: dict[str, Any] = {"id": eid, "name": tag_map.get("ffw.flow_node", ""),
                                     "task": kind, "lane": lane, "state": st.members[eid]}
            if group:
                entry["join"] = {k: group[k] for k in ("policy_variant", "k", "on_satisfied",
                                                      "group_state") if group.get(k)}
            members.append(entry)
        return {
            "flow": self.id, "kind": core.get("flow_kind", ""), "state": st.state,
            "record_state": core.get("public_flow_state", ""),
            "cancel_reason": core.get("cancel_reason", ""),
            "cancellation_policy": core.get("cancellation_policy", ""),
            "graph_revision": int(core.get("graph_revision") or 0),
            "members": members,
            "edges": [{"id": e.edge_id, "upstream": e.upstream, "downstream": e.downstream,
                       "state": e.state} for e in await self.edges()],
            "summary": summary,
        }

    def completions(self) -> AsyncIterator[Any]:
        """Live completion messages of this flow's members (see :func:`completions`)."""
        return completions(self.client, flow_id=self.id)


async def completions(client: HandleOwner, *, flow_id: str | None = None) -> AsyncIterator[Any]:
    """Subscribe to ``ff:dag:completions`` (spec 05 §8.3): yields a
    :class:`~flowfabric_worker.protocol.completions.Completion` per
    terminal flow member, optionally only those of ``flow_id``. At most once:
    messages published while not subscribed (before, or while a lost
    connection is replaced) are not replayed."""
    async for data in client.backend.messages(DAG_COMPLETIONS):
        done = parse_completion(data)
        if done is not None and (flow_id is None or done.flow_id == flow_id):
            yield done
