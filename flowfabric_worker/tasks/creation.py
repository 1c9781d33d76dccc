"""Building the creation call of a flow member (shared by the client's flow
builder and the in-task child spawner)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.observability import tracing
from flowfabric_worker.protocol.budgets import AttachAdmission
from flowfabric_worker.protocol.ids import ExecutionId, partition_of
from flowfabric_worker.protocol.lifecycle import CreateExecution
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks.bounds import DEFAULT_LIMITS, check_tags, encode_untyped
from flowfabric_worker.tasks.budgets import Budget, Quota, attachment
from flowfabric_worker.tasks.clock import wall_ms
from flowfabric_worker.tasks.passed_input import INPUT_TAG, placeholder
from flowfabric_worker.tasks.spec import TaskSpec, check_priority

__all__ = ["NODE_TAG", "PARENT_TAG", "member_admission", "member_create"]

#: Execution tags naming a member in its flow and, for children, its parent.
NODE_TAG = "ffw.flow_node"
PARENT_TAG = "ffw.parent"
_OWN_TAGS = frozenset({NODE_TAG, PARENT_TAG, INPUT_TAG, tracing.TRACE_TAG})


def member_create(
    eid: ExecutionId, task: TaskSpec[Any, Any] | str, args: tuple[Any, ...],
    kwargs: Mapping[str, Any], *, namespace: str, name: str, lane: str | None = None,
    priority: int | None = None, tags: Mapping[str, str] | None = None,
    input_from: ExecutionId | None = None, limits: Limits = DEFAULT_LIMITS,
) -> CreateExecution:
    """``ff_create_execution`` for ``task(*args, **kwargs)`` with id ``eid``
    (minted on the flow's partition by the caller). With ``input_from`` the
    payload is a placeholder naming that upstream: the data-passing edge
    replaces it with the upstream's result when it resolves. Arguments and
    tags are checked against ``limits`` here, before any write."""
    deadline: float | None = None
    if isinstance(task, TaskSpec):
        if task.flow_control is not None:
            # Not enforced for flow members and children yet: refuse rather
            # than run them unlimited (docs/flow-control.md).
            raise InvalidInput(f"task {task.name} declares concurrency= / rate= / debounce=: "
                               f"submit it with Client.submit, not as a flow member or child")
        payload = (placeholder(input_from) if input_from
                   else task.encode_call(args, kwargs, limits=limits))
        kind, policy = task.name, task.policy_json()
        lane_id, prio, all_tags = lane or task.lane, task.priority, dict(task.tags)
        deadline = task.deadline
    else:
        kind, policy, lane_id, prio, all_tags = task, "{}", lane or "default", 0, {}
        payload = (placeholder(input_from) if input_from
                   else encode_untyped(task, args, kwargs, limits))
    prio = check_priority(prio if priority is None else priority)
    all_tags.update(tags or {})
    # The caller's tags only: the bookkeeping tags below are the SDK's own.
    check_tags({k: v for k, v in all_tags.items() if k not in _OWN_TAGS}, limits)
    all_tags[NODE_TAG] = name
    if input_from:
        all_tags[INPUT_TAG] = input_from
    # A span for the member's creation (the parent of its attempts' spans),
    # under the span current here: the submitter's, or the parent attempt's.
    with tracing.producer_span("create", kind, lane_id, execution_id=eid):
        parent = tracing.current_traceparent()
    if parent is not None:
        all_tags[tracing.TRACE_TAG] = parent
    now_ms = wall_ms()  # the server's clock in tests too (tasks/clock.py)
    return CreateExecution(
        eid=eid, namespace=namespace, lane_id=lane_id, execution_kind=kind,
        priority=prio, creator_identity="flowfabric-worker", policy_json=policy,
        input_payload=payload, tags_json=json.dumps(all_tags, separators=(",", ":")),
        execution_deadline_at=(now_ms + int(deadline * 1000)) if deadline else None,
        partition_id=partition_of(eid),
    )


def member_admission(
    eid: ExecutionId, task: TaskSpec[Any, Any] | str, *,
    budgets: Iterable[Budget | str] | None = None, quota: Quota | str | None = None,
    inherited_budget_ids: str = "",
) -> AttachAdmission | None:
    """The ``ffw_attach_admission`` call giving a member its budgets and
    quota (None when it gets neither): ``budgets`` / ``quota`` when given,
    else the task's own, plus the budgets passed down (a child is charged to
    its parent's budgets too). Sent with the create, in the same write."""
    if isinstance(task, TaskSpec):
        budgets = task.budgets if budgets is None else budgets
        quota = task.quota if quota is None else quota
    ids = [b for b in inherited_budget_ids.split(",") if b]
    own, quota_id = attachment(budgets, quota)
    ids += [b for b in own.split(",") if b and b not in ids]
    if not ids and not quota_id:
        return None
    return AttachAdmission(eid=eid, budget_ids=",".join(ids), quota_policy_id=quota_id)
