"""Function-call structs of the worker registry and the library version
call (spec 02 §3.24–§3.25)."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.checks import check_int, opt
from flowfabric_worker.protocol.function import FCall, as_str
from flowfabric_worker.protocol.keys import worker_alive, worker_caps, workers_index
from flowfabric_worker.protocol.lifecycle_results import OkResult

__all__ = [
    "HeartbeatResult",
    "HeartbeatWorker",
    "RegisterWorker",
    "Version",
]


class HeartbeatResult(msgspec.Struct, frozen=True):
    tag: str  # refreshed / not_registered
    ttl_ms: int | None = None


class RegisterWorker(FCall[OkResult], frozen=True, kw_only=True):
    """``ff_register_worker`` (spec 02 §3.23); tag ``registered`` / ``refreshed``."""

    NAME: ClassVar[str] = "ff_register_worker"
    IDEMPOTENT: ClassVar[bool] = True
    namespace: str
    instance_id: str
    worker_id: str
    lanes: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    ttl_ms: int
    now_ms: int

    def __post_init__(self) -> None:
        check_int(self.ttl_ms, "ttl_ms", minimum=1)
        check_int(self.now_ms, "now_ms", minimum=0)
        if not self.instance_id or not self.worker_id:
            raise InvalidInput("instance_id and worker_id are required")

    def keys(self) -> list[str]:
        ns, wiid = self.namespace, self.instance_id
        return [worker_alive(ns, wiid), worker_caps(ns, wiid), workers_index(ns)]

    def argv(self) -> list[str]:
        return [
            self.instance_id, self.worker_id, ",".join(sorted(set(self.lanes))),
            ",".join(sorted(set(self.capabilities))), str(self.ttl_ms), str(self.now_ms),
        ]  # fmt: skip

    def decode(self, reply: Any) -> OkResult:
        env = self.envelope(reply)
        return OkResult(status=env.status, tag=env.field(0))


class HeartbeatWorker(FCall[HeartbeatResult], frozen=True, kw_only=True):
    """``ff_heartbeat_worker`` (spec 02 §3.24)."""

    NAME: ClassVar[str] = "ff_heartbeat_worker"
    IDEMPOTENT: ClassVar[bool] = True
    namespace: str
    instance_id: str
    now_ms: int

    def __post_init__(self) -> None:
        check_int(self.now_ms, "now_ms", minimum=0)

    def keys(self) -> list[str]:
        return [
            worker_alive(self.namespace, self.instance_id),
            worker_caps(self.namespace, self.instance_id),
        ]

    def argv(self) -> list[str]:
        return [str(self.now_ms)]

    def decode(self, reply: Any) -> HeartbeatResult:
        env = self.envelope(reply)
        ttl = env.field(1)
        return HeartbeatResult(tag=env.field(0), ttl_ms=int(ttl) if ttl else None)


class Version(FCall[str], frozen=True, kw_only=True):
    """``ff_version``: the bare library version string."""

    NAME: ClassVar[str] = "ff_version"
    IDEMPOTENT: ClassVar[bool] = True

    def keys(self) -> list[str]:
        return []

    def argv(self) -> list[str]:
        return []

    def decode(self, reply: Any) -> str:
        return as_str(reply)


_ = opt  # re-exported helper used by callers building ARGV by hand
