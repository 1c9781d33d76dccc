"""Exception → (category, reason, retry?) mapping (design.md §3, spec 05 §4.3)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from flowfabric_worker.errors import (
    BudgetExceeded,
    KeystoreNotInitialized,
    NonDeterminismError,
    PayloadError,
    Permanent,
    SignalTimeout,
    Transient,
)

#: Bound on the stored reason so a huge message or traceback never bloats the core.
MAX_REASON_CHARS = 2000

_DEFECTS = (AssertionError, NotImplementedError, RecursionError, MemoryError, SystemError)


@dataclass(frozen=True)
class FailureDecision:
    """How one failed attempt is reported to the engine."""

    category: str
    reason: str
    retry: bool  # False → send an empty retry policy (terminal now)


def describe(exc: BaseException, *, frames: int = 3) -> str:
    """``Type: message`` plus the cause chain and a short traceback, bounded."""
    parts = [f"{type(exc).__name__}: {exc}"]
    seen: set[int] = {id(exc)}
    cur: BaseException | None = exc.__cause__ or exc.__context__
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(f"{type(cur).__name__}: {cur}")
        cur = cur.__cause__ or cur.__context__
    text = ": ".join(parts)
    tb = "".join(traceback.format_tb(exc.__traceback__, limit=-frames)) if exc.__traceback__ else ""
    if tb:
        text = f"{text}\n{tb.rstrip()}"
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 3] + "..."
    return text


def classify(exc: BaseException, retry_policy: Any = None) -> FailureDecision:
    """Map an exception escaping a task to a failure decision.

    ``retry_policy`` is the task's ``Retry`` (``should_retry(exc)`` applies its
    ``retry_on`` / ``give_up_on``); the remaining-attempts check happens when
    the policy JSON is built.
    """
    reason = describe(exc)
    if isinstance(exc, BudgetExceeded):
        # The reference example's reason (spec 04 §6.1), with the details.
        return FailureDecision("budget_hard_breach", f"budget_hard_breach: {reason}",
                               retry=False)
    if isinstance(exc, (Permanent, PayloadError)):
        return FailureDecision("permanent", reason, retry=False)
    # A replay would meet the same journal (or the same empty keystore):
    # retrying cannot help, so these end the execution now.
    if isinstance(exc, NonDeterminismError):
        return FailureDecision("nondeterministic", reason, retry=False)
    if isinstance(exc, SignalTimeout):
        return FailureDecision("signal_timeout", reason, retry=False)
    if isinstance(exc, KeystoreNotInitialized):
        return FailureDecision("configuration", reason, retry=False)
    if isinstance(exc, TimeoutError):
        category = "timeout"
    elif isinstance(exc, Transient):
        category = "transient"
    elif isinstance(exc, _DEFECTS):
        category = "handler_panic"
        reason = f"handler panicked: {reason}"[:MAX_REASON_CHARS]
    else:
        category = "handler_error"
    retry = True
    should = getattr(retry_policy, "should_retry", None)
    if callable(should):
        retry = bool(should(exc))
    return FailureDecision(category, reason, retry=retry)
