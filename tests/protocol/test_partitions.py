"""Partition math: spec 01 §1.2 worked examples and §1.3 slots."""

from __future__ import annotations

import uuid

import pytest

from flowfabric_worker.protocol.partitions import (
    PartitionConfig,
    budget_tag,
    crc16,
    flow_partition,
    flow_tag,
    quota_tag,
    solo_partition,
    tag,
)


def test_crc16_check_value() -> None:
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@pytest.mark.parametrize(
    ("u", "crc", "fp", "bq"),
    [
        ("550e8400-e29b-41d4-a716-446655440000", 0x9018, 24, 24),
        ("00000000-0000-0000-0000-000000000000", 0x0000, 0, 0),
        ("11111111-2222-4333-8444-555555555555", 0x9165, 101, 5),
        ("ffffffff-ffff-4fff-8fff-ffffffffffff", 0xF9E2, 226, 2),
    ],
)
def test_uuid_examples_hash_the_raw_bytes(u: str, crc: int, fp: int, bq: int) -> None:
    assert crc16(uuid.UUID(u).bytes) == crc
    assert flow_partition(u) == fp
    assert flow_tag(u) == f"{{fp:{fp}}}"
    assert budget_tag(u) == f"{{b:{bq}}}"
    assert quota_tag(u) == f"{{q:{bq}}}"


def test_text_hash_would_be_wrong() -> None:
    u = "550e8400-e29b-41d4-a716-446655440000"
    assert crc16(u.encode()) % 256 != 24
    assert flow_partition(uuid.UUID(u)) == 24


@pytest.mark.parametrize(
    ("lane", "crc", "fp"),
    [("default", 0xD656, 86), ("workers-a", 0x2EC1, 193), ("gpu", 0x3890, 144)],
)
def test_solo_lane_examples(lane: str, crc: int, fp: int) -> None:
    assert crc16(lane.encode()) == crc
    assert solo_partition(lane) == fp


@pytest.mark.parametrize(
    ("t", "slot"),
    [("{fp:0}", 14926), ("{fp:7}", 2729), ("{fp:42}", 2824), ("{b:3}", 6501), ("{q:5}", 9104)],
)
def test_cluster_slot_of_tags(t: str, slot: int) -> None:
    assert crc16(t[1:-1].encode()) % 16384 == slot


def test_tag_text() -> None:
    assert tag("fp", 7) == "{fp:7}"
    assert tag("b", 0) == "{b:0}"
    assert tag("q", 31) == "{q:31}"


def test_counts_from_hash_and_fallbacks() -> None:
    cfg = PartitionConfig.from_hash({b"num_flow_partitions": b"64", b"num_budget_partitions": b"0",
                                     b"num_quota_partitions": b"x"})
    assert cfg == PartitionConfig(64, 32, 32)
    assert PartitionConfig.from_hash({}) == PartitionConfig(256, 32, 32)
    assert solo_partition("default", cfg) == 0xD656 % 64
    assert flow_partition("11111111-2222-4333-8444-555555555555", cfg) == 0x9165 % 64
