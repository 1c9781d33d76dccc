"""ffw_claim_candidates: a partition's eligible heads with their pre-read, in
one read-only call (issue 18: one round trip fewer on the claim path)."""

from __future__ import annotations

import pytest
from lifecycle_support import LANE, b, census, claim, create

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.claim_candidates import ClaimCandidates
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.partitions import solo_partition

pytestmark = pytest.mark.anyio
__all__ = ["b"]

FIELDS = ("lifecycle_phase", "eligibility_state", "total_attempt_count", "execution_kind")


def _call(limit: int = 8, fields: tuple[str, ...] = FIELDS) -> ClaimCandidates:
    return ClaimCandidates(lane=LANE, partition=solo_partition(LANE), limit=limit,
                           fields=fields)


async def test_heads_in_index_order_with_payload_and_tags(b: Backend) -> None:
    low = await create(b, input_payload=b"\x00low", priority=1, tags_json='{"k":"v","n":2}')
    high = await create(b, input_payload=b"high", priority=9)
    got = await b.call(_call())
    assert [c.eid for c in got] == [high, low]
    assert got[0].payload == b"high" and got[0].tags == {}
    assert got[1].payload == b"\x00low" and got[1].tags == {"k": "v", "n": "2"}
    assert got[1].core == {"lifecycle_phase": "runnable", "eligibility_state": "eligible_now",
                           "total_attempt_count": "0", "execution_kind": "k"}
    assert [c.eid for c in await b.call(_call(limit=1))] == [high]


async def test_reads_nothing_more_for_a_head_that_is_not_claimable(b: Backend) -> None:
    eid = await create(b, input_payload=b"p")
    await claim(b, eid)
    # A stale member of the index (claimed meanwhile; the index is put back
    # by hand here): its fields show it, payload and tags are not read.
    await b.redis.zadd(ExecKeys(eid).lane_eligible(LANE), {eid: 0})
    gone = await create(b)
    await b.redis.delete(ExecKeys(gone).core)
    got = {c.eid: c for c in await b.call(_call())}
    assert got[eid].core["lifecycle_phase"] == "active"
    assert got[eid].payload == b"" and got[eid].tags == {}
    assert got[gone].core == dict.fromkeys(FIELDS, "")


async def test_writes_nothing_and_refuses_bad_input(b: Backend) -> None:
    await create(b, input_payload=b"p", tags_json='{"a":"b"}')
    before = await census(b.redis)
    await b.call(_call())
    assert await census(b.redis) == before
    key = ExecKeys(await create(b)).lane_eligible(LANE)
    before = await census(b.redis)
    for argv in (["0", "lifecycle_phase", "eligibility_state"], ["x", "lifecycle_phase"],
                 ["1001", "lifecycle_phase", "eligibility_state"], ["3", "lifecycle_phase"]):
        reply = await b.redis.execute_command("FCALL", "ffw_claim_candidates", 1, key, *argv)
        assert reply[:2] == [0, b"invalid_input"], argv
    assert await census(b.redis) == before
    with pytest.raises(InvalidInput):
        _call(limit=0)
    with pytest.raises(InvalidInput):
        _call(fields=("lifecycle_phase",))
    with pytest.raises(ContractError):
        _call().decode([0, b"invalid_input", b"x"])
