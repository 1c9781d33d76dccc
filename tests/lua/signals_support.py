"""Helpers for the signal / suspension Lua tests."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from lifecycle_support import LANE, WIID, claim, create

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import ExecKeys, PartitionKeys
from flowfabric_worker.protocol.lifecycle import ClaimResult
from flowfabric_worker.protocol.signals import (
    BufferSignal,
    DeliverSignal,
    SignalResult,
    SuspendExecution,
    SuspendResult,
    WaitpointBinding,
)

SECRET = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


async def seed_keystore(b: Backend, eid: str, kid: str = "k1", secret: str = SECRET) -> None:
    await b.redis.hset(ExecKeys(eid).hmac_keystore,
                       mapping={"current_kid": kid, f"secret:{kid}": secret})


def expected_token(secret: str, kid: str, wp_id: str, wp_key: str, created_at: str) -> str:
    msg = f"{wp_id}|{wp_key}|{created_at}".encode()
    return f"{kid}:{hmac.new(bytes.fromhex(secret), msg, hashlib.sha1).hexdigest()}"


async def active(b: Backend, *, seed: bool = True) -> tuple[str, ClaimResult]:
    eid = await create(b)
    if seed:
        await seed_keystore(b, eid)
    return eid, await claim(b, eid)


async def suspend(
    b: Backend, eid: str, c: ClaimResult, condition: str | None = None, *,
    wp_id: str | None = None, wp_key: str | None = None, pending: bool = False,
    timeout_at: int | None = None, timeout_behavior: str = "fail",
    extras: tuple[WaitpointBinding, ...] = (), idempotency_key: str = "", **kw: Any,
) -> SuspendResult:
    wp_id = wp_id or new_uuid()
    return await b.call(SuspendExecution(
        eid=eid, attempt_index=c.attempt_index, attempt_id=c.attempt_id, lease_id=c.lease_id,
        lease_epoch=c.lease_epoch, worker_instance_id=WIID, lane=LANE,
        suspension_id=new_uuid(), waitpoint_id=wp_id,
        waitpoint_key="" if pending else (wp_key or f"wpk:{wp_id}"),
        timeout_at=timeout_at, timeout_behavior=timeout_behavior,
        resume_condition_json=condition or C.signal_set(["go"]),
        resume_policy_json=C.resume_policy_json(), use_pending_waitpoint=pending,
        extra_waitpoints=extras, idempotency_key=idempotency_key, **kw,
    ))


async def deliver(
    b: Backend, eid: str, wp_id: str, token: str, name: str = "go", **kw: Any
) -> SignalResult:
    kw.setdefault("signal_id", new_uuid())
    return await b.call(DeliverSignal(
        eid=eid, waitpoint_id=wp_id, signal_name=name, token=token, lane=LANE, **kw,  # type: ignore[arg-type]
    ))


async def buffer(
    b: Backend, eid: str, wp_id: str, token: str, name: str = "go", **kw: Any
) -> SignalResult:
    kw.setdefault("signal_id", new_uuid())
    return await b.call(BufferSignal(
        eid=eid, waitpoint_id=wp_id, signal_name=name, token=token, **kw,  # type: ignore[arg-type]
    ))


async def hget(b: Backend, key: str, field: str) -> str:
    v = await b.redis.hget(key, field)
    return v.decode() if v is not None else ""


async def hall(b: Backend, key: str) -> dict[str, str]:
    raw = await b.redis.hgetall(key)
    return {k.decode(): v.decode() for k, v in raw.items()}


def pk(eid: str) -> PartitionKeys:
    return ExecKeys(eid)
