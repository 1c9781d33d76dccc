"""The claim path of :class:`~.backend_port.BackendEngine`: claiming a
batch of candidates (``claim_many``), with the pre-read, capability routing,
budget / quota admission and the resumed-attempt case, and assembling the
:class:`~flowfabric_worker.context.attempt.Claimed` a claim returns.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.engine.admission import (
    AdmissionRequest,
    admit,
    quota_id_of,
    release_admissions,
)
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.claim_candidates import CandidateRead
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import new_uuids
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.lifecycle import ClaimExecution, ClaimResult, IssueClaimGrant
from flowfabric_worker.protocol.maintenance import BlockExecutionForAdmission
from flowfabric_worker.protocol.signals import ClaimResumedExecution, ClaimResumedResult
from flowfabric_worker.worker.claim_reads import pre_read_many

__all__ = ["BatchClaims", "sent_at"]

log = logging.getLogger("flowfabric_worker.engine")

T = TypeVar("T")


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def sent_at(claimed: T, sent: float) -> T:
    """``claimed`` stamped with when its claim was sent (Claimed.claim_sent_at)."""
    if isinstance(claimed, Claimed):
        return dataclasses.replace(claimed, claim_sent_at=sent)
    return claimed


class BatchClaims:
    """Mixed into :class:`~.backend_port.BackendEngine` (its ``backend``)."""

    backend: Backend

    async def block_for_capability(self, eid: str, lane: str) -> None:
        now = await self.backend.server_time_ms()
        await self.backend.block_execution_for_admission(BlockExecutionForAdmission(
            eid=eid, lane_id=lane, blocking_reason="waiting_for_capable_worker",
            blocking_detail="no connected worker satisfies required_capabilities",
            now_ms=now))

    async def _context(self, eid: str) -> tuple[bytes, list[str], dict[str, str]]:
        """Payload, core fields and tags in one pipeline (spec 05 §2.4)."""
        k = ExecKeys(eid)
        pipe = self.backend.reads.pipeline()
        pipe.get(k.payload)
        pipe.hmget(k.core, ["execution_kind", "retry_count", "created_at", "budget_ids",
                            "quota_policy_id"])
        pipe.hgetall(k.tags)
        payload, fields, tags = await pipe.execute()
        return (payload or b"", [_text(f) if f else "" for f in fields],
                {_text(a): _text(b) for a, b in (tags or {}).items()})

    async def _assemble(self, eid: str, lane: str, res: ClaimResult | None, instance: str,
                        *, resumed: bool = False, lease_id: str = "", epoch: int = 0,
                        expires: int = 0, attempt_id: str = "", index: int = 0,
                        attempt_type: str = "resumed") -> Claimed:
        payload, (kind, retries, created, budgets, quota), tags = await self._context(eid)
        if res is not None:
            lease_id, epoch, expires = res.lease_id, res.lease_epoch, res.lease_expires_at
            attempt_id, index, attempt_type = res.attempt_id, res.attempt_index, res.attempt_type
        return Claimed(eid, lane, index, attempt_id, lease_id, epoch, expires,
                       attempt_type=attempt_type, execution_kind=kind, payload=payload,
                       tags=tags, resumed=resumed, worker_instance_id=instance,
                       retry_count=int(retries or 0), created_at_ms=int(created or 0),
                       budget_ids=budgets, quota_policy_id=quota)

    async def claim_many(
        self, lane: str, eids: Sequence[str], worker_id: str, worker_instance_id: str,
        capabilities: frozenset[str], lease_ttl_ms: int, grant_ttl_ms: int,
        attempt_timeouts: Mapping[str, int] | None = None,
        pre_read: Mapping[str, CandidateRead] | None = None,
    ) -> list[Claimed | Exception | None]:
        """Claim several candidates of ``lane`` in at most two round trips.

        1. The pre-read, per candidate, of the core fields the claim needs
           plus the task context (payload, tags): from ``pre_read`` (made
           with the candidate read, :meth:`candidate_reads`), else one
           pipeline. Payload and tags do not change once created, and a
           claimed attempt index equal to the pre-read ``total_attempt_count``
           proves nobody claimed in between (otherwise the context is read
           again); a pre-read that missed a suspension is answered
           ``use_claim_resumed_execution`` and claimed again as a resume.
        2. Candidates this worker cannot run are blocked (spec 05 §2.2).
        3. One pipeline sends grant + claim per candidate: the claim needs
           nothing from the grant's reply (ids are client-minted; attempt keys
           are placeholders the library rebuilds), and a refused grant makes
           the claim answer ``invalid_claim_grant``. A candidate whose attempt
           was interrupted (resumed after a suspension) gets grant + resumed
           claim instead, so a resume costs no extra round trip.

        Element ``i`` answers ``eids[i]``: the lease, ``None`` (skipped: gone,
        not runnable, needs other capabilities) or the refusal to classify.
        """
        out: list[Claimed | Exception | None] = [None] * len(eids)
        if not eids:
            return out
        known = pre_read or {}
        unread = [eid for eid in eids if eid not in known]
        read = (dict(zip(unread, await pre_read_many(self.backend, unread), strict=True))
                if unread else {})
        pre: dict[int, tuple[dict[str, str], bytes, dict[str, str]]] = {}
        for i, eid in enumerate(eids):
            cand = known.get(eid) or read[eid]
            core = cand.core
            if core["lifecycle_phase"] != "runnable" or core["eligibility_state"] != "eligible_now":
                continue  # claimed or moved since the candidate read
            needed = frozenset(c for c in core["required_capabilities"].split(",") if c)
            if needed and not needed <= capabilities:
                try:
                    await self.block_for_capability(eid, lane)
                except Exception as exc:
                    log.info("could not block %s for capabilities: %s", eid, exc)
                continue
            pre[i] = (core, cand.payload, cand.tags)
        if not pre:
            return out
        fresh = await self._admit(lane, eids, pre, out)
        if not pre:
            return out
        caps_csv = ",".join(sorted(capabilities))
        calls: list[FCall[Any]] = []
        minted: dict[int, str] = {}
        ids = new_uuids(2 * len(pre))
        for i, (core, _payload, _tags) in pre.items():
            eid = eids[i]
            minted[i] = lease_id = ids.pop()
            timeout = (attempt_timeouts or {}).get(core["execution_kind"])
            calls.append(IssueClaimGrant(
                eid=eid, lane_id=lane, worker_id=worker_id,
                worker_instance_id=worker_instance_id, grant_ttl_ms=grant_ttl_ms,
                worker_capabilities_csv=caps_csv))
            if core["attempt_state"] == "attempt_interrupted":
                calls.append(ClaimResumedExecution(
                    eid=eid, worker_id=worker_id, worker_instance_id=worker_instance_id,
                    lane=lane, lease_id=lease_id, lease_ttl_ms=lease_ttl_ms,
                    attempt_index=int(core["current_attempt_index"] or 0)))
                continue
            calls.append(ClaimExecution(
                eid=eid, lane_id=lane, worker_id=worker_id,
                worker_instance_id=worker_instance_id, lease_id=lease_id,
                attempt_id=ids.pop(), lease_ttl_ms=lease_ttl_ms,
                attempt_index=int(core["total_attempt_count"] or 0),
                attempt_timeout_ms=timeout or None))
        sent = time.monotonic()
        try:
            replies = await self.backend.call_many(calls)
        except BaseException:
            if fresh:  # nothing known to be claimed: give the admissions back
                with anyio.CancelScope(shield=True):
                    await release_admissions(self.backend,
                                             [(q, eids[i]) for i, q in fresh.items()])
            raise
        for n, (i, (core, payload, tags)) in enumerate(pre.items()):
            eid = eids[i]
            res = replies[2 * n + 1]
            try:
                if isinstance(res, ContractError) and res.code == "use_claim_resumed_execution":
                    out[i] = await self._claim_resumed(
                        eid, lane, worker_id, worker_instance_id, minted[i], lease_ttl_ms,
                        int(core["current_attempt_index"] or 0))
                elif isinstance(res, Exception):
                    out[i] = res
                elif isinstance(res, ClaimResumedResult):
                    out[i] = Claimed(
                        eid, lane, res.attempt_index, res.attempt_id, res.lease_id,
                        res.lease_epoch, res.lease_expires_at, attempt_type="resumed",
                        execution_kind=core["execution_kind"], payload=payload, tags=tags,
                        resumed=True, worker_instance_id=worker_instance_id,
                        retry_count=int(core["retry_count"] or 0),
                        created_at_ms=int(core["created_at"] or 0),
                        budget_ids=core["budget_ids"], quota_policy_id=core["quota_policy_id"],
                        claim_sent_at=sent)
                elif res.attempt_index != int(core["total_attempt_count"] or 0):
                    # Someone else's attempt ran in between: the pre-read is stale.
                    out[i] = await self._assemble(eid, lane, res, worker_instance_id)
                else:
                    out[i] = Claimed(
                        eid, lane, res.attempt_index, res.attempt_id, res.lease_id,
                        res.lease_epoch, res.lease_expires_at, attempt_type=res.attempt_type,
                        execution_kind=core["execution_kind"], payload=payload, tags=tags,
                        worker_instance_id=worker_instance_id,
                        retry_count=int(core["retry_count"] or 0),
                        created_at_ms=int(core["created_at"] or 0),
                        budget_ids=core["budget_ids"], quota_policy_id=core["quota_policy_id"],
                        claim_sent_at=sent)
            except Exception as exc:
                out[i] = exc
            # A resumed claim retried above was sent later: the earlier
            # time only shortens the window the fence trusts. (The common
            # Claimed is built stamped: replace() was 3% of a drain's CPU.)
            got = out[i]
            if isinstance(got, Claimed) and got.claim_sent_at != sent:
                out[i] = sent_at(got, sent)
        if fresh:
            # A grant or claim refused after an admission gives the slot back.
            await release_admissions(self.backend, [
                (qid, eids[i]) for i, qid in fresh.items() if not isinstance(out[i], Claimed)])
        return out

    async def _admit(self, lane: str, eids: Sequence[str],
                     pre: dict[int, tuple[dict[str, str], bytes, dict[str, str]]],
                     out: list[Claimed | Exception | None]) -> dict[int, str]:
        """Budget and quota admission (spec 04 §7.5) for the candidates in
        ``pre`` that carry either; refused ones leave ``pre`` (blocked, or
        their error recorded in ``out``: fail closed). Returns the quota ids
        admitted by this pass, by candidate."""
        asks = [i for i, (core, _p, _t) in pre.items()
                if core["budget_ids"] or core["quota_policy_id"]]
        if not asks:
            return {}
        verdicts = await admit(self.backend, [
            AdmissionRequest(eids[i], lane, pre[i][0]["budget_ids"],
                             pre[i][0]["quota_policy_id"]) for i in asks])
        fresh: dict[int, str] = {}
        for i, verdict in zip(asks, verdicts, strict=True):
            if not verdict.admitted:
                del pre[i]
                out[i] = verdict.error
            elif verdict.fresh_quota:
                fresh[i] = verdict.fresh_quota
        return fresh

    async def release_admission(self, lease: Claimed) -> None:
        """Give back the quota slot of an attempt that ended (docs/budgets.md:
        our improvement over 0.15, where only the reconciler lowers it)."""
        qid = quota_id_of(lease.quota_policy_id)
        if qid:
            await release_admissions(self.backend, [(qid, lease.execution_id)])

    async def _claim_resumed(self, eid: str, lane: str, worker_id: str, worker_instance_id: str,
                             lease_id: str, lease_ttl_ms: int, index: int) -> Claimed:
        r = await self.backend.call(ClaimResumedExecution(
            eid=eid, worker_id=worker_id, worker_instance_id=worker_instance_id,
            lane=lane, lease_id=lease_id, lease_ttl_ms=lease_ttl_ms, attempt_index=index))
        return await self._assemble(
            eid, lane, None, worker_instance_id, resumed=True, lease_id=r.lease_id,
            epoch=r.lease_epoch, expires=r.lease_expires_at, attempt_id=r.attempt_id,
            index=r.attempt_index)
