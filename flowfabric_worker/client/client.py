"""The submitting side: :class:`Client`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

import msgspec

from flowfabric_worker.backend.backend import Backend, Mode
from flowfabric_worker.client.flow_builder import FlowBuilder
from flowfabric_worker.client.flow_handle import FlowHandle
from flowfabric_worker.client.result_listener import DoneListener
from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.client.signal_sender import (
    SignalOutcome,
    WaitpointInfo,
    open_waitpoints,
    send_signal,
)
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.budgets import AttachAdmission
from flowfabric_worker.protocol.ids import mint_execution_id, parse_execution_id, partition_of
from flowfabric_worker.protocol.keys import LANES_INDEX, WAKE_CHANNEL
from flowfabric_worker.protocol.lifecycle import CancelExecution, CreateExecution
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks.bounds import (
    DEFAULT_LIMITS,
    check_delay,
    check_idempotency_key,
    check_tags,
    encode_untyped,
)
from flowfabric_worker.tasks.budgets import (
    Budget,
    Limit,
    Quota,
    attachment,
    build_create_budget,
    build_create_quota,
)
from flowfabric_worker.tasks.spec import TaskSpec, check_priority

R = TypeVar("R")


# Delays shorter than this are sent as "eligible now" (spec 02 §3.1: a
# delay_until in the past or too close would file into the delayed set only to
# be promoted a scanner tick later).
_MIN_DELAY_S = 1.0


class Client:
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
        limits = self.limits
        delay_s = check_delay(delay, limits)
        idem = check_idempotency_key(idempotency_key, limits)
        if isinstance(task, TaskSpec):
            name = task.name
            payload = task.encode_call(args, kwargs, limits=limits)
            policy = task.policy_json()
            lane_id = lane or task.lane
            prio = task.priority if priority is None else priority
            base_tags = dict(task.tags)
            deadline_s = task.deadline
            definition: TaskSpec[Any, R] | None = task
            if budgets is None:
                budgets = task.budgets
            if quota is None:
                quota = task.quota
        else:
            name = task
            payload = encode_untyped(name, args, kwargs, limits)
            policy = "{}"
            lane_id = lane or "default"
            prio = priority or 0
            base_tags = {}
            deadline_s = None
            definition = None
        check_priority(prio)
        budget_ids, quota_id = attachment(budgets, quota)
        base_tags.update(tags or {})
        check_tags(base_tags, limits)
        now_ms = int(time.time() * 1000)
        delay_until = now_ms + int(delay_s * 1000) if delay_s > _MIN_DELAY_S else None
        eid = mint_execution_id(lane_id=lane_id, config=self.backend.partitions)
        create = CreateExecution(
            eid=eid,
            namespace=self.namespace,
            lane_id=lane_id,
            execution_kind=name,
            priority=prio,
            creator_identity="flowfabric-worker",
            policy_json=policy,
            input_payload=payload,
            delay_until=delay_until,
            idempotency_key=idem,
            tags_json=json.dumps(base_tags, separators=(",", ":")) if base_tags else "",
            execution_deadline_at=(now_ms + int(deadline_s * 1000)) if deadline_s else None,
            partition_id=partition_of(eid),
        )
        extra: list[Sequence[Any]] = []
        if budget_ids or quota_id:
            # Right after the create, in the same round trip (and before the
            # wake-up), so a woken worker already sees them. A duplicate
            # (idempotency key) has no core under the minted id: no write.
            extra.append(self.backend.fcall_command(AttachAdmission(
                eid=eid, budget_ids=budget_ids, quota_policy_id=quota_id)))
        # The lane registry lets a `scan` process without --lane find it.
        extra.append(("SADD", LANES_INDEX, lane_id))
        if delay_until is None:
            extra.append(("PUBLISH", WAKE_CHANNEL.format(lane=lane_id), "1"))
        # (a delayed execution is not claimable before delay_until: nobody to wake)
        if extra:
            # durable: with durability "strict" / "replicas:N", acknowledged
            # only once on disk / on the replicas (Client.connect).
            result = await self.backend.call_and_send(create, *extra, durable=True)
        else:
            result = await self.backend.create_execution(create)
        return RunHandle(self, parse_execution_id(result.execution_id), definition,
                         duplicate=result.duplicate)

    async def signal(
        self,
        execution_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        source: str = "client",
        source_type: str = "external_api",
        category: str = "callback",
        correlation_id: str = "",
        waitpoint: str | None = None,
        token: str | None = None,
    ) -> SignalOutcome:
        """Send signal ``name`` with a JSON ``payload`` to a waiting execution.

        The target is the execution's open waitpoint: the suspension's primary
        one, else the only pending one; name another with ``waitpoint=`` (id or
        key). Its token is read from the waitpoint record, or (for a bridge
        relaying an outside caller) compared in constant time with ``token``
        (:class:`TokenMismatch` on a difference). A pending waitpoint (task
        still running) gets the signal buffered; an active one evaluates it and
        may resume the execution. The same ``idempotency_key`` on the same
        waitpoint records the signal once (``status == "duplicate"`` after).
        ``source`` (identity) and ``source_type`` are stored with the signal.

        Raises :class:`NoWaitpoint` (nothing waits), :class:`UnknownWaitpoint`,
        :class:`AmbiguousWaitpoint`, and the library's typed refusals:
        :class:`InvalidToken`, :class:`TokenExpired` (the token's kid left its
        rotation grace), :class:`HmacSecretNotInitialized` (no keystore),
        :class:`WaitpointClosed`, :class:`TargetNotSignalable`,
        :class:`SignalLimitExceeded`.
        """
        return await send_signal(
            self.backend, execution_id, name, payload, idempotency_key=idempotency_key,
            source=source, source_type=source_type, category=category,
            correlation_id=correlation_id, waitpoint=waitpoint, token=token,
            limits=self.limits)

    async def pending_waitpoints(self, execution_id: str) -> list[WaitpointInfo]:
        """The execution's open waitpoints (``pending`` and ``active``), the
        suspension's primary first. Tokens print redacted."""
        return await open_waitpoints(self.backend, execution_id)

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

    # --- budgets and quotas (docs/budgets.md) ---------------------------------

    async def create_budget(
        self,
        dimensions: Mapping[str, Limit],
        *,
        budget_id: str | None = None,
        reset_every: float | None = None,
        scope: tuple[str, str] | None = None,
        on_hard_limit: str = "fail",
        on_soft_limit: str = "warn",
        enforcement_mode: str = "strict",
    ) -> Budget:
        """Create a budget (``ff_create_budget``) and return its handle.

        ``dimensions`` maps a name (``"tokens"``) to its :class:`Limit`; at
        most 64, sent sorted by name. ``reset_every`` (seconds) zeroes usage
        periodically (the ``budget_reset`` scanner). ``scope`` is
        ``("execution" | "flow" | "lane" | "tenant", id)``, stored only
        (default: the client's namespace as tenant). ``on_hard_limit`` /
        ``on_soft_limit`` are stored for peers; this worker always fails on a
        hard breach and warns on a soft one. Creating with an existing
        ``budget_id`` is a no-op that keeps the stored limits. Example::

            budget = await client.create_budget({"tokens": Limit(hard=10_000, soft=8_000)})
            run = await summarize.submit(client, doc, budgets=[budget])
        """
        now = int(time.time() * 1000)
        call = build_create_budget(
            dimensions, budget_id=budget_id, reset_every=reset_every,
            scope=scope if scope is not None else ("tenant", self.namespace),
            on_hard_limit=on_hard_limit, on_soft_limit=on_soft_limit,
            enforcement_mode=enforcement_mode, now_ms=now, backend=self.backend)
        await self.backend.create_budget(call)
        return Budget(self.backend, call.budget_id)

    def budget(self, budget_id: str) -> Budget:
        """A handle on an existing budget (the id is validated, not looked up)."""
        return Budget(self.backend, budget_id)

    async def create_quota(
        self,
        *,
        rate: int | None = None,
        per: float = 60,
        concurrency: int | None = None,
        jitter: float = 0.0,
        quota_id: str | None = None,
    ) -> Quota:
        """Create a quota policy (``ff_create_quota_policy``): at most ``rate``
        claims per ``per`` seconds (sliding window) and at most
        ``concurrency`` executions running at once. ``jitter`` (seconds) is
        the random spread 0.15 adds to rate-limit retry hints. An execution
        over the quota waits in ``blocked:quota`` until the ``unblock``
        scanner finds room. Example::

            quota = await client.create_quota(rate=10, per=60, concurrency=2)
            await call_api.submit(client, url, quota=quota)
        """
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or jitter < 0:
            raise InvalidInput("jitter must be a non-negative number of seconds")
        now = int(time.time() * 1000)
        call = build_create_quota(quota_id=quota_id, rate=rate, per=per,
                                  concurrency=concurrency, now_ms=now, backend=self.backend)
        res = await self.backend.create_quota_policy(call)
        if res.created and jitter:
            await self.backend.set_quota_jitter(call.quota_id, round(jitter * 1000))
        return Quota(self.backend, call.quota_id)

    def quota(self, quota_id: str) -> Quota:
        """A handle on an existing quota policy (the id is validated)."""
        return Quota(self.backend, quota_id)

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
