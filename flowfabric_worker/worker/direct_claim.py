"""Claiming the executions a direct wake-up named (issue 18, round trip).

A single submission announces the execution it created
(:mod:`flowfabric_worker.protocol.wake`). A woken worker with a free slot
then skips the candidate read: one round trip carries, per named execution,
``ff_issue_claim_grant`` + ``ff_claim_execution`` (the contract's own
calls, so the writes are exactly those of any claim, attached mode
included) and the plain reads the claimed attempt needs (the core fields of
the claim path's pre-read, payload, tags — none of which a claim changes).

The grant re-checks everything (still runnable and eligible, in the
eligible set, no grant already issued, the worker's capabilities), so a
stale or lost race costs two refused calls and nothing else; the worker
then reads the index as for a plain wake-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import new_uuids
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import ClaimExecution, ClaimResult, IssueClaimGrant
from flowfabric_worker.protocol.wake import DirectWake
from flowfabric_worker.worker.port import SKIPPABLE_CLAIM_CODES

__all__ = ["READ_FIELDS", "claim_direct"]

#: Core fields read with the claim: what Claimed carries beyond the lease.
READ_FIELDS = ("retry_count", "created_at", "budget_ids", "quota_policy_id")


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def claim_direct(
    backend: Backend, wakes: Sequence[DirectWake], worker_id: str, worker_instance_id: str,
    capabilities: frozenset[str], lease_ttl_ms: int, grant_ttl_ms: int,
    attempt_timeouts: Mapping[str, int] | None = None,
) -> list[Claimed | Exception | None]:
    """Grant + claim each of ``wakes`` in one round trip. Element ``i``
    answers ``wakes[i]``: the lease, ``None`` (lost the race, not eligible
    any more, needs other capabilities: the index read sorts it out) or an
    unexpected refusal."""
    if not wakes:
        return []
    caps_csv = ",".join(sorted(capabilities))
    calls: list[FCall[Any]] = []
    reads: list[list[Any]] = []
    ids = new_uuids(2 * len(wakes))
    for w in wakes:
        timeout = (attempt_timeouts or {}).get(w.kind)
        calls.append(IssueClaimGrant(
            eid=w.eid, lane_id=w.lane, worker_id=worker_id,
            worker_instance_id=worker_instance_id, grant_ttl_ms=grant_ttl_ms,
            worker_capabilities_csv=caps_csv))
        # A fresh create: its first attempt (the library takes the index from
        # exec_core; this one only names placeholder keys).
        calls.append(ClaimExecution(
            eid=w.eid, lane_id=w.lane, worker_id=worker_id,
            worker_instance_id=worker_instance_id, lease_id=ids.pop(),
            attempt_id=ids.pop(), lease_ttl_ms=lease_ttl_ms, attempt_index=0,
            attempt_timeout_ms=timeout or None))
        k = ExecKeys(w.eid)
        reads += [["HMGET", k.core, "execution_kind", *READ_FIELDS], ["GET", k.payload],
                  ["HGETALL", k.tags]]
    sent = time.monotonic()
    # Issued together, the calls and the reads share the multiplexed
    # connection's write: one round trip.
    replies, raw = await asyncio.gather(backend.call_many(calls), backend.read_many(reads))
    out: list[Claimed | Exception | None] = []
    for n, w in enumerate(wakes):
        grant, res = replies[2 * n], replies[2 * n + 1]
        if not isinstance(res, ClaimResult):
            out.append(_refusal(grant if isinstance(grant, Exception) else res))
            continue
        vals, payload, flat = raw[3 * n: 3 * n + 3]
        kind, retries, created, budgets, quota = (_text(v) if v is not None else ""
                                                  for v in vals)
        out.append(Claimed(
            w.eid, w.lane, res.attempt_index, res.attempt_id, res.lease_id, res.lease_epoch,
            res.lease_expires_at, attempt_type=res.attempt_type, execution_kind=kind,
            payload=payload or b"",
            tags={_text(a): _text(b) for a, b in zip(flat[::2], flat[1::2], strict=True)},
            worker_instance_id=worker_instance_id, retry_count=int(retries or 0),
            created_at_ms=int(created or 0), budget_ids=budgets, quota_policy_id=quota,
            claim_sent_at=sent))
    return out


def _refusal(exc: object) -> Exception | None:
    """``None`` for the refusals a race or a stale hint explains."""
    if isinstance(exc, ContractError) and (
            exc.code in SKIPPABLE_CLAIM_CODES or exc.retryable
            or exc.code in ("capability_mismatch", "use_claim_resumed_execution",
                            "active_attempt_exists", "execution_not_leaseable")):
        return None
    return exc if isinstance(exc, Exception) else None
