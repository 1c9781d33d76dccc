"""The submitting side: :class:`Client`.

Its signal methods are in ``client/client_signals.py`` and its budget and
quota methods in ``client/client_budgets.py``, both inherited.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast, overload

import msgspec

from flowfabric_worker.backend.backend import Backend, Mode
from flowfabric_worker.client.batch import prepare, submit_batch
from flowfabric_worker.client.client_budgets import BudgetMethods
from flowfabric_worker.client.client_signals import SignalMethods
from flowfabric_worker.client.flow_builder import FlowBuilder
from flowfabric_worker.client.flow_handle import FlowHandle
from flowfabric_worker.client.flow_submit import (
    controlled,
    submit_controlled,
    submit_many_controlled,
)
from flowfabric_worker.client.result_listener import DoneListener
from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.client.schedule_handle import (
    ScheduleHandle,
    ScheduleInfo,
    create_schedule,
    plan_of,
)
from flowfabric_worker.client.submission import Submission, now_ms, resolve
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.observability import tracing
from flowfabric_worker.protocol.ids import parse_execution_id
from flowfabric_worker.protocol.lifecycle import CancelExecution
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks.bounds import DEFAULT_LIMITS, check_idempotency_key
from flowfabric_worker.tasks.budgets import Budget, Quota
from flowfabric_worker.tasks.schedule_specs import Catchup, Cron, Every, Overlap
from flowfabric_worker.tasks.schedule_store import list_schedules
from flowfabric_worker.tasks.spec import TaskSpec

R = TypeVar("R")


class Client(SignalMethods, BudgetMethods):
    """Submits executions and hands out :class:`RunHandle` objects.

    ``async with Client.connect("redis://localhost") as client: ...``
    """

    def __init__(self, backend: Backend, *, namespace: str = "default",
                 limits: Limits | None = None) -> None:
        self.backend = backend
        self.namespace = namespace
        #: Bounds on what this client sends (payloads, tags, keys, delays,
        #: signal payloads); a :class:`Worker` built on it bounds results too.
        self.limits = limits or DEFAULT_LIMITS
        self._done: DoneListener | None = None
        #: Per task, the checked call-wide part of a submission with the
        #: task's own options, and what it was made from (_resolve).
        self._plans: dict[TaskSpec[Any, Any], tuple[tuple[Any, ...], Submission[Any]]] = {}

    def done_listener(self) -> DoneListener:
        """The shared ``ffw:done:*`` listener (connects on first use)."""
        if self._done is None:
            self._done = DoneListener(self.backend.redis)
        return self._done

    @classmethod
    def connect(cls, url: str, *, mode: Mode = "standalone", namespace: str = "default",
                init_secrets: bool = False, limits: Limits | None = None,
                durability: str = "fast") -> _Connector:
        """An async context manager (or awaitable) yielding a connected client.

        ``durability`` says when a submission is acknowledged: ``"fast"``
        (once Redis applied it), ``"strict"`` (once the AOF fsynced it;
        Redis/Valkey >= 7.2 with ``appendonly yes``) or ``"replicas:N"``
        (once N replicas have it). A server that cannot give it raises
        :class:`~flowfabric_worker.errors.DurabilityUnavailable` here
        (docs/operations.md, "Durability"). A worker built on this client
        uses the same for its terminal calls unless given its own.

        ``limits`` bounds what it sends (default: ``Limits()``; the
        environment's with ``Limits.load()``, as the CLI does).

        ``init_secrets=True`` also makes sure the waitpoint HMAC keystore is
        initialised on every partition (idempotent; see
        :func:`flowfabric_worker.client.keystore.init_secrets`). ``memory://`` needs no
        flag: its keystore is initialised by the first readiness check (a
        worker serving tasks that can suspend).
        """
        return _Connector(url, mode, namespace, init_secrets, limits, durability)

    @classmethod
    async def open(cls, url: str, *, mode: Mode = "standalone", namespace: str = "default",
                   init_secrets: bool = False, limits: Limits | None = None,
                   durability: str = "fast") -> Client:
        backend = await Backend.open(url, mode=mode, durability=durability)
        if init_secrets:
            from flowfabric_worker.client.keystore import init_secrets as _init

            try:
                await _init(backend)
            except BaseException:
                await backend.close()
                raise
        return cls(backend, namespace=namespace, limits=limits)

    async def close(self) -> None:
        if self._done is not None:
            await self._done.aclose()
            self._done = None
        await self.backend.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @overload
    async def submit(
        self, task: TaskSpec[Any, R], *args: Any, idempotency_key: str | None = None,
        delay: float | None = None, priority: int | None = None,
        tags: Mapping[str, str] | None = None, lane: str | None = None,
        budgets: Iterable[Budget | str] | None = None, quota: Quota | str | None = None,
        **kwargs: Any,
    ) -> RunHandle[R]: ...
    @overload
    async def submit(
        self, task: str, *args: Any, idempotency_key: str | None = None,
        delay: float | None = None, priority: int | None = None,
        tags: Mapping[str, str] | None = None, lane: str | None = None,
        budgets: Iterable[Budget | str] | None = None, quota: Quota | str | None = None,
        **kwargs: Any,
    ) -> RunHandle[Any]: ...

    async def submit(
        self,
        task: TaskSpec[Any, R] | str,
        *args: Any,
        idempotency_key: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        tags: Mapping[str, str] | None = None,
        lane: str | None = None,
        budgets: Iterable[Budget | str] | None = None,
        quota: Quota | str | None = None,
        **kwargs: Any,
    ) -> RunHandle[R]:
        """Create one execution of ``task`` (a definition or a task name).

        Submitting by name skips client-side validation: the payload is sent
        as given and the worker decides. Either way the call is checked
        against :attr:`limits` first (payload size and depth, tags,
        ``idempotency_key``, ``delay``): a refusal raises
        :class:`PayloadError` / :class:`InvalidInput` and writes nothing.
        ``budgets`` / ``quota`` (default:
        the task's own) attach budgets and a quota policy: the scheduler
        checks them before claiming and ``ctx.report_usage`` reports against
        the budgets (docs/budgets.md).
        """
        sub = self._resolve(task, lane=lane, priority=priority, tags=tags, budgets=budgets,
                            quota=quota, delay=delay)
        idem = check_idempotency_key(idempotency_key, self.limits)
        flow = controlled(sub)
        if flow is not None:  # per-key limits or debounce (docs/flow-control.md)
            with tracing.producer_span("send", sub.name, sub.lane_id):
                return await submit_controlled(self, self.backend, sub, flow, args, kwargs, idem)
        with tracing.producer_span("send", sub.name, sub.lane_id):
            create, attach = sub.build(sub.payload(args, kwargs), idem, now_ms())
            result = await sub.send_one(self.backend, create, attach)
        # A new execution has the id minted here; a duplicate, the holder's.
        eid = parse_execution_id(result.execution_id) if result.duplicate else create.eid
        return RunHandle(self, eid, sub.definition, duplicate=result.duplicate)

    @overload
    async def submit_many(
        self, task: TaskSpec[Any, R], items: Iterable[tuple[Any, ...]], *,
        idempotency_keys: Sequence[str | None] | None = None, delay: float | None = None,
        priority: int | None = None, tags: Mapping[str, str] | None = None,
        lane: str | None = None, budgets: Iterable[Budget | str] | None = None,
        quota: Quota | str | None = None,
    ) -> list[RunHandle[R]]: ...
    @overload
    async def submit_many(
        self, task: str, items: Iterable[tuple[Any, ...]], *,
        idempotency_keys: Sequence[str | None] | None = None, delay: float | None = None,
        priority: int | None = None, tags: Mapping[str, str] | None = None,
        lane: str | None = None, budgets: Iterable[Budget | str] | None = None,
        quota: Quota | str | None = None,
    ) -> list[RunHandle[Any]]: ...

    async def submit_many(
        self,
        task: TaskSpec[Any, R] | str,
        items: Iterable[tuple[Any, ...]],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        delay: float | None = None,
        priority: int | None = None,
        tags: Mapping[str, str] | None = None,
        lane: str | None = None,
        budgets: Iterable[Budget | str] | None = None,
        quota: Quota | str | None = None,
    ) -> list[RunHandle[R]]:
        """Create one execution of ``task`` per item; the handles, in order.

        Each item is the **tuple** of one call's positional arguments:
        ``[(1, 2), (3, 4)]`` submits ``add(1, 2)`` and ``add(3, 4)``; a
        one-argument task takes ``[(x,) for x in xs]``, or use
        ``task.map(client, xs)``. Anything but a tuple is refused. The options
        apply to every item, as in :meth:`submit`; ``idempotency_keys`` holds
        one key (or None) per item, honoured within the batch and across
        batches and single submissions (a duplicate's handle has
        ``duplicate=True`` and the first execution's id).

        Every item is checked first (arguments, sizes, keys): a bad one raises
        :class:`~flowfabric_worker.client.batch.BatchItemInvalid` naming its
        ``index``, and nothing is written. The batch is then written in
        pipelined chunks of 200 with one wake-up of the lane per chunk. If the
        library refuses an item or a chunk's pipeline is lost,
        :class:`~flowfabric_worker.client.batch.BatchSubmitError` says which
        items were written (``handles``), which failed (``errors``) and which
        were never sent (``unsent``: the chunks after). With durability
        ``"strict"`` / ``"replicas:N"`` items are written as :meth:`submit`
        writes them, each confirmed, 32 at a time.
        """
        sub = self._resolve(task, lane=lane, priority=priority, tags=tags, budgets=budgets,
                            quota=quota, delay=delay)
        listed = items if isinstance(items, Sequence) else list(items)
        flow = controlled(sub)
        if flow is not None:  # per-key limits or debounce (docs/flow-control.md)
            if any(not isinstance(i, tuple) for i in listed) or (
                    idempotency_keys is not None and len(idempotency_keys) != len(listed)):
                raise InvalidInput("items must be tuples, with one idempotency key each")
            keys = [check_idempotency_key(k, self.limits)
                    for k in (idempotency_keys or [None] * len(listed))]
            with tracing.producer_span("send", sub.name, sub.lane_id, count=len(listed)):
                return await submit_many_controlled(
                    self, self.backend, sub, flow, [(i, {}) for i in listed], keys)
        with tracing.producer_span("send", sub.name, sub.lane_id, count=len(listed)):
            calls = prepare(sub, listed, idempotency_keys)
            return await submit_batch(self, sub, calls)

    def _resolve(self, task: TaskSpec[Any, R] | str, *, lane: str | None,
                 priority: int | None, tags: Mapping[str, str] | None,
                 budgets: Iterable[Budget | str] | None, quota: Quota | str | None,
                 delay: float | None) -> Submission[R]:
        if (lane is None and priority is None and tags is None and budgets is None
                and quota is None and delay is None and isinstance(task, TaskSpec)):
            # The common call (a task with its own options) sends the same
            # call-wide fields every time: checked once and remembered, against
            # everything they are made of, so a changed option (or limits) is
            # seen. This and the skipped struct checks are a third of a
            # submission's client time.
            key = (task.name, task.lane, task.priority, task.policy_json(),
                   tuple(task.tags.items()), task.deadline, task.budgets, task.quota,
                   self.namespace, self.limits, self.backend.partitions)
            known = self._plans.get(task)
            if known is not None and known[0] == key:
                return cast(Submission[R], known[1])
            plan = resolve(task, namespace=self.namespace, limits=self.limits,
                           partitions=self.backend.partitions, lane=None, priority=None,
                           tags=None, budgets=None, quota=None, delay=None).for_batch()
            self._plans[task] = (key, plan)
            return plan
        return resolve(task, namespace=self.namespace, limits=self.limits,
                       partitions=self.backend.partitions, lane=lane, priority=priority,
                       tags=tags, budgets=budgets, quota=quota, delay=delay)

    def flow(self, *, kind: str = "dag") -> FlowBuilder:
        """A builder for a static flow (DAG) of tasks; see docs/flows.md."""
        return FlowBuilder(self, kind=kind)

    async def submit_flow(self, flow: FlowBuilder) -> FlowHandle:
        """Write a built flow: the flow record, then each member with its join
        policy and edges (one transaction per member)."""
        return await flow._write()

    def flow_handle(self, flow_id: str) -> FlowHandle:
        """A handle on an existing flow (the id is a bare UUID)."""
        return FlowHandle(self, flow_id)

    async def schedule(
        self, task: TaskSpec[Any, Any] | str, *args: Any, cron: str | Cron | None = None,
        every: float | Every | None = None, schedule_id: str | None = None,
        tz: str | None = None, start_at: datetime | float | None = None,
        end_at: datetime | float | None = None, jitter: float = 0.0,
        overlap: Overlap = "allow", catchup: Catchup = "skip", catchup_limit: int = 100,
        lane: str | None = None, priority: int | None = None,
        tags: Mapping[str, str] | None = None, budgets: Iterable[Budget | str] | None = None,
        quota: Quota | str | None = None, **kwargs: Any,
    ) -> ScheduleHandle:
        """Run ``task(*args, **kwargs)`` on a recurring schedule: ``cron=``
        (5 fields, in ``tz``) or ``every=`` (seconds or an :class:`Every`).
        Creates the schedule, or updates the one with this ``schedule_id``
        (default: the task's name) in place. ``overlap`` / ``catchup`` /
        ``jitter`` / ``start_at`` / ``end_at``: docs/schedules.md. Checked
        before anything is written (:class:`InvalidInput`)."""
        plan = plan_of(cron, every, tz, start_at, end_at, jitter)
        return await create_schedule(
            self, task, args, kwargs, plan=plan, schedule_id=schedule_id, overlap=overlap,
            catchup=catchup, catchup_limit=catchup_limit, lane=lane, priority=priority,
            tags=tags, budgets=budgets, quota=quota)

    def schedule_handle(self, schedule_id: str) -> ScheduleHandle:
        """A handle on an existing schedule (the id is validated)."""
        return ScheduleHandle(self, schedule_id)

    async def schedules(self) -> list[ScheduleInfo]:
        """Every schedule of this client's namespace, by id."""
        return [ScheduleInfo.from_record(r)
                for r in await list_schedules(self.backend, self.namespace)]

    def run(self, execution_id: str, task: TaskSpec[Any, R] | None = None) -> RunHandle[R]:
        """A handle on an existing execution (the id is validated)."""
        return RunHandle(self, parse_execution_id(execution_id), task)

    async def cancel(self, execution_id: str, reason: str = "") -> str:
        """Cancel an execution as its operator; returns the phase it had before."""
        eid = parse_execution_id(execution_id)
        core = await self.backend.get_exec_core(eid)
        if core is None:
            raise InvalidInput(f"execution {eid} does not exist")
        call = CancelExecution(
            eid=eid,
            lane_id=core.lane_id,
            reason=reason,
            source="operator_override",
            attempt_index=core.current_attempt_index or 0,
            worker_instance_id=core.current_worker_instance_id or "",
        )
        if core.current_waitpoint_id:
            # The waitpoint keys must be the real ones so a suspended
            # execution's waitpoint is closed too.
            call = msgspec.structs.replace(call, waitpoint_id=core.current_waitpoint_id)
        result = await self.backend.cancel_execution(call)
        return result.phase_before


class _Connector:
    """``Client.connect(...)``: works with ``async with`` and with ``await``."""

    def __init__(self, url: str, mode: Mode, namespace: str, init_secrets: bool,
                 limits: Limits | None, durability: str = "fast") -> None:
        self._args = (url, mode, namespace, init_secrets, limits)
        self._durability = durability
        self._client: Client | None = None

    def __await__(self) -> Any:
        url, mode, namespace, init, limits = self._args
        return Client.open(url, mode=mode, namespace=namespace, init_secrets=init,
                           limits=limits, durability=self._durability).__await__()

    async def __aenter__(self) -> Client:
        url, mode, namespace, init, limits = self._args
        self._client = await Client.open(url, mode=mode, namespace=namespace,
                                         init_secrets=init, limits=limits,
                                         durability=self._durability)
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
