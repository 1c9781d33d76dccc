"""Everything known about one execution, in one read: what the dashboard's
execution page shows (attempts, journal, waitpoints, signals received).

Nothing returned here carries a waitpoint token or any keystore value: the
views below copy the fields people need and leave the secrets behind, so a
page rendered from them cannot leak one by accident.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.ids import execution_tag, parse_execution_id
from flowfabric_worker.protocol.keys import PartitionKeys
from flowfabric_worker.protocol.records import Attempt, ExecCore
from flowfabric_worker.protocol.streams import ReadSummary

__all__ = ["AttemptView", "ExecutionDetail", "SignalView", "StepView", "WaitpointView",
           "read_execution_detail"]

#: Signals shown per waitpoint: a chatty waitpoint must not make the page huge.
_SIGNALS_SHOWN = 50
_PAYLOAD_SHOWN = 4096


@dataclass(frozen=True)
class AttemptView:
    index: int
    type: str
    state: str
    started_at: int | None
    ended_at: int | None
    worker_id: str
    failure_category: str
    failure_reason: str

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.ended_at:
            return self.ended_at - self.started_at
        return None

    @classmethod
    def of(cls, a: Attempt) -> AttemptView:
        return cls(index=a.attempt_index, type=str(a.attempt_type), state=str(a.attempt_state),
                   started_at=a.started_at, ended_at=a.ended_at,
                   worker_id=a.worker_id or a.worker_instance_id or "",
                   failure_category=a.failure_category, failure_reason=a.failure_reason)


@dataclass(frozen=True)
class StepView:
    index: int
    name: str
    kind: str
    result: str


@dataclass(frozen=True)
class SignalView:
    """A received signal, without its token."""

    signal_id: str
    name: str
    source: str
    accepted_at: int | None
    effect: str
    payload: str


@dataclass(frozen=True)
class WaitpointView:
    """A waitpoint, without its token: key, state, what it still awaits."""

    waitpoint_id: str
    key: str
    state: str
    created_at: int | None
    expires_at: int | None
    awaiting: list[str]
    signals: list[SignalView] = field(default_factory=list)


@dataclass(frozen=True)
class ExecutionDetail:
    core: ExecCore
    attempts: list[AttemptView]
    steps: list[StepView]
    waitpoints: list[WaitpointView]
    summary: dict[str, Any] | None
    result: str | None
    timeout_at: int | None
    timeout_behavior: str

    @property
    def state(self) -> str:
        return str(self.core.public_state)


def _text(data: bytes | None, limit: int = _PAYLOAD_SHOWN) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


async def _waitpoints(backend: Backend, eid: str) -> list[WaitpointView]:
    eid_ = parse_execution_id(eid)
    t = execution_tag(eid_)
    ids = await backend.execution_waitpoints(eid_)
    records = await backend.get_waitpoints(t, ids)
    conds = await backend.hashes([PartitionKeys(t).waitpoint_condition(i) for i in ids])
    out: list[WaitpointView] = []
    for wp, cond in zip(records, conds, strict=True):
        if wp is None:
            continue
        awaiting = [cond.get(f"matcher:{i}:name") or "*"
                    for i in range(int(cond.get("total_matchers") or 0))
                    if cond.get(f"matcher:{i}:satisfied") != "1"]
        entries = (await backend.waitpoint_signal_entries(t, wp.waitpoint_id))[-_SIGNALS_SHOWN:]
        pairs = await backend.signals_with_payloads(t, [sid for sid, _ in entries])
        signals = [SignalView(signal_id=r.signal_id, name=r.signal_name,
                              source=r.source_identity, accepted_at=r.accepted_at,
                              effect=r.observed_effect, payload=_text(p))
                   for r, p in pairs]
        out.append(WaitpointView(waitpoint_id=wp.waitpoint_id, key=wp.waitpoint_key,
                                 state=wp.state, created_at=wp.created_at,
                                 expires_at=wp.expires_at,
                                 awaiting=awaiting if wp.state != "closed" else [],
                                 signals=signals))
    out.sort(key=lambda w: w.created_at or 0)
    return out


async def read_execution_detail(backend: Backend, execution_id: str) -> ExecutionDetail:
    """The execution's record, attempts, step journal, waitpoints (with the
    signals each received), summary document and (completed) result."""
    eid = parse_execution_id(execution_id)
    core = await backend.get_exec_core(eid)
    if core is None:
        raise InvalidInput(f"execution {eid} does not exist")
    attempts = [AttemptView.of(a) for a in await backend.list_attempts(eid)]
    journal, suspension = await backend.journal_and_suspension(eid)
    steps = [StepView(index=j.index, name=j.name, kind=j.kind, result=_text(j.result, 512))
             for j in journal]
    summary: dict[str, Any] | None = None
    if core.current_attempt_index is not None:
        read = await backend.read_summary(ReadSummary(
            eid=eid, attempt_index=core.current_attempt_index))
        summary = read.document if read.version else None
    result = None
    if str(core.public_state) == "completed":
        raw = await backend.get_result(eid)
        result = _text(raw)
        try:  # pretty-printed when it is JSON (it always is from this SDK)
            result = json.dumps(json.loads(raw or b"null"), indent=2)[:_PAYLOAD_SHOWN]
        except ValueError:
            pass
    open_susp = suspension if suspension is not None and suspension.is_open else None
    return ExecutionDetail(
        core=core, attempts=attempts, steps=steps, waitpoints=await _waitpoints(backend, eid),
        summary=summary, result=result,
        timeout_at=open_susp.timeout_at if open_susp else None,
        timeout_behavior=open_susp.timeout_behavior if open_susp else "")

