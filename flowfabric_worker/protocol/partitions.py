"""Partition math (spec 01 §1): CRC-16/XMODEM, partition counts and hash tags."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_PARTITIONS",
    "PartitionConfig",
    "budget_tag",
    "crc16",
    "flow_partition",
    "flow_tag",
    "quota_tag",
    "solo_partition",
    "tag",
]


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_TABLE = _table()


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (poly 0x1021, init 0, no reflection) — Redis Cluster's CRC."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True)
class PartitionConfig:
    """Partition counts of a deployment (``ff:config:partitions``)."""

    num_flow_partitions: int = 256
    num_budget_partitions: int = 32
    num_quota_partitions: int = 32

    @classmethod
    def from_hash(cls, fields: Mapping[Any, Any]) -> PartitionConfig:
        """Parse the stored hash; a missing, zero or unparsable field falls back to
        its default (spec 01 §1.1)."""
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }

        def pick(name: str, default: int) -> int:
            try:
                value = int(decoded.get(name, ""))
            except ValueError:
                return default
            return value if 1 <= value <= 65535 else default

        return cls(
            num_flow_partitions=pick("num_flow_partitions", 256),
            num_budget_partitions=pick("num_budget_partitions", 32),
            num_quota_partitions=pick("num_quota_partitions", 32),
        )


DEFAULT_PARTITIONS = PartitionConfig()


def tag(prefix: str, index: int) -> str:
    """The hash tag of partition ``index`` of a family: ``{fp:7}``."""
    return f"{{{prefix}:{index}}}"


def flow_partition(flow_id: str | uuid.UUID, config: PartitionConfig = DEFAULT_PARTITIONS) -> int:
    """Partition of a flow: CRC-16 of the UUID's 16 raw bytes (not its text)."""
    u = flow_id if isinstance(flow_id, uuid.UUID) else uuid.UUID(flow_id)
    return crc16(u.bytes) % config.num_flow_partitions


def solo_partition(lane_id: str, config: PartitionConfig = DEFAULT_PARTITIONS) -> int:
    """Partition of an execution that belongs to no flow: CRC-16 of its lane id."""
    return crc16(lane_id.encode("utf-8")) % config.num_flow_partitions


def flow_tag(flow_id: str | uuid.UUID, config: PartitionConfig = DEFAULT_PARTITIONS) -> str:
    return tag("fp", flow_partition(flow_id, config))


def budget_tag(budget_id: str | uuid.UUID, config: PartitionConfig = DEFAULT_PARTITIONS) -> str:
    u = budget_id if isinstance(budget_id, uuid.UUID) else uuid.UUID(budget_id)
    return tag("b", crc16(u.bytes) % config.num_budget_partitions)


def quota_tag(quota_id: str | uuid.UUID, config: PartitionConfig = DEFAULT_PARTITIONS) -> str:
    u = quota_id if isinstance(quota_id, uuid.UUID) else uuid.UUID(quota_id)
    return tag("q", crc16(u.bytes) % config.num_quota_partitions)
