"""What ``ff_create_execution`` stores, field by field (the 0.15 contract's
record, spec 02 §3.1), and its policy memo: the caps of a policy text are
remembered between calls, which must never change what a call stores or
whether it is refused."""

from __future__ import annotations

import json
import time

import pytest
from lifecycle_support import LANE, b, core, create, new_eid

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import FlowFabricError
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import CreateExecution

pytestmark = pytest.mark.anyio
__all__ = ["b"]

# Every field of a fresh record with its value; None = a server timestamp.
_RECORD = {
    "execution_id": "", "namespace": "ns", "lane_id": LANE, "execution_kind": "k",
    "partition_id": "", "priority": "7", "creator_identity": "me",
    "lifecycle_phase": "runnable", "ownership_state": "unowned", "terminal_outcome": "none",
    "attempt_state": "pending_first_attempt", "total_attempt_count": "0",
    "current_attempt_index": "", "current_attempt_id": "", "current_lease_id": "",
    "current_lease_epoch": "0", "current_worker_id": "", "current_worker_instance_id": "",
    "current_lane": LANE, "retry_count": "0", "replay_count": "0", "lease_reclaim_count": "0",
    "created_at": None, "started_at": "", "completed_at": "", "last_transition_at": None,
    "last_mutation_at": None, "lease_acquired_at": "", "lease_expires_at": "",
    "lease_last_renewed_at": "", "lease_renewal_deadline": "", "lease_expired_at": "",
    "lease_revoked_at": "", "lease_revoke_reason": "", "current_suspension_id": "",
    "current_waitpoint_id": "", "pending_retry_reason": "", "pending_replay_reason": "",
    "pending_replay_requested_by": "", "pending_previous_attempt_index": "",
    "progress_pct": "", "progress_message": "", "progress_updated_at": "", "flow_id": "",
}
_ELIGIBLE = {"eligibility_state": "eligible_now", "blocking_reason": "waiting_for_worker",
             "blocking_detail": "", "public_state": "waiting", "delay_until": ""}


def _check(record: dict[str, str], expected: dict[str, str | None]) -> None:
    assert set(record) == set(expected)
    for field, value in expected.items():
        if value is None:
            assert record[field].isdigit(), field
        else:
            assert record[field] == value, field
    assert record["created_at"] == record["last_transition_at"] == record["last_mutation_at"]


async def test_an_eligible_record_has_exactly_the_contract_fields(b: Backend) -> None:
    eid = new_eid()
    policy = json.dumps({"routing_requirements": {"required_capabilities": ["gpu", "avx"]}})
    await create(b, eid, priority=7, creator_identity="me", policy_json=policy,
                 tags_json='{"team": "a", "n": 3}', partition_id=5)
    record = await core(b, eid)
    _check(record, {**_RECORD, **_ELIGIBLE, "execution_id": eid, "partition_id": "5",
                    "required_capabilities": "avx,gpu"})
    k = ExecKeys(eid)
    score = await b.redis.zscore(k.lane_eligible(LANE), eid)
    assert score == -7 * 10**12 + int(record["created_at"])
    assert await b.redis.get(k.policy) == policy.encode()
    assert await b.redis.hgetall(k.tags) == {b"team": b"a", b"n": b"3"}


async def test_a_delayed_record_has_exactly_the_contract_fields(b: Backend) -> None:
    eid = new_eid()
    until = int(time.time() * 1000) + 60_000
    await create(b, eid, priority=7, creator_identity="me", delay_until=until, partition_id=5)
    record = await core(b, eid)
    _check(record, {**_RECORD, "execution_id": eid, "partition_id": "5",
                    "eligibility_state": "not_eligible_until_time",
                    "blocking_reason": "waiting_for_delay",
                    "blocking_detail": f"delayed until {until}", "public_state": "delayed",
                    "delay_until": str(until)})
    assert await b.redis.zscore(ExecKeys(eid).lane_delayed(LANE), eid) == until


async def test_remembered_policies_give_each_call_its_own_caps(b: Backend) -> None:
    gpu = json.dumps({"routing_requirements": {"required_capabilities": ["gpu"]}})
    plain = json.dumps({"max_replay_count": 3})
    # More distinct policies than the memo holds, then the first ones again.
    others = [json.dumps({"routing_requirements": {"required_capabilities": [f"c{i}"]}})
              for i in range(70)]
    for policy, caps in [(gpu, "gpu"), (plain, None), *((p, f"c{i}") for i, p in enumerate(others)),
                         (gpu, "gpu"), (plain, None), (others[0], "c0")]:
        eid = await create(b, policy_json=policy)
        assert (await core(b, eid)).get("required_capabilities") == caps


async def test_a_refused_policy_is_refused_every_time(b: Backend) -> None:
    bad = '{"routing_requirements": {"required_capabilities": ["a b"]}}'
    for _ in range(3):
        eid = new_eid()
        with pytest.raises(FlowFabricError):
            await b.call(CreateExecution(eid=eid, lane_id=LANE, policy_json=bad))
        assert not await b.redis.exists(ExecKeys(eid).core)
