"""Binds the runtime's :class:`~.engine.Engine` port to a real
:class:`~flowfabric_worker.backend.Backend` (typed FCALL structs of spec 02).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.durability import Durability
from flowfabric_worker.client.result_listener import CARRIED_MAX, CARRIED_PREFIX
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.context.children import Children
from flowfabric_worker.context.frame_writer import FrameWriter
from flowfabric_worker.context.step_journal import StepJournal
from flowfabric_worker.context.task_context import (
    CHILDREN_EXTENSION,
    JOURNAL_EXTENSION,
    WAITS_EXTENSION,
)
from flowfabric_worker.context.usage_reporter import USAGE_EXTENSION, UsageReporter
from flowfabric_worker.context.waits import Waits
from flowfabric_worker.engine.admission import (
    AdmissionRequest,
    admit,
    quota_id_of,
    release_admissions,
)
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.claim_candidates import CandidateRead
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.keys import DONE_CHANNEL, WAKE_CHANNEL, ExecKeys, PartitionKeys
from flowfabric_worker.protocol.lifecycle import (
    ClaimExecution,
    ClaimResult,
    CompleteExecution,
    DelayExecution,
    FailExecution,
    IssueClaimGrant,
    RenewLease,
    UpdateProgress,
)
from flowfabric_worker.protocol.maintenance import (
    BlockExecutionForAdmission,
    IssueReclaimGrant,
    MarkLeaseExpiredIfDue,
    PromoteDelayed,
    ReclaimExecution,
)
from flowfabric_worker.protocol.partitions import tag
from flowfabric_worker.protocol.signals import ClaimResumedExecution, ClaimResumedResult
from flowfabric_worker.protocol.worker_registry import HeartbeatWorker, RegisterWorker
from flowfabric_worker.worker.claim_reads import candidate_reads, pre_read_many
from flowfabric_worker.worker.port import FailOutcome
from flowfabric_worker.worker.retry_promoter import RetryPromoter

log = logging.getLogger("flowfabric_worker.engine")



def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _backoff_ms(retry_policy_json: str) -> int:
    """The delay a fail call's retry policy asked for (the SDK always sends a
    fixed ``delay_ms``, see ``Retry.fail_policy_json``); 0 when it has none."""
    try:
        backoff = json.loads(retry_policy_json).get("backoff") or {}
        return int(backoff.get("delay_ms") or 0)
    except (ValueError, TypeError, AttributeError):
        return 0


# Sent in the complete call's pipeline, after the call. It reads the state
# the call left, atomically, so the message can never contradict a read: a
# completion puts its stored result in the message (when small) and the
# waiter skips its read; a refused call (lease lost, cancelled meanwhile, a
# replay of our own landed call) publishes what is actually stored, or the
# bare id. KEYS: core, result; ARGV: channel, cap, prefix, eid.
_PUBLISH_DONE = """
if redis.call('HGET', KEYS[1], 'public_state') == 'completed' then
  local r = redis.call('GET', KEYS[2]) or ''
  if #r <= tonumber(ARGV[2]) then
    return redis.call('PUBLISH', ARGV[1], ARGV[3] .. r)
  end
end
return redis.call('PUBLISH', ARGV[1], ARGV[4])
"""


class BackendEngine:
    """The runtime's engine operations over one backend connection."""

    #: complete/fail publish ``ffw:done:<eid>`` themselves, in the same
    #: round trip (the executor then does not publish again).
    publishes_done = True

    def __init__(self, backend: Backend, durability: Durability | None = None) -> None:
        self.backend = backend
        #: What complete / fail wait for (None: the backend's own setting).
        self.durability = durability
        #: Promotes the retries this worker schedules when they come due (the
        #: worker runs it; without it they wait for the delayed_promoter scanner).
        self.retry_promoter = RetryPromoter(self._promote, backend.server_time_ms)
        self.promotes_retries = False

    async def _promote(self, calls: Sequence[PromoteDelayed], lanes: Sequence[str]) -> list[Any]:
        results = await self.backend.call_many(calls)
        for lane in lanes:
            await self.backend.publish(WAKE_CHANNEL.format(lane=lane), "1")
        return results

    async def check_durability(self) -> None:
        """Refuse a server that cannot confirm terminal calls as asked."""
        await self.backend.check_durability(self.durability or self.backend.durability)

    @property
    def num_partitions(self) -> int:
        return int(self.backend.partitions.num_flow_partitions)

    async def candidates(self, lane: str, partitions: list[int], per_partition: int
                         ) -> list[list[str]]:
        keys = [PartitionKeys(tag("fp", p)).lane_eligible(lane) for p in partitions]
        return await self.backend.all_members(keys, per_partition)

    async def candidate_reads(self, lane: str, partitions: list[int], per_partition: int
                              ) -> tuple[list[list[str]], dict[str, CandidateRead]]:
        """:meth:`candidates` with the first partition's heads pre-read for
        :meth:`claim_many`, in one round trip (:func:`.claim_reads.candidate_reads`)."""
        return await candidate_reads(self.backend, lane, partitions, per_partition)

    async def required_capabilities(self, eid: str) -> frozenset[str]:
        raw = await self.backend.reads.hget(ExecKeys(eid).core, "required_capabilities")
        text = _text(raw) if raw else ""
        return frozenset(c for c in text.split(",") if c)

    async def block_for_capability(self, eid: str, lane: str) -> None:
        now = await self.backend.server_time_ms()
        await self.backend.block_execution_for_admission(BlockExecutionForAdmission(
            eid=eid, lane_id=lane, blocking_reason="waiting_for_capable_worker",
            blocking_detail="no connected worker satisfies required_capabilities",
            now_ms=now))

    async def _core(self, eid: str) -> dict[str, str] | None:
        """The few core fields the claim path needs (``None`` when absent)."""
        names = ["total_attempt_count", "current_attempt_index", "lane_id",
                 "lifecycle_phase", "ownership_state"]
        vals = await self.backend.reads.hmget(ExecKeys(eid).core, names)
        if all(v is None for v in vals):
            return None
        return {n: (_text(v) if v is not None else "") for n, v in zip(names, vals, strict=True)}

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

    async def claim(self, eid: str, lane: str, worker_id: str, worker_instance_id: str,
                    capabilities: frozenset[str], lease_ttl_ms: int,
                    grant_ttl_ms: int) -> Claimed:
        core = await self._core(eid)
        if core is None:
            raise ContractError("execution_not_found", execution_id=eid)
        await self.backend.issue_claim_grant(IssueClaimGrant(
            eid=eid, lane_id=lane, worker_id=worker_id, worker_instance_id=worker_instance_id,
            grant_ttl_ms=grant_ttl_ms, worker_capabilities_csv=",".join(sorted(capabilities))))
        lease_id = str(uuid.uuid4())
        sent = time.monotonic()
        try:
            res = await self.backend.claim_execution(ClaimExecution(
                eid=eid, lane_id=lane, worker_id=worker_id,
                worker_instance_id=worker_instance_id, lease_id=lease_id,
                attempt_id=str(uuid.uuid4()), lease_ttl_ms=lease_ttl_ms,
                attempt_index=int(core["total_attempt_count"] or 0)))
        except ContractError as exc:
            if exc.code != "use_claim_resumed_execution":
                raise
            index = int(core["current_attempt_index"] or 0)
            r = await self.backend.call(ClaimResumedExecution(
                eid=eid, worker_id=worker_id, worker_instance_id=worker_instance_id,
                lane=lane, lease_id=lease_id, lease_ttl_ms=lease_ttl_ms, attempt_index=index))
            return _sent_at(await self._assemble(
                eid, lane, None, worker_instance_id, resumed=True, lease_id=r.lease_id,
                epoch=r.lease_epoch, expires=r.lease_expires_at, attempt_id=r.attempt_id,
                index=r.attempt_index), sent)
        return _sent_at(await self._assemble(eid, lane, res, worker_instance_id), sent)

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
        for i, (core, _payload, _tags) in pre.items():
            eid = eids[i]
            minted[i] = lease_id = str(uuid.uuid4())
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
                attempt_id=str(uuid.uuid4()), lease_ttl_ms=lease_ttl_ms,
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
                out[i] = _sent_at(got, sent)
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

    async def list_reclaimable(self, lane: str, partition: int, limit: int) -> list[str]:
        """Due members of the partition's lease-expiry index that belong to ``lane``.

        Marking is idempotent (spec 02 §3.14), so the worker confirms expiry
        itself instead of depending on the scanner having run first.
        """
        return await self.list_reclaimable_many(lane, [partition], limit)

    async def list_reclaimable_many(self, lane: str, partitions: list[int],
                                    limit: int) -> list[str]:
        """:meth:`list_reclaimable` over several partitions, read in one round
        trip (flow members live on their flow's partition, not their lane's)."""
        now = await self.backend.server_time_ms()
        keys = [PartitionKeys(tag("fp", p)).lease_expiry for p in partitions]
        due = [eid for found in await self.backend.due_members(keys, now, limit)
               for eid in found][:limit]
        out = []
        for eid in due:
            core = await self._core(eid)
            if core is None or core["lane_id"] != lane or core["lifecycle_phase"] != "active":
                continue
            if core["ownership_state"] == "leased":
                await self.backend.mark_lease_expired_if_due(MarkLeaseExpiredIfDue(eid=eid))
                core = await self._core(eid)
            if core is not None and core["ownership_state"] == "lease_expired_reclaimable":
                out.append(eid)
        return out

    async def reclaim(self, eid: str, lane: str, worker_id: str, worker_instance_id: str,
                      capabilities: frozenset[str], lease_ttl_ms: int,
                      grant_ttl_ms: int) -> Claimed:
        core = await self._core(eid)
        if core is None:
            raise ContractError("execution_not_found", execution_id=eid)
        await self.backend.issue_reclaim_grant(IssueReclaimGrant(
            eid=eid, lane_id=lane, worker_id=worker_id, worker_instance_id=worker_instance_id,
            grant_ttl_ms=grant_ttl_ms, worker_capabilities_csv=",".join(sorted(capabilities))))
        sent = time.monotonic()
        res = await self.backend.reclaim_execution(ReclaimExecution(
            eid=eid, lane_id=lane, worker_id=worker_id, worker_instance_id=worker_instance_id,
            lease_id=str(uuid.uuid4()), attempt_id=str(uuid.uuid4()),
            lease_ttl_ms=lease_ttl_ms,
            old_attempt_index=int(core["current_attempt_index"] or 0),
            new_attempt_index=int(core["total_attempt_count"] or 0)))
        return _sent_at(await self._assemble(eid, lane, res, worker_instance_id), sent)

    async def renew(self, lease: Claimed, lease_ttl_ms: int) -> int:
        res = await self.backend.renew_lease(RenewLease(
            eid=lease.execution_id, attempt_index=lease.attempt_index,
            attempt_id=lease.attempt_id, lease_id=lease.lease_id,
            lease_epoch=lease.lease_epoch, lease_ttl_ms=lease_ttl_ms))
        return res.lease_expires_at

    @staticmethod
    def _replayed(exc: ContractError, lease: Claimed, outcome: str) -> bool:
        """Spec 05 §4.4: our own earlier terminal call already landed."""
        if exc.code != "execution_not_active" or len(exc.details) < 4:
            return False
        terminal, epoch, phase, attempt_id = exc.details[:4]
        if epoch != str(lease.lease_epoch):
            return False
        if outcome == "failed" and phase == "runnable":
            return True
        return terminal == outcome and attempt_id == lease.attempt_id

    async def complete(self, lease: Claimed, result: bytes) -> None:
        try:
            await self.backend.call_and_send(CompleteExecution(
                eid=lease.execution_id, lane_id=lease.lane, attempt_index=lease.attempt_index,
                worker_instance_id=lease.worker_instance_id, lease_id=lease.lease_id,
                lease_epoch=lease.lease_epoch, attempt_id=lease.attempt_id,
                result_payload=result), self._completed_command(lease.execution_id),
                durable=True, durability=self.durability)
        except ContractError as exc:
            if not self._replayed(exc, lease, "success"):
                raise

    async def fail(self, lease: Claimed, reason: str, category: str,
                   retry_policy_json: str) -> FailOutcome:
        try:
            res = await self.backend.call_and_send(FailExecution(
                eid=lease.execution_id, lane_id=lease.lane, attempt_index=lease.attempt_index,
                worker_instance_id=lease.worker_instance_id, lease_id=lease.lease_id,
                lease_epoch=lease.lease_epoch, attempt_id=lease.attempt_id,
                failure_reason=reason, failure_category=category,
                retry_policy_json=retry_policy_json), self._done_command(lease.execution_id),
                durable=True, durability=self.durability)
        except ContractError as exc:
            if not self._replayed(exc, lease, "failed"):
                raise
            return FailOutcome(retry_scheduled=exc.details[2] == "runnable")
        if res.outcome == "retry_scheduled":
            due = int(res.delay_until or 0)
            if self.promotes_retries:
                self.retry_promoter.schedule(lease.execution_id, lease.lane,
                                             _backoff_ms(retry_policy_json))
            return FailOutcome(True, due)
        return FailOutcome(False)

    async def cancel(self, lease: Claimed, reason: str) -> None:
        # The worker never cancels its own executions today; operator cancels
        # reach the task as a lease loss (the renew answers execution_not_active).
        raise NotImplementedError("worker-side cancel is not used by the runtime")

    async def hand_back(self, lease: Claimed) -> None:
        now = await self.backend.server_time_ms()
        await self.backend.delay_execution(DelayExecution(
            eid=lease.execution_id, lane_id=lease.lane, attempt_index=lease.attempt_index,
            worker_instance_id=lease.worker_instance_id, lease_id=lease.lease_id,
            lease_epoch=lease.lease_epoch, attempt_id=lease.attempt_id, delay_until=now,
            source="worker"))

    async def update_progress(self, lease: Claimed, pct: float, message: str) -> None:
        await self.backend.update_progress(UpdateProgress(
            eid=lease.execution_id, lease_id=lease.lease_id, lease_epoch=lease.lease_epoch,
            progress_pct=f"{pct:g}", progress_message=message))

    async def register_worker(self, namespace: str, instance_id: str, worker_id: str,
                              lanes: list[str], capabilities: frozenset[str],
                              ttl_ms: int) -> None:
        """Advertise this worker (spec 05 §1.2); refreshed by heartbeats."""
        now = await self.backend.server_time_ms()
        await self.backend.register_worker(RegisterWorker(
            namespace=namespace, instance_id=instance_id, worker_id=worker_id,
            lanes=tuple(lanes), capabilities=tuple(sorted(capabilities)), ttl_ms=ttl_ms,
            now_ms=now))

    async def heartbeat(self, namespace: str, instance_id: str) -> None:
        now = await self.backend.server_time_ms()
        await self.backend.heartbeat_worker(HeartbeatWorker(
            namespace=namespace, instance_id=instance_id, now_ms=now))

    def frame_writer(self, lease: Claimed) -> FrameWriter:
        """The attempt's batching frame writer (``ctx.stream`` & co.)."""
        return FrameWriter(self.backend, eid=lease.execution_id,
                           attempt_index=lease.attempt_index, lease_id=lease.lease_id,
                           lease_epoch=lease.lease_epoch, attempt_id=lease.attempt_id)

    def install_durable(self, ctx: Any, lease: Claimed,
                        flush: Callable[[], Awaitable[None]]) -> None:
        """Give ``ctx`` its step journal and waits (``ctx.step`` & co.)."""
        backend = self.backend
        # The factories below are held by ctx.extensions: closing over ctx
        # (or its extensions) would make every attempt a reference cycle,
        # freed only by the garbage collector instead of the moment the
        # attempt ends (issue 18: a drain left ~30 cyclic objects per task).
        # They run only through ctx.extensions, so the context is alive then.
        ref = weakref.ref(ctx)

        def live() -> Any:
            c = ref()
            assert c is not None, "extension built after its context was freed"
            return c

        def released() -> None:
            c = ref()
            if c is not None:
                c.lease_released = True

        # Built on first use (most attempts use none of them); all share the
        # attempt's one journal.
        ext = ctx.extensions
        ext.lazy(JOURNAL_EXTENSION, lambda: StepJournal(backend, lease))
        ext.lazy(WAITS_EXTENSION, lambda: Waits(
            backend, lease, live().extensions[JOURNAL_EXTENSION], flush,
            live().lease_guard, released))
        ext.lazy(CHILDREN_EXTENSION, lambda: Children(
            backend, lease, live().extensions[JOURNAL_EXTENSION], live(), flush))
        ext.lazy(USAGE_EXTENSION, lambda: UsageReporter(backend, lease, live().log))

    @staticmethod
    def _done_command(eid: str) -> tuple[str, str, str]:
        """Sent after a terminal call in its pipeline: it runs after the call,
        so a woken waiter reads the new state (a refused call only costs the
        waiter a look)."""
        return ("PUBLISH", DONE_CHANNEL.format(eid=eid), eid)

    @staticmethod
    def _completed_command(eid: str) -> tuple[str | int | bytes, ...]:
        """The complete call's done message: :data:`_PUBLISH_DONE` (the
        result rides along when the call left it stored and small)."""
        k = ExecKeys(eid)
        return ("EVAL", _PUBLISH_DONE, 2, k.core, k.result,
                DONE_CHANNEL.format(eid=eid), CARRIED_MAX, CARRIED_PREFIX, eid)

    async def publish_done(self, eid: str) -> None:
        await self.backend.redis.publish(DONE_CHANNEL.format(eid=eid), eid)


T = TypeVar("T")


def _sent_at(claimed: T, sent: float) -> T:
    """``claimed`` stamped with when its claim was sent (Claimed.claim_sent_at)."""
    if isinstance(claimed, Claimed):
        return dataclasses.replace(claimed, claim_sent_at=sent)
    return claimed
