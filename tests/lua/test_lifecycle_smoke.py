"""Full happy path on both backends: create -> grant -> claim -> renew -> progress -> complete."""

from __future__ import annotations

import pytest
from lifecycle_support import LANE, WIID, b, claim, core, create

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import CompleteExecution, RenewLease, UpdateProgress

pytestmark = pytest.mark.anyio
__all__ = ["b"]


async def test_full_lifecycle(b: Backend) -> None:
    eid = await create(b, priority=5)
    c = await claim(b, eid)
    assert (c.lease_epoch, c.attempt_index, c.attempt_type) == (1, 0, "initial")
    r = await b.call(RenewLease(
        eid=eid, attempt_index=0, attempt_id=c.attempt_id, lease_id=c.lease_id,
        lease_epoch=1, lease_ttl_ms=60_000,
    ))
    assert r.lease_expires_at > c.lease_expires_at
    await b.call(UpdateProgress(eid=eid, lease_id=c.lease_id, lease_epoch=1, progress_pct="50"))
    done = await b.call(CompleteExecution(
        eid=eid, lane_id=LANE, attempt_index=0, worker_instance_id=WIID,
        lease_id=c.lease_id, lease_epoch=1, attempt_id=c.attempt_id, result_payload=b"r",
    ))
    assert done.status == "completed"
    st = await core(b, eid)
    assert st["public_state"] == "completed" and st["progress_pct"] == "50"
    k = ExecKeys(eid)
    assert await b.redis.get(k.result) == b"r"
    assert await b.redis.zscore(k.lane_terminal(LANE), eid) is not None
