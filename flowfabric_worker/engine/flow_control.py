"""Claim-time side of per-key flow control (docs/flow-control.md): what the
scheduler does with an execution refused by a flow-control quota, and who
is woken when a slot frees.

A flow-control quota is an ordinary 0.15 quota policy with two fields of
ours (``ffw_strategy``, ``ffw_label``), so the admission itself is the
contract's ``ff_check_admission_and_record``. Over the cap:

- ``queue``: blocked (``waiting_for_quota``) and noted on the quota's
  waiting set, oldest first; each slot released unblocks the longest
  waiting one at once instead of at the ``unblock`` scanner's next pass,
  which stays the safety net;
- ``cancel_newest``: the refused execution is cancelled;
- ``cancel_in_progress``: it waits as with ``queue`` and the oldest running
  execution of the key is cancelled, its slot given to the waiting one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.ops_budgets import QuotaLimits
from flowfabric_worker.engine.flows.cancel import cancel_member
from flowfabric_worker.protocol.keys import WAKE_CHANNEL
from flowfabric_worker.protocol.maintenance import UnblockExecution

__all__ = ["detail", "evict_oldest", "wake_waiters"]

log = logging.getLogger("flowfabric_worker.flow_control")

#: Stale waiting entries (already running, cancelled, unblocked by the
#: scanner) skipped per released slot before giving up to the scanner.
_WAKE_TRIES = 4


def detail(qid: str, limits: QuotaLimits, status: str) -> str:
    """The blocking detail ``inspect`` shows: which task and key, which limit."""
    if status == "RATE_EXCEEDED":
        return (f"flow control: {limits.label}: rate {limits.rate_limit} per "
                f"{limits.window_seconds}s reached (quota {qid})")
    return (f"flow control: {limits.label}: concurrency {limits.concurrency_cap} "
            f"reached (quota {qid})")


async def wake_waiters(backend: Backend, quota_ids: Sequence[str]) -> None:
    """Unblock the longest-waiting execution of each quota (a slot was just
    released) and wake its lane. Failures are left to the unblock scanner."""
    pending = list(dict.fromkeys(quota_ids))
    try:
        for _ in range(_WAKE_TRIES):
            popped = await backend.pop_quota_waiters(pending)
            if not popped:
                return
            now = await backend.server_time_ms()
            outcomes = await backend.call_many([
                UnblockExecution(eid=eid, lane_id=lane, source="quota", now_ms=now,
                                 expected_blocking_reason="waiting_for_quota")
                for _qid, eid, lane in popped])
            pending, lanes = [], set()
            for (qid, _eid, lane), outcome in zip(popped, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    pending.append(qid)  # no longer blocked: try the next waiter
                else:
                    lanes.add(lane)
            for lane in sorted(lanes):
                await backend.publish(WAKE_CHANNEL.format(lane=lane), "1")
            if not pending:
                return
    except Exception as exc:
        log.warning("could not wake the waiters of %d quota(s): %s", len(pending), exc)


async def evict_oldest(backend: Backend, qid: str, limits: QuotaLimits,
                       keep: str) -> str | None:
    """``cancel_in_progress``: cancel the oldest running execution holding a
    slot of ``qid`` (not ``keep``); returns its id (the caller releases its
    slot, which unblocks the longest waiting one)."""
    admitted = [eid for eid, _at in await backend.quota_admitted(qid) if eid != keep]
    if not admitted:
        return None
    phases = await backend.exec_fields(admitted, ["lifecycle_phase"])
    for eid, (phase,) in zip(admitted, phases, strict=True):
        if phase != "active":
            continue
        reason = f"flow control: {limits.label}: replaced by a newer execution"
        if await cancel_member(backend, eid, reason):
            return eid
    return None
