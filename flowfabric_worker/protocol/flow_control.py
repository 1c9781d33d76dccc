"""Function-call structs of per-key flow control (our ``ffw`` extension,
``lua/ffw/70_flow_control.lua``; docs/flow-control.md): the quota policy a
key's limit uses, and the payload replacement of a debounced submission."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.checks import check_quota_tag
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import validate_uuid
from flowfabric_worker.protocol.keys import QuotaKeys

__all__ = ["STRATEGIES", "DebounceResult", "FlowQuota", "ReplaceDebounced", "waiting_key"]

#: What happens to work over a concurrency cap (docs/flow-control.md).
STRATEGIES = ("queue", "cancel_newest", "cancel_in_progress")
#: Quota-definition fields of ours (a 0.15 reader ignores them).
STRATEGY_FIELD = "ffw_strategy"
LABEL_FIELD = "ffw_label"


def waiting_key(tag: str, quota_id: str) -> str:
    """The zset of executions blocked on a flow quota, oldest first
    (``<eid>|<lane>`` → first refusal ms): who is unblocked when a slot
    frees. Ours; on the quota's slot."""
    return f"ffw:quota:{tag}:{quota_id}:waiting"


class FlowQuota(FCall[str], frozen=True, kw_only=True):
    """``ffw_flow_quota``: create or update a key's quota policy. Answers
    ``created``, ``updated`` or ``unchanged``."""

    NAME: ClassVar[str] = "ffw_flow_quota"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    tag: str
    quota_id: str
    window_seconds: int
    rate: int
    cap: int
    now_ms: int
    strategy: str = "queue"
    label: str = ""

    def __post_init__(self) -> None:
        check_quota_tag(self.tag)
        validate_uuid(self.quota_id, "quota id")
        if self.window_seconds < 1 or self.rate < 0 or self.cap < 0 or self.now_ms < 0:
            raise InvalidInput("flow quota limits must be non-negative (window >= 1 s)")
        if not self.rate and not self.cap:
            raise InvalidInput("a flow quota needs a rate or a cap")
        if self.strategy not in STRATEGIES:
            raise InvalidInput(f"strategy must be one of {', '.join(STRATEGIES)}")
        if len(self.label.encode()) > 1024:
            raise InvalidInput("flow quota label longer than 1024 bytes")

    def keys(self) -> list[str]:
        qk = QuotaKeys(self.tag, self.quota_id)
        return [qk.definition, qk.concurrency, qk.policies]

    def argv(self) -> list[str]:
        return [self.quota_id, str(self.window_seconds), str(self.rate), str(self.cap),
                str(self.now_ms), self.strategy, self.label]

    def decode(self, reply: Any) -> str:
        return self.envelope(reply).field(0)


class DebounceResult(msgspec.Struct, frozen=True):
    """``replaced``: the payload of ``execution_id`` (still delayed) was
    replaced; else a new execution is to be created."""

    replaced: bool
    execution_id: str = ""


class ReplaceDebounced(FCall[DebounceResult], frozen=True, kw_only=True):
    """``ffw_debounce`` on the debounce key's idempotency key (sent in one
    ``MULTI`` with the create that carries the same key)."""

    NAME: ClassVar[str] = "ffw_debounce"
    LIBRARY: ClassVar[str] = "ffw"
    idem_key: str
    payload: bytes

    def __post_init__(self) -> None:
        if not self.idem_key.startswith("ff:idem:{fp:"):
            raise InvalidInput(f"not an idempotency key: {self.idem_key!r}")
        if not self.payload:
            raise InvalidInput("payload must not be empty")

    def keys(self) -> list[str]:
        return [self.idem_key]

    def argv(self) -> list[str | bytes]:
        return [self.payload]

    def decode(self, reply: Any) -> DebounceResult:
        env = self.envelope(reply)
        return DebounceResult(env.status == "OK" and env.field(0) == "replaced", env.field(1))
