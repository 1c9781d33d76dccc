"""Function-call structs of operator actions on one execution: revoke a
lease, change priority, replay, set tags (spec 02 §3.13–§3.25)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.checks import check_eid, check_int
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle_results import OkResult

__all__ = [
    "ChangePriority",
    "ChangePriorityResult",
    "ReplayExecution",
    "RevokeLease",
    "RevokeResult",
    "SetExecutionTags",
]


_TAG_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[^.]")


class RevokeResult(msgspec.Struct, frozen=True):
    status: str  # OK / ALREADY_SATISFIED
    tag: str  # revoked / already_revoked / already_expired
    lease_id: str = ""
    lease_epoch: int | None = None


class ChangePriorityResult(msgspec.Struct, frozen=True):
    old_priority: int
    new_priority: int


class RevokeLease(FCall[RevokeResult], frozen=True, kw_only=True):
    """``ff_revoke_lease`` (spec 02 §3.15); ``worker_instance_id`` = current owner."""

    NAME: ClassVar[str] = "ff_revoke_lease"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    worker_instance_id: str
    expected_lease_id: str = ""
    revoke_reason: str = ""

    def __post_init__(self) -> None:
        check_eid(self.eid)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [
            k.core, k.lease_current, k.lease_history, k.lease_expiry,
            k.worker_leases(self.worker_instance_id),
        ]  # fmt: skip

    def argv(self) -> list[str]:
        return [self.eid, self.expected_lease_id, self.revoke_reason]

    def decode(self, reply: Any) -> RevokeResult:
        env = self.envelope(reply)
        if env.status == "OK":
            return RevokeResult(
                status=env.status,
                tag=env.field(0),
                lease_id=env.field(1),
                lease_epoch=int(env.field(2)),
            )
        return RevokeResult(status=env.status, tag=env.field(0))


class ChangePriority(FCall[ChangePriorityResult], frozen=True, kw_only=True):
    """``ff_change_priority`` (spec 02 §3.19)."""

    NAME: ClassVar[str] = "ff_change_priority"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    lane_id: str
    new_priority: int

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.new_priority, "new_priority")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.lane_eligible(self.lane_id)]

    def argv(self) -> list[str]:
        return [self.eid, str(self.new_priority)]

    def decode(self, reply: Any) -> ChangePriorityResult:
        env = self.envelope(reply)
        return ChangePriorityResult(
            old_priority=int(float(env.field(0))), new_priority=int(float(env.field(1)))
        )


class ReplayExecution(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_replay_execution`` (spec 02 §3.20), normal path (4 KEYS).

    Skipped flow members need the dep-edge keys of part 04: pass
    ``flow_edge_ids`` together with the flow's keys via ``extra_keys``.
    """

    NAME: ClassVar[str] = "ff_replay_execution"
    eid: ExecutionId
    lane_id: str
    now_ms: int = 0
    extra_keys: tuple[str, ...] = ()
    edge_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_eid(self.eid)
        check_int(self.now_ms, "now_ms", minimum=0)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        lane = self.lane_id
        base = [k.core, k.lane_terminal(lane), k.lane_eligible(lane), k.lease_history]
        return base + list(self.extra_keys)

    def argv(self) -> list[str]:
        return [self.eid, str(self.now_ms), *self.edge_ids]

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))


class SetExecutionTags(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_set_execution_tags`` (spec 02 §3.21); keys like ``ns.name``."""

    NAME: ClassVar[str] = "ff_set_execution_tags"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    tags: dict[str, str]

    def __post_init__(self) -> None:
        check_eid(self.eid)
        if not self.tags:
            raise InvalidInput("tags must be non-empty")
        for key in self.tags:
            if not _TAG_KEY.match(key):
                raise InvalidInput(f"invalid tag key {key!r}: expected <namespace>.<name>")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.core, k.tags]

    def argv(self) -> list[str]:
        out: list[str] = []
        for key, value in self.tags.items():
            out += [key, value]
        return out

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))
