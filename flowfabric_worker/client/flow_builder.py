"""Static flows (DAGs) from the client: the typed builder that writes one."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flowfabric_worker.client.flow_graph import FlowNode, Join, R, all_of
from flowfabric_worker.client.flow_handle import FlowHandle
from flowfabric_worker.client.run_handle import HandleOwner
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.dependencies import ApplyDependencyToChild
from flowfabric_worker.protocol.flows import (
    AddExecutionToFlow,
    CreateFlow,
    SetEdgeGroupPolicy,
    StageDependencyEdge,
)
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid, validate_uuid
from flowfabric_worker.protocol.keys import WAKE_CHANNEL
from flowfabric_worker.protocol.partitions import flow_tag
from flowfabric_worker.tasks.budgets import Budget, Quota
from flowfabric_worker.tasks.creation import member_admission, member_create
from flowfabric_worker.tasks.spec import TaskSpec

__all__ = [
    "FlowBuilder",
]


class FlowBuilder:
    """Collects members and edges; :meth:`submit` writes them (one flow per builder).

    Members are added in dependency order: ``after`` only accepts nodes this
    builder already returned, which also rules out cycles.
    """

    def __init__(self, client: HandleOwner, *, flow_id: str | None = None,
                 kind: str = "dag") -> None:
        self.client = client
        self.flow_id = validate_uuid(flow_id, "flow id") if flow_id else new_uuid()
        self.kind = kind
        self.tag = flow_tag(self.flow_id, client.backend.partitions)
        self.nodes: list[FlowNode[Any]] = []
        self._names: set[str] = set()
        self.submitted = False

    def add(
        self,
        task: TaskSpec[Any, R] | str,
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
        label = name or (task.name if isinstance(task, TaskSpec) else task)
        if name is not None and name in self._names:
            raise InvalidInput(f"a member named {name!r} already exists")
        base, i = label, 2
        while label in self._names:
            label, i = f"{base}-{i}", i + 1
        self._names.add(label)
        eid = mint_execution_id(flow_id=self.flow_id, config=self.client.backend.partitions)
        create = member_create(eid, task, args, kwargs, namespace=self.client.namespace,
                               name=label, lane=lane, priority=priority, tags=tags,
                               input_from=input_from.id if input_from is not None else None,
                               limits=self.client.limits)
        admission = member_admission(eid, task, budgets=budgets, quota=quota)
        node: FlowNode[R] = FlowNode(eid, label, task if isinstance(task, TaskSpec)
                                     else None, upstreams, join, create, admission, input_from)
        self.nodes.append(node)
        return node

    @staticmethod
    def _check_input_from(task: TaskSpec[Any, Any] | str, source: FlowNode[Any],
                          after: Sequence[FlowNode[Any]], args: tuple[Any, ...],
                          kwargs: Mapping[str, Any]) -> None:
        if not any(source is up for up in after):
            raise InvalidInput(f"input_from={source.name!r} must also be listed in after=")
        if args or kwargs:
            raise InvalidInput("a member with input_from takes no other arguments")
        if isinstance(task, TaskSpec):
            try:
                task.bind_check(1)
            except TypeError as exc:
                raise InvalidInput(
                    f"task {task.name} cannot take {source.name!r}'s result as its one "
                    f"argument: {exc}") from exc

    async def submit(self) -> FlowHandle:
        """Write the flow; equivalent to ``await client.submit_flow(builder)``."""
        return await self._write()

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
