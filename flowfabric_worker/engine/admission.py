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
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.observability.metrics import recorder
from flowfabric_worker.protocol.budgets import (
    AdmissionResult,
    CheckAdmissionAndRecord,
    ReleaseAdmission,
)
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import validate_uuid
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
                recorder().quota_hit("rate" if reply.status == "RATE_EXCEEDED"
                                     else "concurrency")
                blocks.append((n, "waiting_for_quota", _quota_detail(qid, lim, reply)))
                verdicts[n] = Verdict(False)
    if blocks:
        outcomes = await backend.call_many([
            BlockExecutionForAdmission(eid=requests[n].eid, lane_id=requests[n].lane,
                                       blocking_reason=reason, blocking_detail=detail,
                                       now_ms=now)
            for n, reason, detail in blocks])
        for (n, reason, _detail), outcome in zip(blocks, outcomes, strict=True):
            if isinstance(outcome, Exception):  # e.g. went terminal meanwhile: just skip
                log.info("could not block %s (%s): %s", requests[n].eid, reason, outcome)
    return [v if v is not None else Verdict(True) for v in verdicts]


async def release_admissions(backend: Backend, admitted: Sequence[tuple[str, str]]) -> None:
    """``ff_release_admission`` for each ``(quota_id, eid)``: a claim that
    failed after its admission, or an execution admitted under a quota whose
    attempt ended (our addition: 0.15 leaves the slot to the reconciler).
    Failures are logged; the ``quota_reconciler`` repairs the counter."""
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
