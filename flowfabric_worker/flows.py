"""Static flows (DAGs) from the client: a typed builder, join policies and the
:class:`FlowHandle` of a submitted flow.

::

    flow = client.flow()
    a = flow.add(fetch, url)
    b = flow.add(parse, after=[a])
    c = flow.add(index, after=[a])
    d = flow.add(publish, after=[b, c], join=quorum(1))
    handle = await flow.submit()
    state = await handle.wait(timeout=60)      # completed | failed | cancelled
    print(await handle.run(d).result())

Every member is minted on the flow's partition (spec 04 §2.2). Each member is
created, added, given its join policy and gated on its upstream edges in one
``MULTI``/``EXEC``, so no worker can claim a downstream member before its
edges exist. Dependencies are resolved by the engine roles
(:mod:`flowfabric_worker.runtime.flows`), never by workers. See docs/flows.md.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio

from .budgets import Budget, Quota
from .errors import InvalidInput, ResultTimeout
from .protocol.budgets import AttachAdmission
from .protocol.flows import (
    AddExecutionToFlow,
    ApplyDependencyToChild,
    CancelFlow,
    CreateFlow,
    SetEdgeGroupPolicy,
    StageDependencyEdge,
)
from .protocol.function import FCall
from .protocol.ids import (
    ExecutionId,
    mint_execution_id,
    new_uuid,
    validate_uuid,
)
from .protocol.keys import DAG_COMPLETIONS, WAKE_CHANNEL, ExecKeys, FlowKeys
from .protocol.lifecycle import CreateExecution
from .protocol.partitions import flow_tag
from .runtime.flows.members import member_admission, member_create
from .task import TaskDefinition, task

if TYPE_CHECKING:
    from .client import Client, RunHandle

__all__ = [
    "CancelPolicy",
    "FlowBuilder",
    "FlowCancelResult",
    "FlowEdge",
    "FlowHandle",
    "FlowNode",
    "FlowState",
    "Join",
    "all_of",
    "any_of",
    "completions",
    "flow",
    "quorum",
]

R = TypeVar("R")
CancelPolicy = Literal["flow_only", "cancel_all", "cancel_pending"]
#: Flow states :meth:`FlowHandle.wait` returns on.
FLOW_DONE = frozenset({"completed", "failed", "cancelled"})
_TERMINAL = frozenset({"completed", "skipped", "failed", "cancelled", "expired"})
_SIBLING_REASONS = frozenset({"sibling_quorum_satisfied", "sibling_quorum_impossible"})
_POLL_FIRST, _POLL_CAP = 0.2, 2.0


#: Decorator of a task that spawns children (``ctx.child`` / ``ctx.submit`` /
#: ``ctx.gather``); the same options as :func:`~flowfabric_worker.task.task`.
#: Any task may spawn children; ``@flow`` says that this one is meant to.
flow = task


# ---------------------------------------------------------------- joins


@dataclass(frozen=True, slots=True)
class Join:
    """How a member's upstream edges combine (spec 04 §4.4). Build one with
    :func:`all_of`, :func:`any_of` or :func:`quorum`."""

    variant: Literal["all_of", "any_of", "quorum"] = "all_of"
    k: int = 0
    on_satisfied: Literal["", "cancel_remaining", "let_run"] = ""

    @property
    def needed(self) -> int:
        return {"all_of": 0, "any_of": 1}.get(self.variant, self.k)


def all_of() -> Join:
    """Run once every upstream succeeded; skipped as soon as one did not (default)."""
    return Join()


def any_of(*, cancel_remaining: bool = False) -> Join:
    """Run once one upstream succeeded; skipped when all of them failed.
    ``cancel_remaining`` cancels the upstreams still running once decided."""
    return Join("any_of", 0, "cancel_remaining" if cancel_remaining else "let_run")


def quorum(n: int, *, cancel_remaining: bool = False) -> Join:
    """Run once ``n`` upstreams succeeded; skipped once that became impossible."""
    if not isinstance(n, int) or n < 1:
        raise InvalidInput("quorum(n) needs n >= 1")
    return Join("quorum", n, "cancel_remaining" if cancel_remaining else "let_run")


# ---------------------------------------------------------------- builder


@dataclass(frozen=True, eq=False)
class FlowNode(Generic[R]):
    """A member of a flow being built; pass it in ``after=[...]`` of later
    members and to :meth:`FlowHandle.run` once submitted."""

    id: ExecutionId
    name: str
    task: TaskDefinition[Any, R] | None
    after: tuple[FlowNode[Any], ...]
    join: Join
    create: CreateExecution = field(repr=False)
    admission: AttachAdmission | None = field(default=None, repr=False)
    #: The upstream whose result is this member's argument (``input_from``).
    input_from: FlowNode[Any] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class FlowEdge:
    """One dependency edge as stored (``state`` from the child's dep record)."""

    edge_id: str
    upstream: ExecutionId
    downstream: ExecutionId
    state: str


class FlowBuilder:
    """Collects members and edges; :meth:`submit` writes them (one flow per builder).

    Members are added in dependency order: ``after`` only accepts nodes this
    builder already returned, which also rules out cycles.
    """

    def __init__(self, client: Client, *, flow_id: str | None = None, kind: str = "dag") -> None:
        self.client = client
        self.flow_id = validate_uuid(flow_id, "flow id") if flow_id else new_uuid()
        self.kind = kind
        self.tag = flow_tag(self.flow_id, client.backend.partitions)
        self.nodes: list[FlowNode[Any]] = []
        self._names: set[str] = set()
        self.submitted = False

    def add(
        self,
        task: TaskDefinition[Any, R] | str,
        *args: Any,
        after: Sequence[FlowNode[Any]] = (),
        join: Join | None = None,
        name: str | None = None,
        lane: str | None = None,
        priority: int | None = None,
        tags: Mapping[str, str] | None = None,
        budgets: Iterable[Budget | str] | None = None,
        quota: Quota | str | None = None,
        input_from: FlowNode[Any] | None = None,
        **kwargs: Any,
    ) -> FlowNode[R]:
        """Add one execution of ``task(*args, **kwargs)`` that runs after the
        ``after`` members, combined by ``join`` (default :func:`all_of`).
        ``budgets`` / ``quota`` replace the task's own (docs/budgets.md).

        ``input_from=node`` (one of ``after``): the member takes ``node``'s
        result as its one argument instead of ``args`` — the edge passes it
        along (spec 04 ``data_passing_ref``)::

            text = flow.add(fetch, url)
            words = flow.add(count_words, after=[text], input_from=text)
        """
        if self.submitted:
            raise InvalidInput("this flow was already submitted")
        if input_from is not None:
            self._check_input_from(task, input_from, after, args, kwargs)
        upstreams = tuple(after)
        seen: set[str] = set()
        for up in upstreams:
            if not any(up is n for n in self.nodes):
                raise InvalidInput(f"{up.name!r} is not a member added to this flow before")
            if up.id in seen:  # spec 04 §4.4: one edge per (upstream, downstream)
                raise InvalidInput(f"{up.name!r} is listed twice in after=")
            seen.add(up.id)
        join = join or all_of()
        if join.variant != "all_of" and not upstreams:
            raise InvalidInput(f"{join.variant} needs at least one member in after=")
        if join.variant == "quorum" and join.k > len(upstreams):
            raise InvalidInput(f"quorum({join.k}) can never be met by {len(upstreams)} upstreams")
        label = name or (task.name if isinstance(task, TaskDefinition) else task)
        if name is not None and name in self._names:
            raise InvalidInput(f"a member named {name!r} already exists")
        base, i = label, 2
        while label in self._names:
            label, i = f"{base}-{i}", i + 1
        self._names.add(label)
        eid = mint_execution_id(flow_id=self.flow_id, config=self.client.backend.partitions)
        create = member_create(eid, task, args, kwargs, namespace=self.client.namespace,
                               name=label, lane=lane, priority=priority, tags=tags,
                               input_from=input_from.id if input_from is not None else None)
        admission = member_admission(eid, task, budgets=budgets, quota=quota)
        node: FlowNode[R] = FlowNode(eid, label, task if isinstance(task, TaskDefinition)
                                     else None, upstreams, join, create, admission, input_from)
        self.nodes.append(node)
        return node

    @staticmethod
    def _check_input_from(task: TaskDefinition[Any, Any] | str, source: FlowNode[Any],
                          after: Sequence[FlowNode[Any]], args: tuple[Any, ...],
                          kwargs: Mapping[str, Any]) -> None:
        if not any(source is up for up in after):
            raise InvalidInput(f"input_from={source.name!r} must also be listed in after=")
        if args or kwargs:
            raise InvalidInput("a member with input_from takes no other arguments")
        if isinstance(task, TaskDefinition):
            try:
                task.bind_check(1)
            except TypeError as exc:
                raise InvalidInput(
                    f"task {task.name} cannot take {source.name!r}'s result as its one "
                    f"argument: {exc}") from exc

    async def submit(self) -> FlowHandle:
        """Write the flow; equivalent to ``await client.submit_flow(builder)``."""
        return await self.client.submit_flow(self)

    async def _write(self) -> FlowHandle:
        if self.submitted:
            raise InvalidInput("this flow was already submitted")
        if not self.nodes:
            raise InvalidInput("a flow needs at least one member")
        self.submitted = True
        backend = self.client.backend
        ns = self.client.namespace
        await backend.create_flow(CreateFlow(tag=self.tag, flow_id=self.flow_id,
                                             flow_kind=self.kind, namespace=ns))
        revision = 0
        for node in self.nodes:
            now = int(time.time() * 1000)
            calls: list[FCall[Any]] = [node.create]
            if node.admission is not None:
                calls.append(node.admission)  # before any worker can see it
            calls.append(AddExecutionToFlow(tag=self.tag, flow_id=self.flow_id, eid=node.id))
            revision += 1
            if node.after and node.join.variant != "all_of":
                calls.append(SetEdgeGroupPolicy(
                    tag=self.tag, flow_id=self.flow_id, downstream=node.id,
                    policy_variant=node.join.variant, on_satisfied=node.join.on_satisfied,
                    k=node.join.k, now_ms=now))
            edges = [(new_uuid(), up) for up in node.after]
            for edge_id, up in edges:
                calls.append(StageDependencyEdge(
                    tag=self.tag, flow_id=self.flow_id, edge_id=edge_id, upstream=up.id,
                    downstream=node.id, expected_graph_revision=revision, now_ms=now,
                    data_passing_ref=_passing(node, up)))
                revision += 1
            for edge_id, up in edges:
                calls.append(ApplyDependencyToChild(
                    eid=node.id, lane=node.create.lane_id, flow_id=self.flow_id,
                    edge_id=edge_id, upstream=up.id, graph_revision=revision, now_ms=now,
                    data_passing_ref=_passing(node, up)))
            # One transaction: the member is never claimable before its edges.
            for reply in await backend.call_atomic(calls):
                if isinstance(reply, Exception):
                    raise reply
        await backend.add_lanes(n.create.lane_id for n in self.nodes)
        for lane in sorted({n.create.lane_id for n in self.nodes if not n.after}):
            await backend.publish(WAKE_CHANNEL.format(lane=lane), "1")
        return FlowHandle(self.client, self.flow_id, list(self.nodes))


def _passing(node: FlowNode[Any], upstream: FlowNode[Any]) -> str:
    """The edge's ``data_passing_ref``: non-empty copies the upstream's result
    over the member's payload when the edge is satisfied (spec 04 §4.3)."""
    return "result" if node.input_from is upstream else ""


# ---------------------------------------------------------------- handle


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

    def __init__(self, client: Client, flow_id: str, nodes: Iterable[FlowNode[Any]] = ()) -> None:
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
        return {n.name: self.client.run(n.id, n.task) for n in self.nodes}

    def run(self, node: FlowNode[R]) -> RunHandle[R]:
        """The :class:`RunHandle` of one member (typed by its task)."""
        return self.client.run(node.id, node.task)

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
        from .runtime.flows.cancel import cancel_members

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


async def completions(client: Client, *, flow_id: str | None = None) -> AsyncIterator[Any]:
    """Subscribe to ``ff:dag:completions`` (spec 05 §8.3): yields a
    :class:`~flowfabric_worker.runtime.flows.completion.Completion` per
    terminal flow member, optionally only those of ``flow_id``. At most once:
    messages published while not subscribed (before, or while a lost
    connection is replaced) are not replayed."""
    from .runtime.flows.completion import parse_completion

    async for data in client.backend.messages(DAG_COMPLETIONS):
        done = parse_completion(data)
        if done is not None and (flow_id is None or done.flow_id == flow_id):
            yield done
