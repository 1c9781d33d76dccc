"""Identifier rules (spec 01 §2)."""

from __future__ import annotations

import pytest

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.ids import (
    execution_tag,
    mint_execution_id,
    parse_execution_id,
    partition_of,
    validate_capability,
    validate_lane,
    validate_uuid,
    validate_worker_id,
)

U = "3b1f0c2e-6a4d-4e2b-9d7c-0f5a1c2b3d4e"


@pytest.mark.parametrize("eid", [f"{{fp:86}}:{U}", f"{{fp:0}}:{U}", f"{{fp:65535}}:{U}"])
def test_valid_execution_ids_are_kept_verbatim(eid: str) -> None:
    assert parse_execution_id(eid) == eid


@pytest.mark.parametrize(
    "eid",
    [
        U,  # missing tag
        f"{{fp:086}}:{U}",  # leading zero
        f"{{fp:+86}}:{U}",
        f"{{fp:65536}}:{U}",  # above u16
        f"{{fp:86}}:{U.upper()}",
        f"{{b:3}}:{U}",
        f"{{fp:86}}{U}",
        f"{{fp:86}}:{U}x",
        f"{{fp:86}}:{U.replace('-', '')}",
        "",
    ],
)
def test_invalid_execution_ids(eid: str) -> None:
    with pytest.raises(InvalidInput):
        parse_execution_id(eid)


def test_partition_and_tag_are_read_from_the_id() -> None:
    eid = f"{{fp:123}}:{U}"
    assert partition_of(eid) == 123
    assert execution_tag(eid) == "{fp:123}"


def test_minting() -> None:
    solo = mint_execution_id(lane_id="default")
    assert solo.startswith("{fp:86}:") and parse_execution_id(solo) == solo
    member = mint_execution_id(flow_id="11111111-2222-4333-8444-555555555555")
    assert member.startswith("{fp:101}:")
    fixed = mint_execution_id(lane_id="gpu", uuid_text=U)
    assert fixed == f"{{fp:144}}:{U}"
    assert mint_execution_id(lane_id="x") != mint_execution_id(lane_id="x")
    with pytest.raises(InvalidInput):
        mint_execution_id()
    with pytest.raises(InvalidInput):
        mint_execution_id(flow_id="not-a-uuid")


def test_uuid_validation() -> None:
    assert validate_uuid(U) == U
    for bad in (U.upper(), U[:-1], "x" * 36, ""):
        with pytest.raises(InvalidInput):
            validate_uuid(bad)


@pytest.mark.parametrize("lane", ["default", "a b", "x" * 64, "~!@#"])
def test_valid_lanes(lane: str) -> None:
    assert validate_lane(lane) == lane


@pytest.mark.parametrize("lane", ["", "x" * 65, "a\tb", "é", "a\x7f"])
def test_invalid_lanes(lane: str) -> None:
    with pytest.raises(InvalidInput):
        validate_lane(lane)


@pytest.mark.parametrize("wid", ["pool", "pool-" + U, "x" * 256, "ünïcode"])
def test_valid_worker_ids(wid: str) -> None:
    assert validate_worker_id(wid) == wid


@pytest.mark.parametrize("wid", ["", "a b", "a\nb", "x" * 257, "é" * 129, "a\u00a0b"])
def test_invalid_worker_ids(wid: str) -> None:
    with pytest.raises(InvalidInput):
        validate_worker_id(wid)


@pytest.mark.parametrize("cap", ["gpu", "GPU", "region=eu", "ü"])
def test_valid_capabilities(cap: str) -> None:
    assert validate_capability(cap) == cap


@pytest.mark.parametrize("cap", ["", "a,b", "a b", "a\x7f", "a\x00", "a\u2003b", "a\u200bb"])
def test_invalid_capabilities(cap: str) -> None:
    with pytest.raises(InvalidInput):
        validate_capability(cap)
