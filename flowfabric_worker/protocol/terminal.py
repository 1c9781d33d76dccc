"""Function-call structs of the terminal and self-parking operations:
complete, fail, cancel, delay and move-to-waiting-children (spec 02
§3.8–§3.12). Re-exported by :mod:`.lifecycle`."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.checks import (
    check_eid,
    check_fence,
    check_int,
    check_json_object,
    opt,
)
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle_results import (
    CancelResult,
    CompleteResult,
    DelayResult,
    FailResult,
    OkResult,
    _num,
)


class _Fenced(msgspec.Struct, frozen=True, kw_only=True):
    """Shared fields of the fully fenced calls (spec 02 §0.7).

    ``attempt_index``, ``lane_id`` and ``worker_instance_id`` name the keys
    used as given (the current attempt, the lane sets, the owner's lease set).
    """

    eid: ExecutionId
    lane_id: str
    attempt_index: int
    worker_instance_id: str
    lease_id: str = ""
    lease_epoch: int | None = None
    attempt_id: str = ""
    source: str = ""

    def _check(self) -> None:
        check_eid(self.eid)
        check_int(self.attempt_index, "attempt_index", minimum=0)
        check_int(self.lease_epoch, "lease_epoch", minimum=0)
        check_fence(self.lease_id, opt(self.lease_epoch), self.attempt_id, self.source)

    def _fence(self) -> list[str]:
        return [self.eid, self.lease_id, opt(self.lease_epoch), self.attempt_id]


class CompleteExecution(_Fenced, FCall[CompleteResult], frozen=True, kw_only=True):
    """``ff_complete_execution`` (spec 02 §3.8)."""

    NAME: ClassVar[str] = "ff_complete_execution"
    result_payload: bytes | str = b""

    def __post_init__(self) -> None:
        self._check()

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i, lane = self.attempt_index, self.lane_id
        return [
            k.core, k.attempt(i), k.lease_expiry, k.worker_leases(self.worker_instance_id),
            k.lane_terminal(lane), k.lease_current, k.lease_history, k.lane_active(lane),
            k.stream_meta(i), k.result, k.attempt_timeout, k.execution_deadline,
        ]  # fmt: skip

    def argv(self) -> list[str | bytes]:
        return [*self._fence(), self.result_payload, self.source]

    def decode(self, reply: Any) -> CompleteResult:
        return CompleteResult(status=self.envelope(reply).field(0))


class FailExecution(_Fenced, FCall[FailResult], frozen=True, kw_only=True):
    """``ff_fail_execution`` (spec 02 §3.9); ``retry_policy_json`` empty = never retry."""

    NAME: ClassVar[str] = "ff_fail_execution"
    failure_reason: str = ""
    failure_category: str = ""
    retry_policy_json: str = ""

    def __post_init__(self) -> None:
        self._check()
        if self.retry_policy_json:
            policy = check_json_object(self.retry_policy_json, "retry_policy_json")
            mr = policy.get("max_retries", 0)
            if isinstance(mr, bool) or not isinstance(mr, int | float):
                raise InvalidInput("retry_policy_json max_retries must be a number")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i, lane = self.attempt_index, self.lane_id
        return [
            k.core, k.attempt(i), k.lease_expiry, k.worker_leases(self.worker_instance_id),
            k.lane_terminal(lane), k.lane_delayed(lane), k.lease_current, k.lease_history,
            k.lane_active(lane), k.stream_meta(i), k.attempt_timeout, k.execution_deadline,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [
            *self._fence(), self.failure_reason, self.failure_category,
            self.retry_policy_json, self.source,
        ]  # fmt: skip

    def decode(self, reply: Any) -> FailResult:
        env = self.envelope(reply)
        outcome = env.field(0)
        if outcome == "retry_scheduled":
            return FailResult(outcome=outcome, delay_until=_num(env.field(1)))
        return FailResult(outcome=outcome)


class CancelExecution(FCall[CancelResult], frozen=True, kw_only=True):
    """``ff_cancel_execution`` (spec 02 §3.10).

    ``attempt_index``, ``worker_instance_id`` and ``waitpoint_id`` are the
    pre-read ``current_*`` values (placeholders are fine when absent).
    """

    NAME: ClassVar[str] = "ff_cancel_execution"
    eid: ExecutionId
    lane_id: str
    reason: str = ""
    source: str = ""
    lease_id: str = ""
    lease_epoch: int | None = None
    attempt_index: int = 0
    worker_instance_id: str = ""
    waitpoint_id: str = "00000000-0000-4000-8000-000000000000"

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.lease_epoch, "lease_epoch", minimum=0)
        check_int(self.attempt_index, "attempt_index", minimum=0)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i, lane = self.attempt_index, self.lane_id
        return [
            k.core, k.attempt(i), k.stream_meta(i), k.lease_current, k.lease_history,
            k.lease_expiry, k.worker_leases(self.worker_instance_id), k.suspension_current,
            k.waitpoint(self.waitpoint_id), k.waitpoint_condition(self.waitpoint_id),
            k.suspension_timeout, k.lane_terminal(lane), k.attempt_timeout,
            k.execution_deadline, k.lane_eligible(lane), k.lane_delayed(lane),
            k.lane_blocked(lane, "dependencies"), k.lane_blocked(lane, "budget"),
            k.lane_blocked(lane, "quota"), k.lane_blocked(lane, "route"),
            k.lane_blocked(lane, "operator"),
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [self.eid, self.reason, self.source, self.lease_id, opt(self.lease_epoch)]

    def decode(self, reply: Any) -> CancelResult:
        env = self.envelope(reply)
        return CancelResult(phase_before=env.field(1))


class DelayExecution(_Fenced, FCall[DelayResult], frozen=True, kw_only=True):
    """``ff_delay_execution`` (spec 02 §3.11)."""

    NAME: ClassVar[str] = "ff_delay_execution"
    delay_until: int = 0

    def __post_init__(self) -> None:
        self._check()
        check_int(self.delay_until, "delay_until", minimum=0)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        lane = self.lane_id
        return [
            k.core, k.attempt(self.attempt_index), k.lease_current, k.lease_history,
            k.lease_expiry, k.worker_leases(self.worker_instance_id), k.lane_active(lane),
            k.lane_delayed(lane), k.attempt_timeout,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [*self._fence(), str(self.delay_until), self.source]

    def decode(self, reply: Any) -> DelayResult:
        return DelayResult(delay_until=int(_num(self.envelope(reply).field(0))))


class MoveToWaitingChildren(_Fenced, FCall[OkResult], frozen=True, kw_only=True):
    """``ff_move_to_waiting_children`` (spec 02 §3.12)."""

    NAME: ClassVar[str] = "ff_move_to_waiting_children"

    def __post_init__(self) -> None:
        self._check()

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        lane = self.lane_id
        return [
            k.core, k.attempt(self.attempt_index), k.lease_current, k.lease_history,
            k.lease_expiry, k.worker_leases(self.worker_instance_id), k.lane_active(lane),
            k.lane_blocked(lane, "dependencies"), k.attempt_timeout,
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [*self._fence(), self.source]

    def decode(self, reply: Any) -> OkResult:
        return OkResult(status=self.envelope(reply).status)
