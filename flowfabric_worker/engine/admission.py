"""Claim-time admission (spec 04 §7.5, spec 05 §6.2 steps 3–5): budgets and
quotas checked before a grant is issued, for a batch of candidates at once.

Only candidates whose exec_core carries ``budget_ids`` or ``quota_policy_id``
come here (the claim path pre-reads both with the fields it needs anyway), so
executions without either pay nothing. For the rest, one pass costs: the
server time, one pipeline of budget reads, one of quota definitions, one of
``ff_check_admission_and_record`` calls and one of blocks — each only when
needed. Read errors fail closed: the candidate is not claimed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.ops_budgets import BudgetState, QuotaLimits
from flowfabric_worker.engine import flow_control
from flowfabric_worker.engine.flows.cancel import cancel_member
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.observability.metrics import recorder
from flowfabric_worker.protocol.budgets import (
    AdmissionResult,
    CheckAdmissionAndRecord,
    ReleaseAdmission,
)
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import validate_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.maintenance import BlockExecutionForAdmission
from flowfabric_worker.protocol.partitions import quota_tag
from flowfabric_worker.tasks.budgets import attached_budgets

__all__ = ["AdmissionRequest", "Verdict", "admit", "budget_block_detail", "quota_id_of",
           "release_admissions"]

log = logging.getLogger("flowfabric_worker.admission")


@dataclass(frozen=True)
class AdmissionRequest:
    """One candidate: its id, lane and the two exec_core fields."""

    eid: str
    lane: str
    budget_ids: str
    quota_policy_id: str


@dataclass(frozen=True)
class Verdict:
    """``admitted``: go on with the grant. ``fresh_quota``: the quota id this
    pass admitted (released again if the grant or claim fails). ``error``:
    the check could not be made (fail closed: not claimed now)."""

    admitted: bool
    fresh_quota: str = ""
    error: Exception | None = None


def quota_id_of(field: str) -> str:
    """The quota policy id of an exec_core field; "" when absent or not a UUID."""
    try:
        return validate_uuid(field)
    except InvalidInput:
        return ""


def budget_block_detail(state: BudgetState) -> str | None:
    """The 0.15 blocking detail when ``state`` is at a hard limit, else ``None``."""
    hit = state.hard_breach()
    if hit is None:
        return None
    dim, used, limit = hit
    return f"budget ff:budget:{state.budget_id}:usage: {dim} {used}/{limit}"


def _quota_detail(qid: str, limits: QuotaLimits, result: AdmissionResult) -> str:
    if limits.label:  # a flow-control quota: name the task and key
        return flow_control.detail(qid, limits, result.status)
    if result.status == "RATE_EXCEEDED":
        r = limits.rate_limit
        return f"quota {qid}: rate limit {r}/{r} per {limits.window_seconds}s window"
    return f"quota {qid}: concurrency cap {limits.concurrency_cap}"


async def admit(backend: Backend, requests: Sequence[AdmissionRequest]) -> list[Verdict]:
    """Check each request's budgets, then its quota; block the refused ones
    (``waiting_for_budget`` / ``waiting_for_quota``). Element ``i`` answers
    ``requests[i]``."""
    verdicts: list[Verdict | None] = [None] * len(requests)
    blocks: list[tuple[int, str, str]] = []
    budgets = [attached_budgets(r.budget_ids) for r in requests]
    wanted = [bid for ids in budgets for bid in ids]
    states: dict[str, BudgetState] = {}
    if wanted:
        try:
            states = await backend.read_budgets(wanted)
        except Exception as exc:  # fail closed
            for n, ids in enumerate(budgets):
                if ids:
                    verdicts[n] = Verdict(False, error=exc)
    for n, ids in enumerate(budgets):
        if verdicts[n] is not None:
            continue
        for bid in ids:
            hit = states[bid].hard_breach()
            detail = budget_block_detail(states[bid])
            if detail is not None and hit is not None:
                recorder().budget_hit(hit[0])
                blocks.append((n, "waiting_for_budget", detail))
                verdicts[n] = Verdict(False)
                break
    quotas = {n: quota_id_of(r.quota_policy_id) for n, r in enumerate(requests)
              if verdicts[n] is None}
    quotas = {n: q for n, q in quotas.items() if q}
    limits: dict[str, QuotaLimits | None] = {}
    if quotas:
        try:
            limits = await backend.read_quota_limits(list(quotas.values()))
        except Exception as exc:
            for n in quotas:
                verdicts[n] = Verdict(False, error=exc)
            quotas = {}
    checks: list[tuple[int, str, QuotaLimits]] = []
    # Flow-control refusals (engine/flow_control.py).
    cancels: list[tuple[int, str, QuotaLimits]] = []
    evictions: list[tuple[int, str, QuotaLimits]] = []
    waiters: list[tuple[str, str, str]] = []
    for n, qid in quotas.items():
        lim = limits.get(qid)
        if lim is None or lim.unlimited:
            continue  # no such policy / nothing to enforce: no admission call
        checks.append((n, qid, lim))
    if checks or blocks:
        now = await backend.server_time_ms()
    if checks:
        calls: list[FCall[AdmissionResult]] = [
            CheckAdmissionAndRecord(
                tag=quota_tag(qid, backend.partitions), quota_id=qid, eid=requests[n].eid,
                now_ms=now, window_seconds=lim.window_seconds, rate_limit=lim.rate_limit,
                concurrency_cap=lim.concurrency_cap, jitter_ms=lim.jitter_ms)
            for n, qid, lim in checks]
        try:
            replies: list[object] = await backend.call_many(list(calls))
        except Exception as exc:
            replies = [exc] * len(calls)
        for (n, qid, lim), reply in zip(checks, replies, strict=True):
            if isinstance(reply, Exception):
                verdicts[n] = Verdict(False, error=reply)
            elif isinstance(reply, AdmissionResult) and reply.admitted:
                fresh = qid if reply.status == "ADMITTED" else ""
                verdicts[n] = Verdict(True, fresh_quota=fresh)
            elif isinstance(reply, AdmissionResult):
                over_cap = reply.status != "RATE_EXCEEDED"
                recorder().quota_hit("concurrency" if over_cap else "rate")
                verdicts[n] = Verdict(False)
                if over_cap and lim.label and lim.strategy == "cancel_newest":
                    cancels.append((n, qid, lim))
                    continue
                blocks.append((n, "waiting_for_quota", _quota_detail(qid, lim, reply)))
                if over_cap and lim.label:
                    waiters.append((qid, requests[n].eid, requests[n].lane))
                    if lim.strategy == "cancel_in_progress":
                        evictions.append((n, qid, lim))
    if blocks:
        outcomes = await backend.call_many([
            BlockExecutionForAdmission(eid=requests[n].eid, lane_id=requests[n].lane,
                                       blocking_reason=reason, blocking_detail=detail,
                                       now_ms=now)
            for n, reason, detail in blocks])
        for (n, reason, _detail), outcome in zip(blocks, outcomes, strict=True):
            if isinstance(outcome, Exception):  # e.g. went terminal meanwhile: just skip
                log.info("could not block %s (%s): %s", requests[n].eid, reason, outcome)
    if cancels or evictions or waiters:
        await _flow_refusals(backend, requests, now, cancels, evictions, waiters)
    return [v if v is not None else Verdict(True) for v in verdicts]


async def _flow_refusals(backend: Backend, requests: Sequence[AdmissionRequest], now: int,
                         cancels: Sequence[tuple[int, str, QuotaLimits]],
                         evictions: Sequence[tuple[int, str, QuotaLimits]],
                         waiters: Sequence[tuple[str, str, str]]) -> None:
    """The strategies of flow-control quotas over their cap: note the blocked
    ones as waiting (before any eviction frees a slot for them), cancel the
    newest, or cancel the oldest running one and pass its slot on."""
    try:
        await backend.add_quota_waiters(waiters, now)
        for n, _qid, lim in cancels:
            await cancel_member(backend, requests[n].eid,
                                f"flow control: {lim.label}: concurrency {lim.concurrency_cap} "
                                f"reached, newest cancelled")
        for n, qid, lim in evictions:
            victim = await flow_control.evict_oldest(backend, qid, lim, requests[n].eid)
            if victim is not None:
                await release_admissions(backend, [(qid, victim)])
    except Exception as exc:  # the candidates stay blocked: the unblock scanner re-checks
        log.warning("flow control after admission failed: %s", exc)


async def _not_taken_over(backend: Backend,
                          admitted: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The admissions whose execution nobody holds now. The slot belongs to
    the execution, not to the worker that admitted it: a second worker whose
    admission answered ``ALREADY_ADMITTED`` (the guard exists) may have won
    the grant and be running it while the first, whose claim then failed,
    gives the slot back. Releasing then would let one more run than the cap
    (seen with 3 workers: 5 running under a cap of 2). An execution that is
    active or holds a claim grant keeps its slot; its attempt's end releases
    it."""
    commands: list[list[str]] = []
    for _qid, eid in admitted:
        k = ExecKeys(eid)
        commands.append(["HGET", k.core, "lifecycle_phase"])
        commands.append(["EXISTS", k.claim_grant])
    replies = await backend.read_many(commands)
    out: list[tuple[str, str]] = []
    for n, pair in enumerate(admitted):
        phase, granted = replies[2 * n], replies[2 * n + 1]
        phase_text = phase.decode() if isinstance(phase, bytes) else str(phase or "")
        if phase_text != "active" and not int(granted or 0):
            out.append(pair)
    return out


async def release_admissions(backend: Backend, admitted: Sequence[tuple[str, str]]) -> None:
    """``ff_release_admission`` for each ``(quota_id, eid)``: a claim that
    failed after its admission, or an execution admitted under a quota whose
    attempt ended (our addition: 0.15 leaves the slot to the reconciler).
    Failures are logged; the ``quota_reconciler`` repairs the counter."""
    if not admitted:
        return
    try:
        admitted = await _not_taken_over(backend, admitted)
    except Exception as exc:  # fail safe: keep the slots, the reconciler repairs
        log.warning("could not check %d quota admission(s) before release: %s",
                    len(admitted), exc)
        return
    if not admitted:
        return
    calls = [ReleaseAdmission(tag=quota_tag(qid, backend.partitions), quota_id=qid, eid=eid)
             for qid, eid in admitted]
    try:
        outcomes = await backend.call_many(list(calls))
    except Exception as exc:
        log.warning("could not release %d quota admission(s): %s", len(calls), exc)
        return
    for (qid, eid), outcome in zip(admitted, outcomes, strict=True):
        if isinstance(outcome, Exception):
            log.warning("could not release the admission of %s under quota %s: %s",
                        eid, qid, outcome)
    # A freed slot goes to the longest waiting execution of a flow-control
    # quota now, not at the unblock scanner's next pass.
    await flow_control.wake_waiters(backend, [qid for qid, _eid in admitted])
