"""Identifiers (spec 01 §2): execution ids and the validation rules for the
strings that end up inside key names."""

from __future__ import annotations

import os
import re
import uuid

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.partitions import (
    DEFAULT_PARTITIONS,
    PartitionConfig,
    flow_partition,
    solo_partition,
)

__all__ = [
    "ExecutionId",
    "execution_tag",
    "mint_execution_id",
    "new_uuid",
    "new_uuids",
    "parse_execution_id",
    "partition_of",
    "validate_capability",
    "validate_lane",
    "validate_uuid",
    "validate_worker_id",
]

ExecutionId = str
"""An execution id in canonical text form ``{fp:N}:<uuid>``; used verbatim in keys."""

_EID = re.compile(
    r"^\{fp:(0|[1-9][0-9]{0,4})\}:"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_uuid() -> str:
    """A fresh random UUID in canonical lowercase text."""
    return str(uuid.uuid4())


def new_uuids(n: int) -> list[str]:
    """``n`` fresh random version-4 UUIDs in canonical text, from one
    ``urandom`` call: :func:`new_uuid` for each lease and attempt id of a
    claim was ~2% of a no-op drain's CPU."""
    raw = bytearray(os.urandom(16 * n))
    out = []
    for i in range(0, 16 * n, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40  # version 4
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw[i:i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def parse_execution_id(text: str) -> ExecutionId:
    """Validate an execution id (the strict Python rule of spec 01 §2.1)."""
    if not isinstance(text, str):
        raise InvalidInput(f"execution id must be a string, got {type(text).__name__}")
    m = _EID.match(text)
    if m is None:
        if _UUID.match(text.lower()):
            raise InvalidInput(f"invalid execution id {text!r}: missing the {{fp:N}} tag")
        raise InvalidInput(
            f"invalid execution id {text!r}: expected {{fp:N}}:<lowercase uuid>"
        )
    if int(m.group(1)) > 65535:
        raise InvalidInput(f"invalid execution id {text!r}: partition above 65535")
    return text


def partition_of(eid: ExecutionId) -> int:
    """The partition index carried by an execution id (never recomputed)."""
    return int(eid[4 : eid.index("}")])


def execution_tag(eid: ExecutionId) -> str:
    """The ``{fp:N}`` tag of an execution id."""
    return eid[: eid.index("}") + 1]


def mint_execution_id(
    *,
    lane_id: str | None = None,
    flow_id: str | None = None,
    config: PartitionConfig = DEFAULT_PARTITIONS,
    uuid_text: str | None = None,
) -> ExecutionId:
    """Mint an id on the flow's partition (flow member) or the lane's (solo)."""
    if flow_id is not None:
        index = flow_partition(validate_uuid(flow_id, "flow id"), config)
    elif lane_id is not None:
        index = solo_partition(validate_lane(lane_id), config)
    else:
        raise InvalidInput("mint_execution_id needs a lane_id or a flow_id")
    u = validate_uuid(uuid_text, "uuid") if uuid_text is not None else new_uuid()
    return f"{{fp:{index}}}:{u}"


def validate_uuid(text: str, what: str = "id") -> str:
    """A canonical lowercase UUID text, or :class:`InvalidInput`."""
    if not isinstance(text, str) or not _UUID.match(text):
        raise InvalidInput(f"invalid {what} {text!r}: expected a lowercase hyphenated UUID")
    return text


def validate_lane(lane: str) -> str:
    """Lane ids: 1–64 bytes of printable ASCII (0x20..0x7E)."""
    if not isinstance(lane, str):
        raise InvalidInput("lane id must be a string")
    raw = lane.encode("utf-8", "surrogatepass")
    if not 1 <= len(raw) <= 64 or any(b < 0x20 or b > 0x7E for b in raw):
        raise InvalidInput(f"invalid lane id {lane!r}: 1-64 printable ASCII characters")
    return lane


def validate_worker_id(value: str, what: str = "worker id") -> str:
    """Worker ids, instance ids and namespaces: 1–256 bytes, no whitespace or
    control characters."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    raw = value.encode("utf-8", "surrogatepass")
    if not 1 <= len(raw) <= 256 or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidInput(
            f"invalid {what} {value!r}: 1-256 bytes, no whitespace or control characters"
        )
    return value


def validate_capability(token: str) -> str:
    """A capability token a worker advertises (spec 01 §2.2, worker-side rule)."""
    if not isinstance(token, str) or not token:
        raise InvalidInput("capability token must be a non-empty string")
    if "," in token:
        raise InvalidInput(f"invalid capability {token!r}: contains ','")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c.isspace() or not c.isprintable() for c in token):
        raise InvalidInput(
            f"invalid capability {token!r}: whitespace or control character"
        )
    return token
