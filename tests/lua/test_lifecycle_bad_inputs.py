"""Inputs the reference library crashes on or half-commits (spec 02 §9):
our Lua answers a typed error and writes nothing (key census before/after)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from lifecycle_support import LANE, WIID, WORKER, b, census, claim, create, new_eid

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.function import FCall, as_str
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import (
    ClaimExecution,
    CreateExecution,
    DelayExecution,
    FailExecution,
    IssueClaimGrant,
)
from flowfabric_worker.protocol.maintenance import IssueReclaimGrant, ReclaimExecution
from flowfabric_worker.protocol.operator import RevokeLease

pytestmark = pytest.mark.anyio
__all__ = ["b"]


async def raw_call(b: Backend, fn: FCall[Any], **override: str) -> list[Any]:
    """FCALL ``fn`` with some ARGV positions (1-based, ``a<N>``) replaced."""
    keys = list(fn.keys())
    argv = list(fn.argv())
    for name, value in override.items():
        argv[int(name[1:]) - 1] = value
    reply = await b.redis.execute_command("FCALL", fn.NAME, len(keys), *keys, *argv)
    return [reply[0], *(as_str(v) for v in reply[1:])]


async def assert_refused_clean(b: Backend, fn: FCall[Any], code: str, **override: str) -> None:
    before = await census(b.redis)
    reply = await raw_call(b, fn, **override)
    assert reply[0] == 0 and reply[1] == code, reply
    assert await census(b.redis) == before


def _create(eid: str) -> CreateExecution:
    return CreateExecution(eid=eid, lane_id=LANE, namespace="ns")


async def test_create_non_numeric_delay(b: Backend) -> None:
    await assert_refused_clean(b, _create(new_eid()), "invalid_input", a9="soon")


async def test_create_non_numeric_deadline(b: Backend) -> None:
    await assert_refused_clean(b, _create(new_eid()), "invalid_input", a12="1e99x")


async def test_create_nested_tags(b: Backend) -> None:
    await assert_refused_clean(b, _create(new_eid()), "invalid_input", a11='{"a": {"b": 1}}')


async def test_create_non_numeric_priority(b: Backend) -> None:
    await assert_refused_clean(b, _create(new_eid()), "invalid_input", a5="high")


@pytest.mark.parametrize(("policy", "code"), [
    ('{"routing_requirements": null}', "invalid_policy_json"),
    ('{"routing_requirements": {"required_capabilities": null}}', "invalid_capabilities"),
    ('{"routing_requirements": {"required_capabilities": ["a b"]}}', "invalid_capabilities"),
    ("{not json", "invalid_policy_json"),
])
async def test_create_bad_policy(b: Backend, policy: str, code: str) -> None:
    await assert_refused_clean(b, _create(new_eid()), code, a7=policy)


async def test_create_past_delay_with_delayed_key_is_filed_eligible(b: Backend) -> None:
    eid = new_eid()
    fn = CreateExecution(eid=eid, lane_id=LANE, delay_until=int(time.time() * 1000) + 10_000)
    reply = await raw_call(b, fn, a9=str(int(time.time() * 1000) - 1000))
    assert reply[:4] == [1, "OK", eid, "waiting"]
    k = ExecKeys(eid)
    assert await b.redis.zscore(k.lane_eligible(LANE), eid) is not None
    assert await b.redis.zscore(k.lane_delayed(LANE), eid) is None


async def _granted(b: Backend) -> tuple[str, ClaimExecution]:
    eid = await create(b)
    await b.call(IssueClaimGrant(eid=eid, lane_id=LANE, worker_id=WORKER))
    fn = ClaimExecution(eid=eid, lane_id=LANE, worker_id=WORKER, worker_instance_id=WIID,
                        lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=1000)
    return eid, fn


@pytest.mark.parametrize("override", [
    {"a10": "[not json"}, {"a10": "5"}, {"a11": "ten"}, {"a12": "tomorrow"}, {"a7": "x"},
])
async def test_claim_bad_inputs(b: Backend, override: dict[str, str]) -> None:
    _, fn = await _granted(b)
    await assert_refused_clean(b, fn, "invalid_input", **override)


async def test_fail_null_max_retries(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    fn = FailExecution(eid=eid, lane_id=LANE, attempt_index=0, worker_instance_id=WIID,
                       lease_id=c.lease_id, lease_epoch=1, attempt_id=c.attempt_id)
    await assert_refused_clean(b, fn, "invalid_input", a7='{"max_retries": null}')
    await assert_refused_clean(b, fn, "invalid_input", a7='{"max_retries": "3"}')


async def test_delay_non_numeric(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    fn = DelayExecution(eid=eid, lane_id=LANE, attempt_index=0, worker_instance_id=WIID,
                        lease_id=c.lease_id, lease_epoch=1, attempt_id=c.attempt_id,
                        delay_until=1)
    await assert_refused_clean(b, fn, "invalid_input", a5="later")


async def test_reclaim_non_numeric_cap(b: Backend) -> None:
    eid = await create(b)
    await claim(b, eid)
    await b.call(RevokeLease(eid=eid, worker_instance_id=WIID))
    await b.call(IssueReclaimGrant(eid=eid, lane_id=LANE, worker_id="w2"))
    fn = ReclaimExecution(eid=eid, lane_id=LANE, worker_id="w2", worker_instance_id="w2-i",
                          lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=1000,
                          old_attempt_index=0)
    await assert_refused_clean(b, fn, "invalid_input", a9="many")


async def test_leading_zero_epoch_is_stale(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    fn = FailExecution(eid=eid, lane_id=LANE, attempt_index=0, worker_instance_id=WIID,
                       lease_id=c.lease_id, lease_epoch=1, attempt_id=c.attempt_id)
    await assert_refused_clean(b, fn, "stale_lease", a3="01")
