"""The resume condition of a wait, built from ``ctx.wait_for_signal``'s
arguments and evaluated the way the library does; the payload types a typed
wait records for senders (spec 03 §3.1)."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.signal_types import MAX_RECORD_BYTES, SignalTypes
from flowfabric_worker.tasks.payload_schema import schema_of, type_label

__all__ = [
    "ON_TIMEOUT",
    "OnTimeout",
    "satisfied_by",
    "signal_names",
    "types_record",
    "wait_condition",
]

log = logging.getLogger("flowfabric_worker.signals")

OnTimeout = Literal["fail", "cancel", "expire", "auto_resume"]
#: ``on_timeout`` → the suspension's wire ``timeout_behavior`` (spec 03 §3.5).
ON_TIMEOUT: dict[str, str] = {
    "fail": "fail", "cancel": "cancel", "expire": "expire",
    "auto_resume": "auto_resume_with_timeout_signal",
}

_ENC = msgspec.json.Encoder()


def signal_names(names: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if names is None:
        return []
    out = [names] if isinstance(names, str) else list(names)
    for n in out:
        if not isinstance(n, str) or not n:
            raise InvalidInput("signal names must be non-empty strings")
        if n.startswith("__"):
            raise InvalidInput(f"signal names beginning with '__' are reserved: {n!r}")
    return out


def wait_condition(names: list[str], mode: str | int, behavior: str) -> tuple[str, int, bool]:
    """(condition JSON, signals needed, returns a single Signal?)."""
    if mode == "any":
        return C.signal_set(names, mode="any", timeout_behavior=behavior), 1, True
    if mode == "all":
        if not names:
            raise InvalidInput('mode="all" needs signal names')
        return C.signal_set(names, mode="all", timeout_behavior=behavior), len(names), False
    if isinstance(mode, bool) or not isinstance(mode, int) or mode < 1:
        raise InvalidInput(f'mode must be "any", "all" or a count >= 1, not {mode!r}')
    # Each signal satisfies at most one matcher (spec 03 §3.1): one matcher
    # per name per needed signal, so any `mode` signals of those names resume.
    matchers = (names or [""]) * mode
    return C.signal_set(matchers, mode="any", minimum=mode, timeout_behavior=behavior), mode, False


def satisfied_by(condition: str, entries: list[tuple[str, str]]) -> list[str] | None:
    """Evaluate a signal-set condition over ``(signal_id, name)`` entries the
    way the library does (spec 03 §3.1): each signal satisfies the first
    unsatisfied matcher with its name (or a wildcard). The satisfying ids in
    matcher order, or ``None`` when the condition is not met."""
    doc = json.loads(condition)
    names: list[str] = list(doc.get("required_signal_names") or [""])
    got: list[str | None] = [None] * len(names)
    for sid, name in entries:
        for j, want in enumerate(names):
            if got[j] is None and want in ("", name):
                got[j] = sid
                break
    done = [g for g in got if g is not None]
    if doc.get("signal_match_mode") == "all":
        return done if len(done) == len(names) else None
    return done if len(done) >= int(doc.get("minimum_signal_count") or 1) else None



def types_record(names: list[str], payload_type: Any) -> bytes | None:
    """What a typed wait records for senders to check payloads against
    (protocol/signal_types.py), or None: no type, no schema for it, or one too
    big to store (then senders do not check; the task still decodes)."""
    if payload_type is None:
        return None
    schema = schema_of(payload_type)
    if schema is None:
        return None
    record = _ENC.encode(SignalTypes(names=names, type=type_label(payload_type),
                                     schema=schema))
    if len(record) > MAX_RECORD_BYTES:
        log.warning("the JSON Schema of %s is over %d bytes: signals are not checked "
                    "against it when sent", type_label(payload_type), MAX_RECORD_BYTES)
        return None
    return record
