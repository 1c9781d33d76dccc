"""Submitting a task that declares flow control (docs/flow-control.md).

Only tasks with ``concurrency=`` / ``rate=`` / ``debounce=`` come here; a
plain submission never does, and pays nothing for this module.

A limited submission computes its key from the arguments, makes sure the
key's quota policy exists (``ffw_flow_quota``, once per key and client),
then creates the execution **with the quota attached in one
``MULTI``/``EXEC``**: the plain submit path pipelines the create and the
attachment, and a worker's claim could run between the two and start the
execution without admission. A debounced submission puts ``ffw_debounce``
in front of the create in the same transaction, so replacing the pending
execution's payload and creating a new one are decided atomically.
Everything is checked before the first write.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.run_handle import HandleOwner, RunHandle
from flowfabric_worker.client.submission import Submission, now_ms
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.budgets import AttachAdmission
from flowfabric_worker.protocol.flow_control import FlowQuota, ReplaceDebounced
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import parse_execution_id
from flowfabric_worker.protocol.keys import WAKE_CHANNEL, ExecKeys
from flowfabric_worker.protocol.lifecycle_results import CreateResult
from flowfabric_worker.protocol.partitions import quota_tag
from flowfabric_worker.tasks.flow_control import FlowControl, QuotaPlan

__all__ = ["controlled", "submit_controlled", "submit_many_controlled"]

R = TypeVar("R")

#: Quota policies this process has written lately, per backend: a key's
#: policy is rewritten at most once a minute per process, so a policy lost
#: with the data (a flush, a restart without persistence) is back within a
#: minute. Bounded; an evicted key costs one idempotent call.
_KNOWN_MAX = 10_000
_KNOWN_FOR = 60.0
_known: weakref.WeakKeyDictionary[Backend, OrderedDict[QuotaPlan, float]] = \
    weakref.WeakKeyDictionary()


def controlled(sub: Submission[Any]) -> FlowControl | None:
    """The flow control of the submission's task, if it declares any."""
    return sub.definition.flow_control if sub.definition is not None else None


async def _ensure_quota(backend: Backend, plan: QuotaPlan) -> None:
    known = _known.setdefault(backend, OrderedDict())
    now = time.monotonic()
    if known.get(plan, 0.0) > now:
        return
    await backend.call(FlowQuota(
        tag=quota_tag(plan.quota_id, backend.partitions), quota_id=plan.quota_id,
        window_seconds=plan.window_seconds, rate=plan.rate, cap=plan.cap, now_ms=now_ms(),
        strategy=plan.strategy, label=plan.label))
    known[plan] = now + _KNOWN_FOR
    known.move_to_end(plan)
    if len(known) > _KNOWN_MAX:
        known.popitem(last=False)


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """One checked call: what the transaction sends, nothing sent yet."""

    plan: QuotaPlan | None
    calls: list[FCall[Any]]
    create_index: int
    eid: str


def _prepare(sub: Submission[Any], flow: FlowControl, args: tuple[Any, ...],
             kwargs: Mapping[str, Any], idempotency_key: str) -> _Prepared:
    payload = sub.payload(args, kwargs)
    plan = flow.quota_plan(sub.name, sub.namespace, args, kwargs)
    debounce = flow.debounce_key(sub.name, args, kwargs)
    if plan is not None and sub.quota_id:
        raise InvalidInput(f"task {sub.name} limits per key (concurrency= / rate=): it "
                           f"cannot carry another quota (an execution carries one)")
    if debounce is not None:
        if idempotency_key:
            raise InvalidInput(f"task {sub.name} is debounced: its idempotency key is the "
                               f"debounce key, do not pass idempotency_key=")
        if sub.delay_s:
            raise InvalidInput(f"task {sub.name} is debounced: it starts Debounce.period "
                               f"after the first submission, do not pass delay=")
        assert flow.debounce is not None
        sub = dataclasses.replace(sub, delay_s=flow.debounce.period)
    create, attach = sub.build(payload, debounce or idempotency_key, now_ms())
    if plan is not None:
        attach = AttachAdmission(eid=create.eid, budget_ids=sub.budget_ids,
                                 quota_policy_id=plan.quota_id)
    calls: list[FCall[Any]] = []
    if debounce is not None:
        calls.append(ReplaceDebounced(
            idem_key=ExecKeys(create.eid).idempotency(sub.namespace, debounce),
            payload=payload))
    calls.append(create)
    if attach is not None:
        calls.append(attach)
    return _Prepared(plan, calls, len(calls) - (2 if attach is not None else 1), create.eid)


async def _send(backend: Backend, prepared: _Prepared) -> CreateResult:
    if prepared.plan is not None:
        await _ensure_quota(backend, prepared.plan)
    replies = await backend.call_atomic(prepared.calls)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    result = replies[prepared.create_index]
    assert isinstance(result, CreateResult)
    return result


async def submit_controlled(owner: HandleOwner, backend: Backend, sub: Submission[R],
                            flow: FlowControl, args: tuple[Any, ...],
                            kwargs: Mapping[str, Any], idempotency_key: str) -> RunHandle[R]:
    """``Client.submit`` for a task with flow control: checked, then the
    key's quota ensured, then one transaction."""
    (handle,) = await submit_many_controlled(owner, backend, sub, flow, [(args, kwargs)],
                                             [idempotency_key])
    return handle


async def submit_many_controlled(
    owner: HandleOwner, backend: Backend, sub: Submission[R], flow: FlowControl,
    calls: Sequence[tuple[tuple[Any, ...], Mapping[str, Any]]], idempotency_keys: Sequence[str],
) -> list[RunHandle[R]]:
    """Every call checked first (nothing written on a bad one), then each
    sent in its own transaction, in order (a debounce group's last call
    wins). One lane registration and wake-up at the end."""
    prepared = [_prepare(sub, flow, args, kwargs, key)
                for (args, kwargs), key in zip(calls, idempotency_keys, strict=True)]
    handles: list[RunHandle[R]] = []
    woke = False
    await backend.add_lanes([sub.lane_id])
    for p in prepared:
        result = await _send(backend, p)
        eid = parse_execution_id(result.execution_id) if result.duplicate else p.eid
        woke = woke or (not result.duplicate and result.public_state != "delayed")
        handles.append(RunHandle(owner, eid, sub.definition, duplicate=result.duplicate))
    if woke:
        await backend.publish(WAKE_CHANNEL.format(lane=sub.lane_id), "1")
    return handles
