"""Helpers for suspend/signal tests: keystore bootstrap through the library's
rotation function, and signal delivery straight through the backend (the way
a signal bridge does it: waitpoint and token read from the records)."""

from __future__ import annotations

import json
from typing import Any

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.ids import execution_tag, new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.partitions import tag
from flowfabric_worker.protocol.signals import (
    BufferSignal,
    DeliverSignal,
    RotateHmacSecret,
    SignalResult,
    Token,
)

SECRET = "5f0e1d2c3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"


async def seed_keystore(b: Backend, kid: str = "k1") -> None:
    """Install the first signing kid on every partition (spec 03 §2.1, §5.6)."""
    n = b.partitions.num_flow_partitions
    results = await b.call_many([RotateHmacSecret(tag=tag("fp", p), new_kid=kid,
                                                  new_secret_hex=SECRET) for p in range(n)])
    assert not [r for r in results if isinstance(r, Exception)]


async def hfield(b: Backend, key: str, name: str) -> str:
    v = await b.redis.hget(key, name)
    return v.decode() if v is not None else ""


async def current_waitpoint(b: Backend, eid: str) -> str:
    return await hfield(b, ExecKeys(eid).core, "current_waitpoint_id")


async def deliver(b: Backend, eid: str, name: str, payload: Any = None, *,
                  waitpoint_id: str | None = None, idempotency_key: str = "",
                  source: str = "test") -> SignalResult:
    """Deliver to the execution's current (or the given) waitpoint."""
    wp = waitpoint_id or await current_waitpoint(b, eid)
    assert wp, f"{eid} has no current waitpoint"
    token = await b.waitpoint_token(execution_tag(eid), wp)
    lane = await hfield(b, ExecKeys(eid).core, "lane_id")
    return await b.call(DeliverSignal(
        eid=eid, waitpoint_id=wp, signal_name=name, token=Token(token), lane=lane,
        signal_id=new_uuid(), source_identity=source, idempotency_key=idempotency_key,
        payload=b"" if payload is None else json.dumps(payload).encode()))


async def buffer(b: Backend, eid: str, waitpoint_id: str, token: Token, name: str,
                 payload: Any = None) -> SignalResult:
    """Signal a waitpoint that is still pending (the task has not waited yet)."""
    return await b.call(BufferSignal(
        eid=eid, waitpoint_id=waitpoint_id, signal_name=name, token=token,
        signal_id=new_uuid(), payload=b"" if payload is None else json.dumps(payload).encode()))
