"""Function calls and keys of recurring schedules (``ffw`` library,
``lua/ffw/60_schedules.lua``).

A schedule lives on one ``fp`` partition, chosen by hashing its id, so all of
its keys share a hash tag and a cluster keeps it in one slot:

* ``ffw:sched:{fp:N}:<id>`` — the record (a hash; :class:`ScheduleRecord`);
* ``ffw:sched:{fp:N}:due`` — the partition's active schedules, scored by
  when their next tick fires (what the scheduler role scans);
* ``ffw:sched:{fp:N}:all`` — every schedule id of the partition (listing).

The executions a schedule creates live where any execution of their lane
lives; the schedule only names the last one (``last_eid``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.function import FCall, as_str
from flowfabric_worker.protocol.partitions import DEFAULT_PARTITIONS, PartitionConfig, crc16, tag

__all__ = [
    "ScheduleAdvance",
    "ScheduleDelete",
    "ScheduleKeys",
    "ScheduleRecord",
    "ScheduleSetState",
    "ScheduleUpsert",
    "schedule_tag",
]


def schedule_tag(schedule_id: str, config: PartitionConfig = DEFAULT_PARTITIONS) -> str:
    """The ``fp`` partition tag a schedule lives on: CRC-16 of its id."""
    return tag("fp", crc16(schedule_id.encode()) % config.num_flow_partitions)


class ScheduleKeys:
    __slots__ = ("sid", "tag")

    def __init__(self, tag: str, schedule_id: str = "") -> None:
        self.tag = tag
        self.sid = schedule_id

    @property
    def record(self) -> str:
        return f"ffw:sched:{self.tag}:{self.sid}"

    @property
    def due(self) -> str:
        return f"ffw:sched:{self.tag}:due"

    @property
    def all(self) -> str:
        return f"ffw:sched:{self.tag}:all"


class ScheduleRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored schedule, as ``HGETALL`` of its record returns it."""

    id: str
    namespace: str = ""
    task: str = ""
    lane: str = "default"
    priority: int = 0
    policy: str = "{}"
    payload: bytes = b""
    tags: str = ""
    deadline_ms: int = 0
    budget_ids: str = ""
    quota_id: str = ""
    spec: str = ""
    overlap: str = "allow"
    catchup: str = "skip"
    catchup_limit: int = 100
    state: str = "active"
    source: str = "client"
    next_tick: int | None = None
    next_fire: int | None = None
    last_tick: int | None = None
    last_eid: str = ""
    fired: int = 0
    skipped: int = 0
    created_at: int = 0
    updated_at: int = 0

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> ScheduleRecord | None:
        if not raw:
            return None
        text = {as_str(k): v for k, v in raw.items()}

        def s(name: str, default: str = "") -> str:
            v = text.get(name)
            return as_str(v) if v is not None else default

        def i(name: str, default: int | None = 0) -> int | None:
            v = s(name)
            return int(v) if v.lstrip("-").isdigit() else default

        payload = text.get("payload", b"")
        return cls(
            id=s("id"), namespace=s("namespace"), task=s("task"), lane=s("lane", "default"),
            priority=i("priority") or 0, policy=s("policy", "{}"),
            payload=payload if isinstance(payload, bytes) else as_str(payload).encode(),
            tags=s("tags"), deadline_ms=i("deadline_ms") or 0, budget_ids=s("budget_ids"),
            quota_id=s("quota_id"), spec=s("spec"), overlap=s("overlap", "allow"),
            catchup=s("catchup", "skip"), catchup_limit=i("catchup_limit", 100) or 100,
            state=s("state", "active"), source=s("source", "client"),
            next_tick=i("next_tick", None), next_fire=i("next_fire", None),
            last_tick=i("last_tick", None), last_eid=s("last_eid"), fired=i("fired") or 0,
            skipped=i("skipped") or 0, created_at=i("created_at") or 0,
            updated_at=i("updated_at") or 0)


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


class ScheduleUpsert(FCall[str], frozen=True, kw_only=True):
    """Create a schedule, or update it in place. An update keeps the state
    (a paused schedule stays paused) and, when the time plan (``spec``) is
    unchanged, the next tick; a changed plan takes ``next_tick`` /
    ``next_fire``. ``only_new``: refuse (``schedule_exists``) if it exists.
    Reply: ``created`` | ``updated``."""

    NAME: ClassVar[str] = "ffw_schedule_upsert"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    tag: str
    schedule_id: str
    fields: dict[str, str | bytes]
    spec: str
    next_tick: int | None
    next_fire: int | None
    only_new: bool = False

    def __post_init__(self) -> None:
        if not self.schedule_id or not self.spec:
            raise InvalidInput("a schedule needs an id and a spec")
        if (self.next_tick is None) != (self.next_fire is None):
            raise InvalidInput("next_tick and next_fire go together")

    def keys(self) -> list[str]:
        k = ScheduleKeys(self.tag, self.schedule_id)
        return [k.record, k.due, k.all]

    def argv(self) -> list[str | bytes]:
        out: list[str | bytes] = [self.schedule_id, self.spec, _opt(self.next_tick),
                                  _opt(self.next_fire), "1" if self.only_new else "0"]
        for name, value in self.fields.items():
            out += [name, value]
        return out

    def decode(self, reply: Any) -> str:
        return self.envelope(reply).field(0)


class ScheduleAdvance(FCall[str], frozen=True, kw_only=True):
    """Move a schedule past the tick it fired, if it is still at
    ``expected_tick`` (compare-and-set: of several processes that fired the
    same tick, one advances, the others get ``stale``). ``next_tick`` None:
    the plan has ended. Reply: ``advanced`` | ``stale`` | ``absent``."""

    NAME: ClassVar[str] = "ffw_schedule_advance"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    tag: str
    schedule_id: str
    expected_tick: int
    next_tick: int | None
    next_fire: int | None
    last_tick: int | None = None
    last_eid: str = ""
    fired: int = 0
    skipped: int = 0

    def keys(self) -> list[str]:
        k = ScheduleKeys(self.tag, self.schedule_id)
        return [k.record, k.due]

    def argv(self) -> list[str | bytes]:
        return [self.schedule_id, str(self.expected_tick), _opt(self.next_tick),
                _opt(self.next_fire), _opt(self.last_tick), self.last_eid,
                str(self.fired), str(self.skipped)]

    def decode(self, reply: Any) -> str:
        return self.envelope(reply).field(0)


class ScheduleSetState(FCall[str], frozen=True, kw_only=True):
    """Pause or resume a schedule. Resuming starts from ``next_tick`` (the
    first tick after now: ticks of the pause are not caught up). Refused
    with ``schedule_not_found``. Reply: the state it had before."""

    NAME: ClassVar[str] = "ffw_schedule_set_state"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    tag: str
    schedule_id: str
    state: Literal["active", "paused"]
    next_tick: int | None = None
    next_fire: int | None = None

    def __post_init__(self) -> None:
        if self.state not in ("active", "paused"):
            raise InvalidInput(f"state must be active or paused, not {self.state!r}")

    def keys(self) -> list[str]:
        k = ScheduleKeys(self.tag, self.schedule_id)
        return [k.record, k.due]

    def argv(self) -> list[str | bytes]:
        return [self.schedule_id, self.state, _opt(self.next_tick), _opt(self.next_fire)]

    def decode(self, reply: Any) -> str:
        return self.envelope(reply).field(0)


class ScheduleDelete(FCall[bool], frozen=True, kw_only=True):
    """Delete a schedule (executions it created are left alone). Reply:
    whether it existed."""

    NAME: ClassVar[str] = "ffw_schedule_delete"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    tag: str
    schedule_id: str

    def keys(self) -> list[str]:
        k = ScheduleKeys(self.tag, self.schedule_id)
        return [k.record, k.due, k.all]

    def argv(self) -> list[str | bytes]:
        return [self.schedule_id]

    def decode(self, reply: Any) -> bool:
        return self.envelope(reply).field(0) == "deleted"
