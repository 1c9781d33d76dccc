"""What one ``Client.submit`` / ``submit_many`` call sends, resolved once.

Everything that does not vary between the items of a call (the task's name,
policy, lane, priority, tags, deadline, delay, budgets and quota) is checked
and encoded here once, so a batch pays for it once and a single submission
pays only for what it needs; :meth:`Submission.build` then makes the creation
call of one item from its payload and idempotency key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.observability import tracing
from flowfabric_worker.protocol.budgets import AttachAdmission
from flowfabric_worker.protocol.ids import ExecutionId, new_uuid, validate_lane
from flowfabric_worker.protocol.keys import LANES_INDEX, WAKE_CHANNEL
from flowfabric_worker.protocol.lifecycle import CreateExecution
from flowfabric_worker.protocol.partitions import PartitionConfig, solo_partition
from flowfabric_worker.protocol.wake import PLAIN_WAKE, direct_wake
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks.bounds import check_delay, check_tags, encode_untyped
from flowfabric_worker.tasks.budgets import Budget, Quota, attachment
from flowfabric_worker.tasks.clock import wall_ms
from flowfabric_worker.tasks.spec import TaskSpec, check_priority

__all__ = ["Submission", "resolve"]

R = TypeVar("R")

# Delays shorter than this are sent as "eligible now" (spec 02 §3.1: a
# delay_until in the past or too close would file into the delayed set only to
# be promoted a scanner tick later).
MIN_DELAY_S = 1.0

_CREATOR = "flowfabric-worker"


class _ItemCreate(CreateExecution, frozen=True, kw_only=True):
    """An item of a batch: a :class:`CreateExecution` that skips the struct's
    checks, because they ran once on the batch's template (see
    :meth:`Submission.for_batch`) and the fields that differ per item are made
    by :meth:`Submission.build` (an id minted in canonical form, times from
    the clock, a payload from ``encode_call``, a key from
    ``check_idempotency_key``). The checks re-parse the policy and tags JSON:
    a third of a batch item's client time."""

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Submission(Generic[R]):
    """The checked, call-wide part of a submission."""

    definition: TaskSpec[Any, R] | None
    name: str
    namespace: str
    lane_id: str
    #: The lane's partition (every solo execution of a lane lives on it).
    partition: int
    priority: int
    policy_json: str
    tags_json: str
    deadline_s: float | None
    delay_s: float
    budget_ids: str
    quota_id: str
    limits: Limits
    #: What :meth:`build` makes: the checked struct, or a batch's unchecked one.
    create_type: type[CreateExecution] = CreateExecution

    def for_batch(self) -> Submission[R]:
        """This submission for many items: the call-wide fields are checked
        here, once, on a template, and each item skips the checks."""
        self.build(b"", "", now_ms())  # a refusal raises here, before any item
        return replace(self, create_type=_ItemCreate)

    @property
    def delayed(self) -> bool:
        """Whether the executions go to the delayed set (no worker to wake)."""
        return self.delay_s > MIN_DELAY_S

    def payload(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        """The checked payload of one call (:class:`PayloadError` /
        :class:`InvalidInput` before anything is sent)."""
        if self.definition is not None:
            return self.definition.encode_call(args, kwargs, limits=self.limits)
        return encode_untyped(self.name, args, kwargs, self.limits)

    def build(self, payload: bytes, idempotency_key: str,
              now_ms: int) -> tuple[CreateExecution, AttachAdmission | None]:
        """The creation call of one item (and its budget / quota attachment),
        with a fresh id on the lane's partition."""
        # mint_execution_id's form, with the lane's partition computed once
        # per call rather than once per item.
        eid: ExecutionId = f"{{fp:{self.partition}}}:{new_uuid()}"
        create = self.create_type(
            eid=eid,
            namespace=self.namespace,
            lane_id=self.lane_id,
            execution_kind=self.name,
            priority=self.priority,
            creator_identity=_CREATOR,
            policy_json=self.policy_json,
            input_payload=payload,
            delay_until=now_ms + int(self.delay_s * 1000) if self.delayed else None,
            idempotency_key=idempotency_key,
            # The span current now (Client.submit's) is the parent of the
            # execution's attempt spans (docs/observability.md, traces).
            tags_json=tracing.with_traceparent(self.tags_json),
            execution_deadline_at=(now_ms + int(self.deadline_s * 1000)
                                   if self.deadline_s else None),
            partition_id=self.partition,
        )
        attach = (AttachAdmission(eid=eid, budget_ids=self.budget_ids,
                                  quota_policy_id=self.quota_id)
                  if self.budget_ids or self.quota_id else None)
        return create, attach

    def registry_command(self) -> list[Any]:
        """The lane registry entry that lets a ``scan`` without ``--lane`` find
        the lane."""
        return ["SADD", LANES_INDEX, self.lane_id]

    def wake_command(self, eid: str | None = None) -> list[Any] | None:
        """The wake-up of the lane's workers, None for delayed executions
        (nobody to wake before ``delay_until``). With ``eid`` (one item) and
        no budget or quota to admit, it names the execution, so a woken
        worker claims it without reading the index first (protocol/wake.py)."""
        if self.delayed:
            return None
        message = (direct_wake(eid, self.lane_id, self.name)
                   if eid is not None and not (self.budget_ids or self.quota_id) else PLAIN_WAKE)
        return ["PUBLISH", WAKE_CHANNEL.format(lane=self.lane_id), message]

    async def send_one(self, backend: Backend, create: CreateExecution,
                       attach: AttachAdmission | None) -> Any:
        """Write one item in one round trip: the create, its attachment right
        after it (before the wake-up, so a woken worker already sees it; a
        duplicate has no core under the minted id, so nothing is attached),
        the lane registry, the wake-up. ``durable``: with durability
        "strict" / "replicas:N" it returns once on disk / on the replicas."""
        extra: list[Sequence[Any]] = []
        if attach is not None:
            extra.append(backend.fcall_command(attach))
        extra.append(self.registry_command())
        wake = self.wake_command(create.eid)
        if wake is not None:
            extra.append(wake)
        return await backend.call_and_send(create, *extra, durable=True)


def resolve(
    task: TaskSpec[Any, R] | str, *, namespace: str, limits: Limits,
    partitions: PartitionConfig, lane: str | None, priority: int | None,
    tags: Mapping[str, str] | None, budgets: Iterable[Budget | str] | None,
    quota: Quota | str | None, delay: float | None,
) -> Submission[R]:
    """Check and encode the call-wide options (:class:`InvalidInput` before
    anything is sent). A task definition supplies the defaults (``budgets`` /
    ``quota`` None = the task's own); a task name has none and skips
    client-side argument validation."""
    delay_s = check_delay(delay, limits)
    definition: TaskSpec[Any, R] | None
    if isinstance(task, TaskSpec):
        definition = task
        name, policy, deadline = task.name, task.policy_json(), task.deadline
        lane_id = lane or task.lane
        prio = task.priority if priority is None else priority
        all_tags = dict(task.tags)
        budgets = task.budgets if budgets is None else budgets
        quota = task.quota if quota is None else quota
    else:
        definition = None
        name, policy, deadline = task, "{}", None
        lane_id = lane or "default"
        prio = priority or 0
        all_tags = {}
    validate_lane(lane_id)
    check_priority(prio)
    budget_ids, quota_id = attachment(budgets, quota)
    all_tags.update(tags or {})
    check_tags(all_tags, limits)
    return Submission(
        definition=definition, name=name, namespace=namespace, lane_id=lane_id,
        partition=solo_partition(lane_id, partitions), priority=prio, policy_json=policy,
        tags_json=json.dumps(all_tags, separators=(",", ":")) if all_tags else "",
        deadline_s=deadline, delay_s=delay_s, budget_ids=budget_ids, quota_id=quota_id,
        limits=limits,
    )


def now_ms() -> int:
    return wall_ms()
