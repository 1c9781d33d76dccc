"""One place where an attempt's lifecycle becomes log lines, metrics and a span.

The executor and the worker call :class:`Attempt` at each event; each call
writes one INFO line on the ``flowfabric_worker.lifecycle`` logger with the
structured fields ``event``, ``execution_id``, ``task``, ``attempt`` (the
contract's attempt index) and ``lane`` (docs/observability.md), counts it in
the process's metrics recorder and marks the attempt's span. With metrics
and tracing off this is a log call per event and two no-op calls.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection
from types import TracebackType
from typing import Any

from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.observability import tracing
from flowfabric_worker.observability.metrics import Recorder, recorder
from flowfabric_worker.worker.failures import FailureDecision
from flowfabric_worker.worker.port import FailOutcome

__all__ = ["Attempt", "Telemetry", "lifecycle_log"]

#: The logger of every lifecycle line (filter or route it by this name).
lifecycle_log = logging.getLogger("flowfabric_worker.lifecycle")

#: Categories whose failure line carries the traceback: the task's own code
#: raised (not a timeout, a refusal or a ``Permanent`` it chose to raise).
_TRACEBACK_CATEGORIES = frozenset({"handler_error", "handler_panic"})


def _retry_delay_s(policy_json: str) -> float:
    """The backoff a fail call asked for (``Retry.fail_policy_json``)."""
    try:
        return int((json.loads(policy_json).get("backoff") or {}).get("delay_ms") or 0) / 1000
    except (ValueError, TypeError, AttributeError):
        return 0.0


class Telemetry:
    """The worker's recorder and identity, shared by its attempts."""

    def __init__(self, metrics: Recorder | None = None, worker_id: str = "") -> None:
        self.metrics = metrics if metrics is not None else recorder()
        self.worker_id = worker_id

    def begin(self, lease: Claimed) -> Attempt:
        """The attempt of ``lease`` starts now (logged as ``started``, or
        ``resumed`` after a suspension)."""
        att = Attempt(self, lease)
        att.announce()
        return att

    def worker_started(self, *, lanes: Collection[str], tasks: Collection[str],
                       concurrency: int, mode: str, worker_id: str) -> None:
        lifecycle_log.info(
            "worker started: lanes %s, concurrency %d, %s mode", ",".join(lanes), concurrency,
            mode, extra={"event": "worker_started", "worker_id": worker_id,
                         "lanes": list(lanes), "tasks": sorted(tasks),
                         "concurrency": concurrency, "mode": mode})

    def worker_stopped(self, *, worker_id: str, ran: int, handed_back: int) -> None:
        lifecycle_log.info(
            "worker stopped after %d attempts (%d handed back)", ran, handed_back,
            extra={"event": "worker_stopped", "worker_id": worker_id, "attempts": ran,
                   "handed_back": handed_back})


class Attempt:
    """One attempt's events. Enter it around the attempt's run: its span is
    then current for the body (steps and children nest under it)."""

    __slots__ = ("_cm", "fields", "lane", "lease", "span", "started_at", "task", "telemetry")

    def __init__(self, telemetry: Telemetry, lease: Claimed) -> None:
        self.telemetry = telemetry
        self.lease = lease
        self.task = lease.execution_kind
        self.lane = lease.lane
        self.started_at = time.monotonic()
        self.fields: dict[str, Any] = {
            "execution_id": lease.execution_id, "task": self.task,
            "attempt": lease.attempt_index, "lane": self.lane}
        self.span = tracing.AttemptSpan(None)
        self._cm: Any = None

    def announce(self) -> None:
        """The body is about to run: ``started`` (``resumed`` after a suspension)."""
        lease = self.lease
        latency = self.started_at - lease.claim_sent_at if lease.claim_sent_at else 0.0
        self.telemetry.metrics.attempt_started(self.task, self.lane, lease.attempt_type,
                                               latency)
        event = "resumed" if lease.resumed else "started"
        self._log(logging.INFO, event, "%s (%s attempt)", event, lease.attempt_type,
                  attempt_type=lease.attempt_type)

    def __enter__(self) -> Attempt:
        lease = self.lease
        self._cm = tracing.attempt_span(
            self.task, self.lane, lease.execution_id, lease.tags,
            {"ffw.attempt.index": lease.attempt_index, "ffw.attempt.type": lease.attempt_type,
             "ffw.worker.id": self.telemetry.worker_id})
        self.span = self._cm.__enter__()
        if lease.resumed:
            self.span.event("resumed")
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(typ, exc, tb)

    def _log(self, level: int, event: str, msg: str, *args: Any,
             exc: BaseException | None = None, **extra: Any) -> None:
        if lifecycle_log.isEnabledFor(level):
            lifecycle_log.log(level, msg, *args, exc_info=exc,
                              extra={"event": event, **self.fields, **extra})

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def succeeded(self) -> None:
        took = self.elapsed()
        self.telemetry.metrics.attempt_finished(self.task, self.lane, "ok", "", took)
        self._log(logging.INFO, "succeeded", "succeeded in %.3f s", took,
                  duration_s=round(took, 6))

    def failed(self, decision: FailureDecision, outcome: FailOutcome | None,
               retry: Any, policy_json: str, exc: BaseException | None) -> None:
        """A fail call answered: a retry was scheduled, or the execution failed."""
        took = self.elapsed()
        scheduled = outcome.retry_scheduled if outcome is not None else bool(policy_json)
        category = decision.category
        summary = decision.reason.split("\n", 1)[0]
        if scheduled:
            self.telemetry.metrics.attempt_finished(self.task, self.lane, "retry", category,
                                                    took)
            delay = _retry_delay_s(policy_json)
            upcoming = self.lease.retry_count + 2
            most = int(getattr(retry, "max_attempts", 0) or 0)
            self.span.event("retry_scheduled", {"ffw.retry.delay_s": delay,
                                                "ffw.failure.category": category})
            self._log(logging.INFO, "retry_scheduled",
                      "retrying in %.1f s, attempt %d of %d (%s: %s)", delay, upcoming, most,
                      category, summary, category=category, error=summary,
                      retry_in_s=delay, next_attempt=upcoming, max_attempts=most,
                      duration_s=round(took, 6))
            return
        outcome_label = "timeout" if category == "timeout" else "error"
        self.telemetry.metrics.attempt_finished(self.task, self.lane, outcome_label, category,
                                                took)
        self.span.failed(f"{category}: {summary}", exc)
        self._log(logging.INFO, "failed", "failed (%s): %s", category, summary,
                  exc=exc if category in _TRACEBACK_CATEGORIES else None,
                  category=category, error=summary, duration_s=round(took, 6))

    def suspended(self) -> None:
        self.telemetry.metrics.attempt_interrupted(self.task, self.lane, "suspended")
        self.span.event("suspended")
        self._log(logging.INFO, "suspended", "suspended (slot released until resumed)")

    def lease_lost(self, reason: str) -> None:
        """The lease is gone: no terminal call of ours can land. A refusal
        meaning the execution is no longer active (cancelled, expired by a
        scanner) is counted as ``cancelled``."""
        how = "cancelled" if "execution_not_active" in reason else "lease_lost"
        self.telemetry.metrics.attempt_interrupted(self.task, self.lane, how)
        self.span.event("lease_lost", {"ffw.reason": reason})
        self.span.failed(f"lease lost: {reason}")
        self._log(logging.WARNING, "lease_lost", "lease lost: %s", reason, reason=reason)

    def handed_back(self, why: str = "on drain") -> None:
        """Released without a terminal call; the same attempt resumes elsewhere."""
        self.telemetry.metrics.attempt_interrupted(self.task, self.lane, "handed_back")
        self._log(logging.INFO, "handed_back", "handed back %s (the same attempt "
                  "resumes elsewhere)", why)
