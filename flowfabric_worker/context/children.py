"""Child executions spawned from inside a running task (``ctx.child``,
``ctx.submit``, ``ctx.gather``; docs/flows.md "Flows from code").

The parent becomes a member of a flow on its own partition (its existing
flow, or one whose id is derived from the parent's id) and every child is
minted on that partition with an id derived from the parent's id and the
journal position of its spawn. Spawns are journaled, so a parent that runs
again (after waiting, a retry or a lost worker) gets the same children back
and never creates one twice: a lost journal write only leads to an
idempotent re-create of the same id.

Waiting for children does not hold a worker slot: the parent gates itself on
each unfinished child with an ``ffw_completion`` edge (satisfied by any
terminal outcome), parks with ``ff_move_to_waiting_children`` and is released
by the engine roles once the last edge resolves; it then runs again from the
top and finds its children finished.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import msgspec

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.attempt import Claimed, is_lease_lost
from flowfabric_worker.context.step_journal import StepJournal
from flowfabric_worker.context.waits import TaskSuspended
from flowfabric_worker.engine.flows.reconciler import reconcile_children
from flowfabric_worker.errors import ChildFailed, ContractError, InvalidInput, LeaseLost
from flowfabric_worker.protocol.budgets import AttachAdmission
from flowfabric_worker.protocol.dependencies import ApplyDependencyToChild
from flowfabric_worker.protocol.flows import (
    COMPLETION_KIND,
    AddExecutionToFlow,
    CreateFlow,
    SetEdgeGroupPolicy,
    StageDependencyEdge,
)
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId, execution_tag, partition_of
from flowfabric_worker.protocol.keys import WAKE_CHANNEL, FlowKeys
from flowfabric_worker.protocol.lifecycle import MoveToWaitingChildren
from flowfabric_worker.protocol.partitions import flow_partition
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.creation import PARENT_TAG, member_admission, member_create
from flowfabric_worker.tasks.spec import TaskSpec

__all__ = ["ChildHandle", "Children"]

R = TypeVar("R")
_NS = uuid.UUID("5b0f3b8e-6f0e-4d2c-9a51-3c1f0e7d9a10")
_TERMINAL = frozenset({"completed", "skipped", "failed", "cancelled", "expired"})


def _derived(*parts: str) -> str:
    return str(uuid.uuid5(_NS, ":".join(parts)))


@dataclass(eq=False)
class ChildHandle(Generic[R]):
    """A child execution of the running task. ``await handle`` waits for its
    result (raising :class:`~flowfabric_worker.errors.ChildFailed` when it did
    not complete); ``handle.id`` is known once it was spawned."""

    owner: Children
    task: TaskSpec[Any, R] | str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    after: tuple[ChildHandle[Any], ...] = ()
    join: Any = None
    id: ExecutionId | None = None
    lane: str = ""
    _spawned: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return self.task.name if isinstance(self.task, TaskSpec) else self.task

    def __await__(self) -> Generator[Any, None, R]:
        return self._result().__await__()

    async def _result(self) -> R:
        (value,) = await self.owner.gather([self])
        return value  # type: ignore[no-any-return]


class Children:
    """Spawns and awaits the children of one run of a task (``ctx`` delegates)."""

    def __init__(self, backend: Backend, lease: Claimed, journal: StepJournal, ctx: Any,
                 flush: Callable[[], Awaitable[None]]) -> None:
        self.backend = backend
        self._flush_frames = flush
        self.lease = lease
        self.journal = journal
        self.ctx = ctx
        self.pending: list[ChildHandle[Any]] = []
        self._flow: tuple[str, str] | None = None  # (flow_id, namespace)
        self._lanes_registered: set[str] = set()

    @property
    def parent(self) -> ExecutionId:
        return self.lease.execution_id

    @property
    def tag(self) -> str:
        return execution_tag(self.parent)

    def submit(self, task: TaskSpec[Any, R] | str, args: tuple[Any, ...],
               kwargs: dict[str, Any], after: Sequence[ChildHandle[Any]] = (),
               join: Any = None) -> ChildHandle[R]:
        for up in after:
            if not isinstance(up, ChildHandle) or up.owner is not self:
                raise InvalidInput("after= takes handles returned by this task's ctx.submit")
        if join is not None and not after:
            raise InvalidInput("join= needs after=")
        handle: ChildHandle[R] = ChildHandle(self, task, args, dict(kwargs), tuple(after), join)
        self.pending.append(handle)
        return handle

    # -- spawning --------------------------------------------------------------
    async def _ensure_flow(self) -> tuple[str, str]:
        if self._flow is not None:
            return self._flow
        (flow_id, namespace), = await self.backend.exec_fields([self.parent],
                                                               ["flow_id", "namespace"])
        if not flow_id:
            # A flow on the parent's own partition (co-location), id derived
            # from the parent so every run finds the same one.
            want = partition_of(self.parent)
            i = 0
            while True:
                flow_id = _derived(self.parent, "flow", str(i))
                if flow_partition(flow_id, self.backend.partitions) == want:
                    break
                i += 1
            await self.backend.create_flow(CreateFlow(
                tag=self.tag, flow_id=flow_id, flow_kind="children", namespace=namespace))
            await self.backend.add_execution_to_flow(
                AddExecutionToFlow(tag=self.tag, flow_id=flow_id, eid=self.parent))
        self._flow = (flow_id, namespace)
        return self._flow

    async def flush(self) -> None:
        """Spawn the submitted children not spawned yet, in submission order."""
        while self.pending:
            handle = self.pending.pop(0)
            await self._spawn(handle)

    async def _spawn(self, handle: ChildHandle[Any]) -> None:
        self.ctx.ensure_lease()
        label = f"child:{handle.name}"
        self.journal.claim()
        try:
            entry = await self.journal.replay(label, "step")
            if entry is not None:
                handle.id, handle.lane = codec.loads(entry.result)
                handle._spawned = True
                return
            pos = self.journal.cursor
            eid = f"{self.tag}:{_derived(self.parent, 'child', str(pos))}"
            # Built before _ensure_flow, the spawn's first write: arguments
            # and tags over the limits raise here with nothing written. The
            # namespace is the parent's, known once the flow is looked up.
            create = member_create(eid, handle.task, handle.args, handle.kwargs,
                                   namespace="", name=f"{handle.name}#{pos}",
                                   tags={PARENT_TAG: self.parent}, limits=self.ctx.limits)
            flow_id, namespace = await self._ensure_flow()
            create = msgspec.structs.replace(create, namespace=namespace)
            admission = member_admission(eid, handle.task,
                                         inherited_budget_ids=self.lease.budget_ids)
            await self._create(flow_id, eid, create.lane_id, create, admission, handle)
            if create.lane_id not in self._lanes_registered:
                await self.backend.add_lanes([create.lane_id])
                self._lanes_registered.add(create.lane_id)
            recorded = await self.journal.record(label, "step",
                                                 codec.dumps([eid, create.lane_id]))
            handle.id, handle.lane = codec.loads(recorded)
            handle._spawned = True
        except ContractError as exc:
            if is_lease_lost(exc):
                raise LeaseLost(self.parent, exc.code) from exc
            raise
        finally:
            self.journal.release()
        if not handle.after:
            await self.backend.publish(WAKE_CHANNEL.format(lane=handle.lane), "1")

    async def _create(self, flow_id: str, eid: ExecutionId, lane: str, create: Any,
                      admission: AttachAdmission | None, handle: ChildHandle[Any]) -> None:
        now = await self.backend.server_time_ms()
        calls: list[FCall[Any]] = [create]
        if admission is not None:  # the parent's budgets and the child task's own
            calls.append(admission)
        calls.append(AddExecutionToFlow(tag=self.tag, flow_id=flow_id, eid=eid))
        join = handle.join
        if handle.after and join is not None and join.variant != "all_of":
            calls.append(SetEdgeGroupPolicy(
                tag=self.tag, flow_id=flow_id, downstream=eid, policy_variant=join.variant,
                on_satisfied=join.on_satisfied, k=join.k, now_ms=now))
        if not handle.after:
            for reply in await self.backend.call_many(calls):
                if isinstance(reply, Exception):
                    raise reply
            return
        # Gated members: create, add, policy and edges in one transaction
        # (never claimable before their edges); the revision is ours to
        # predict unless an earlier run got half-way, then repair one by one.
        raw = await self.backend.flow_core(FlowKeys(self.tag, flow_id)) or {}
        revision = int(raw.get("graph_revision") or 0) + 1
        edges = [(_derived(up.id or "", eid, "edge"), up) for up in handle.after]
        staged: list[FCall[Any]] = []
        for edge_id, up in edges:
            staged.append(StageDependencyEdge(
                tag=self.tag, flow_id=flow_id, edge_id=edge_id, upstream=up.id or "",
                downstream=eid, expected_graph_revision=revision, now_ms=now))
            revision += 1
        applied = [ApplyDependencyToChild(
            eid=eid, lane=lane, flow_id=flow_id, edge_id=edge_id, upstream=up.id or "",
            graph_revision=revision, now_ms=now) for edge_id, up in edges]
        replies = await self.backend.call_atomic([*calls, *staged, *applied])
        if not any(isinstance(r, Exception) for r in replies):
            return
        for call in staged:
            assert isinstance(call, StageDependencyEdge)
            await self.backend.stage_edge_with_retry(call)
        for a in applied:
            await self.backend.apply_dependency_to_child(a)

    # -- waiting ---------------------------------------------------------------
    async def gather(self, handles: Sequence[ChildHandle[Any]], *,
                     return_exceptions: bool = False) -> list[Any]:
        """Spawn what is pending, then wait for every handle; results in order."""
        for h in handles:
            if not isinstance(h, ChildHandle) or h.owner is not self:
                raise InvalidInput("ctx.gather takes handles from ctx.child / ctx.submit")
        await self.flush()
        ids = [h.id or "" for h in handles]
        rows = await self.backend.exec_fields(ids, ["public_state", "failure_reason",
                                                    "cancellation_reason"])
        open_ = [h for h, (state, _, _) in zip(handles, rows, strict=True)
                 if state not in _TERMINAL]
        if open_:
            await self._park(open_)
        out: list[Any] = []
        for h, (state, failure, cancel) in zip(handles, rows, strict=True):
            if state == "completed":
                data = await self.backend.get_result(h.id or "")
                if isinstance(h.task, TaskSpec):
                    out.append(h.task.decode_result(data or b""))
                else:
                    out.append(codec.loads(data) if data else None)
                continue
            err = ChildFailed(f"child {h.id} ({h.name}) ended {state}"
                              + (f": {failure or cancel}" if failure or cancel else ""),
                              execution_id=h.id or "", state=state, reason=failure or cancel)
            if not return_exceptions:
                raise err
            out.append(err)
        return out

    async def _park(self, waiting: Sequence[ChildHandle[Any]]) -> None:
        """Gate the parent on each unfinished child, release the lease and the
        slot (``ff_move_to_waiting_children``) and unwind the task body."""
        flow_id, _ = await self._ensure_flow()
        lease = self.lease
        now = await self.backend.server_time_ms()
        for h in waiting:
            edge_id = _derived(h.id or "", self.parent, "wait")
            await self.backend.stage_edge_with_retry(StageDependencyEdge(
                tag=self.tag, flow_id=flow_id, edge_id=edge_id, upstream=h.id or "",
                downstream=self.parent, dependency_kind=COMPLETION_KIND,
                expected_graph_revision=int((await self.backend.flow_core(
                    FlowKeys(self.tag, flow_id)) or {}).get("graph_revision") or 0),
                now_ms=now))
            await self.backend.apply_dependency_to_child(ApplyDependencyToChild(
                eid=self.parent, lane=lease.lane, flow_id=flow_id, edge_id=edge_id,
                upstream=h.id or "", graph_revision=0, dependency_kind=COMPLETION_KIND,
                now_ms=now))
        await self._flush_frames()  # appends are refused once the lease is released
        async with self.ctx.lease_guard:
            with anyio.CancelScope(shield=True):
                try:
                    await self.backend.call(MoveToWaitingChildren(
                        eid=self.parent, lane_id=lease.lane, attempt_index=lease.attempt_index,
                        worker_instance_id=lease.worker_instance_id, lease_id=lease.lease_id,
                        lease_epoch=lease.lease_epoch, attempt_id=lease.attempt_id))
                except ContractError as exc:
                    if is_lease_lost(exc):
                        raise LeaseLost(self.parent, exc.code) from exc
                    raise
                self.ctx.lease_released = True
                # Children that ended while the edges were being applied have
                # published already: settle their edges now (or release the
                # parent if nothing is left open) instead of a reconciler tick.
                try:
                    await reconcile_children(
                        self.backend, [(self.parent, lease.lane)],
                        await self.backend.server_time_ms())
                except Exception:
                    pass  # the dependency reconciler does the same later
        raise TaskSuspended(self.parent, "waiting_children")
