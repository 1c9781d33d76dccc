"""Binds the runtime's :class:`~.engine.Engine` port to a real
:class:`~flowfabric_worker.backend.Backend` (typed FCALL structs of spec 02).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.durability import Durability
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
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.claim_candidates import CandidateRead
from flowfabric_worker.protocol.keys import DONE_CHANNEL, WAKE_CHANNEL, ExecKeys, PartitionKeys
from flowfabric_worker.protocol.lifecycle import (
    ClaimExecution,
    CompleteExecution,
    DelayExecution,
    FailExecution,
    IssueClaimGrant,
    RenewLease,
    UpdateProgress,
)
from flowfabric_worker.protocol.maintenance import (
    IssueReclaimGrant,
    MarkLeaseExpiredIfDue,
    PromoteDelayed,
    ReclaimExecution,
)
from flowfabric_worker.protocol.partitions import tag
from flowfabric_worker.protocol.signals import ClaimResumedExecution
from flowfabric_worker.protocol.wake import DirectWake
from flowfabric_worker.protocol.worker_registry import HeartbeatWorker, RegisterWorker
from flowfabric_worker.worker.batch_claim import BatchClaims, sent_at
from flowfabric_worker.worker.claim_reads import any_present, candidate_reads
from flowfabric_worker.worker.direct_claim import claim_direct
from flowfabric_worker.worker.done_messages import completed_command, done_command
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


class BackendEngine(BatchClaims):
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

    async def eligible_in(self, lane: str, partitions: Sequence[int]) -> bool:
        """Whether ``lane`` has eligible work on any of ``partitions`` (one command)."""
        return await any_present(self.backend, [PartitionKeys(tag("fp", p)).lane_eligible(lane)
                                                for p in partitions])

    async def leases_in(self, partitions: Sequence[int]) -> bool:
        """Whether any of ``partitions`` holds a lease (one command): without
        one there is nothing to reclaim there."""
        return await any_present(self.backend, [PartitionKeys(tag("fp", p)).lease_expiry
                                                for p in partitions])

    async def claim_direct(
        self, wakes: Sequence[DirectWake], worker_id: str, worker_instance_id: str,
        capabilities: frozenset[str], lease_ttl_ms: int, grant_ttl_ms: int,
        attempt_timeouts: Mapping[str, int] | None = None,
    ) -> list[Claimed | Exception | None]:
        """Grant + claim the executions direct wake-ups named, in one round
        trip (:func:`.direct_claim.claim_direct`)."""
        return await claim_direct(self.backend, wakes, worker_id, worker_instance_id,
                                  capabilities, lease_ttl_ms, grant_ttl_ms, attempt_timeouts)

    async def required_capabilities(self, eid: str) -> frozenset[str]:
        raw = await self.backend.reads.hget(ExecKeys(eid).core, "required_capabilities")
        text = _text(raw) if raw else ""
        return frozenset(c for c in text.split(",") if c)

    async def _core(self, eid: str) -> dict[str, str] | None:
        """The few core fields the claim path needs (``None`` when absent)."""
        names = ["total_attempt_count", "current_attempt_index", "lane_id",
                 "lifecycle_phase", "ownership_state"]
        vals = await self.backend.reads.hmget(ExecKeys(eid).core, names)
        if all(v is None for v in vals):
            return None
        return {n: (_text(v) if v is not None else "") for n, v in zip(names, vals, strict=True)}

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
            return sent_at(await self._assemble(
                eid, lane, None, worker_instance_id, resumed=True, lease_id=r.lease_id,
                epoch=r.lease_epoch, expires=r.lease_expires_at, attempt_id=r.attempt_id,
                index=r.attempt_index), sent)
        return sent_at(await self._assemble(eid, lane, res, worker_instance_id), sent)

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
        return sent_at(await self._assemble(eid, lane, res, worker_instance_id), sent)

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
                result_payload=result), completed_command(lease.execution_id),
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
                retry_policy_json=retry_policy_json), done_command(lease.execution_id),
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

    async def hand_back(self, lease: Claimed, *, delay_ms: int = 0) -> None:
        until = await self.backend.server_time_ms() + max(0, delay_ms)
        await self.backend.delay_execution(DelayExecution(
            eid=lease.execution_id, lane_id=lease.lane, attempt_index=lease.attempt_index,
            worker_instance_id=lease.worker_instance_id, lease_id=lease.lease_id,
            lease_epoch=lease.lease_epoch, attempt_id=lease.attempt_id, delay_until=until,
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

    async def publish_done(self, eid: str) -> None:
        await self.backend.redis.publish(DONE_CHANNEL.format(eid=eid), eid)
