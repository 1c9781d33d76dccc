"""Sending signals to waiting executions (the client side of spec 03 §4–§6).

A task that waits for a signal has an open waitpoint: ``pending`` while the
task still runs (created ahead of the suspension so senders can already
address it; signals are buffered) or ``active`` once it suspended (signals are
evaluated against the resume condition and may resume it). The waitpoint
record itself holds the HMAC token a sender must present, so a client with
access to the database reads the token from there; a bridge that receives a
token from an outside party passes it as ``token=`` and it is compared in
constant time before delivery (spec 05 §4.7) — the library then re-checks it.

Used through :meth:`Client.signal <flowfabric_worker.client.Client.signal>` and
:meth:`Client.pending_waitpoints <flowfabric_worker.client.Client.pending_waitpoints>`.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Literal

import msgspec

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.signal_types import (
    SignalCheck,
    check_payload,
    expectation,
    is_waited_for,
    waited_names,
)
from flowfabric_worker.errors import (
    AmbiguousWaitpoint,
    InvalidInput,
    NoWaitpoint,
    TransportError,
    UnknownWaitpoint,
    UnmatchedSignalWarning,
)
from flowfabric_worker.protocol.errors import (
    ExecutionNotFound,
    TargetNotSignalable,
    TokenMismatch,
    WaitpointClosed,
)
from flowfabric_worker.protocol.ids import ExecutionId, execution_tag, new_uuid, parse_execution_id
from flowfabric_worker.protocol.keys import WAKE_CHANNEL, PartitionKeys
from flowfabric_worker.protocol.records import ExecCore, Waitpoint
from flowfabric_worker.protocol.signals import BufferSignal, DeliverSignal, SignalResult
from flowfabric_worker.protocol.tokens import Token
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.bounds import DEFAULT_LIMITS

__all__ = [
    "MAX_SIGNAL_PAYLOAD",
    "SignalOutcome",
    "WaitpointInfo",
    "check_signal",
    "open_waitpoints",
    "send_signal",
]

#: Client-side payload cap: 0.15 has none (spec 03 §4.4), a runaway payload
#: would sit in Redis until the signal expires. The default of
#: ``Limits.max_signal_payload_bytes``, which a client configures.
MAX_SIGNAL_PAYLOAD = DEFAULT_LIMITS.max_signal_payload_bytes
_EFFECT_RESUMED = "resume_condition_satisfied"
# Workers of a lane listen here (see Client.submit): a delivery that resumes an
# execution announces it in the same round trip so an idle worker claims it at
# once instead of at its next fallback poll.
_EFFECT_BUFFERED = "buffered_for_pending_waitpoint"
#: The library's effect for a delivered signal no matcher of the condition takes.
_EFFECT_NO_MATCH = "no_op"


class WaitpointInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An open waitpoint of an execution. ``token`` prints redacted (kid only)."""

    execution_id: str
    waitpoint_id: str
    waitpoint_key: str
    state: Literal["pending", "active"]
    token: Token
    primary: bool
    """The suspension's primary waitpoint (always False while pending)."""
    created_at: int | None = None
    activated_at: int | None = None
    expires_at: int | None = None
    signal_count: int = 0

    @classmethod
    def from_record(cls, wp: Waitpoint, *, primary: bool) -> WaitpointInfo:
        state: Literal["pending", "active"] = "active" if wp.state == "active" else "pending"
        return cls(execution_id=wp.execution_id, waitpoint_id=wp.waitpoint_id,
                   waitpoint_key=wp.waitpoint_key, state=state, token=wp.token,
                   primary=primary, created_at=wp.created_at, activated_at=wp.activated_at,
                   expires_at=wp.expires_at, signal_count=wp.signal_count)

    def to_display(self) -> dict[str, Any]:
        """A JSON-ready view with the token redacted (for ``inspect``)."""
        return {"waitpoint_id": self.waitpoint_id, "key": self.waitpoint_key,
                "state": self.state, "primary": self.primary, "token": self.token.redacted(),
                "expires_at": self.expires_at, "signals": self.signal_count}


class SignalOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What became of a signal.

    ``status``: ``resumed`` (it satisfied the resume condition; a suspended
    execution is runnable again), ``accepted`` (recorded; ``effect`` says how
    it matched, e.g. ``appended_to_waitpoint`` or ``no_op``), ``buffered``
    (the waitpoint is still pending; evaluated when the task suspends) or
    ``duplicate`` (the idempotency key was used before: nothing was recorded
    and ``signal_id`` is the first signal's id) or ``unmatched`` (recorded,
    but the wait does not wait for this name: it resumes nothing; an
    :class:`~flowfabric_worker.errors.UnmatchedSignalWarning` is issued too).
    """

    status: Literal["resumed", "accepted", "buffered", "duplicate", "unmatched"]
    signal_id: str
    effect: str
    execution_id: str
    waitpoint_id: str

    @property
    def resumed(self) -> bool:
        return self.status == "resumed"


_Status = Literal["resumed", "accepted", "buffered", "duplicate", "unmatched"]


def _outcome(result: SignalResult, eid: str, wp_id: str, *, unmatched: bool = False,
             name: str = "") -> SignalOutcome:
    status: _Status
    if result.duplicate:
        status = "duplicate"
    elif result.effect == _EFFECT_NO_MATCH or unmatched:
        # Not silent (issue 16): a misspelt name resumes nothing.
        status = "unmatched"
        warnings.warn(f"signal {name!r} was recorded on {eid}, but its wait does not wait "
                      "for that name: it resumes nothing", UnmatchedSignalWarning,
                      stacklevel=4)
    elif result.effect == _EFFECT_RESUMED:
        status = "resumed"
    elif result.effect == _EFFECT_BUFFERED:
        status = "buffered"
    else:
        status = "accepted"
    return SignalOutcome(status=status, signal_id=result.signal_id, effect=result.effect,
                         execution_id=eid, waitpoint_id=wp_id)


async def _core(backend: Backend, eid: ExecutionId) -> ExecCore:
    core = await backend.get_exec_core(eid)
    if core is None:
        raise ExecutionNotFound(execution_id=eid, function="signal")
    return core


_PAGE = 1000


async def _pending_ids(backend: Backend, eid: ExecutionId) -> list[str]:
    """Ids of the pending waitpoints owned by ``eid``, found through the
    partition's ``pending_waitpoint_expiry`` index, a page at a time."""
    keys = PartitionKeys(execution_tag(eid))
    found: list[str] = []
    offset = 0
    while True:
        page = await backend.partition_members(keys.pending_waitpoint_expiry,
                                               limit=_PAGE, offset=offset)
        members = [m for m, _ in page]
        owners = await backend.hash_fields_many([keys.waitpoint(m) for m in members],
                                                ["execution_id"])
        found += [m for m, (owner,) in zip(members, owners, strict=True) if owner == eid]
        if len(page) < _PAGE:
            return found
        offset += _PAGE


async def open_waitpoints(backend: Backend, execution_id: str, core: ExecCore | None = None,
                          *, pending: bool = True) -> list[WaitpointInfo]:
    """The execution's open waitpoints: those of its open suspension (primary
    first), then (with ``pending``) pending ones by creation time.

    Pending waitpoints are not indexed per execution; they are found through
    the partition's ``pending_waitpoint_expiry`` index (pages of pipelined
    reads of each candidate's owner), so that part costs in proportion to the
    partition's pending waitpoints.
    """
    eid = parse_execution_id(execution_id)
    core = core or await _core(backend, eid)
    t = execution_tag(eid)
    ids: list[str] = []
    primary = core.current_waitpoint_id or ""
    if primary:
        ids.append(primary)
        suspension = await backend.get_suspension(eid)
        if suspension is not None and suspension.is_open:
            try:
                extras = json.loads(suspension.additional_waitpoints_json or "[]")
            except ValueError:
                extras = []
            ids += [str(x.get("waitpoint_id", "")) for x in extras if isinstance(x, dict)]
    if pending:
        ids += await _pending_ids(backend, eid)
    unique = [i for i in dict.fromkeys(ids) if i]
    records = await backend.get_waitpoints(t, unique)
    out = [WaitpointInfo.from_record(wp, primary=wp.waitpoint_id == primary)
           for wp in records
           if wp is not None and wp.execution_id == eid and wp.state in ("pending", "active")]
    out.sort(key=lambda w: (w.state != "active", not w.primary, w.created_at or 0))
    return out


def _named(eid: ExecutionId, name: str, candidates: list[WaitpointInfo]) -> WaitpointInfo:
    """The open waitpoint of ``eid`` called ``name`` (an id or a key)."""
    for w in candidates:
        if name in (w.waitpoint_id, w.waitpoint_key):
            return w
    # Not among the open ones: maybe closed, maybe someone else's; one answer
    # for every case so a caller cannot probe other executions' waitpoints.
    raise UnknownWaitpoint(f"execution {eid} has no open waitpoint {name!r}",
                           execution_id=eid)


def _choose(eid: ExecutionId, core: ExecCore, candidates: list[WaitpointInfo]) -> WaitpointInfo:
    if not candidates:
        raise NoWaitpoint(
            f"execution {eid} ({core.public_state}) has no open waitpoint: nothing is "
            "waiting for a signal (not yet, or not any more)",
            execution_id=eid, state=str(core.public_state))
    for w in candidates:
        if w.primary:
            return w
    if len(candidates) == 1:
        return candidates[0]
    keys = ", ".join(w.waitpoint_key for w in candidates)
    raise AmbiguousWaitpoint(f"execution {eid} has {len(candidates)} open waitpoints "
                             f"({keys}); pass waitpoint= with one of them")


async def _target(backend: Backend, eid: ExecutionId, core: ExecCore,
                  waitpoint: str | None) -> WaitpointInfo:
    """The waitpoint a signal goes to, reading as little as possible: a named
    id is read directly, a suspended execution's primary needs no scan of the
    pending index."""
    if waitpoint:
        record = await backend.get_waitpoint(execution_tag(eid), waitpoint)
        if record is not None and record.execution_id == eid and record.state in (
                "pending", "active"):
            return WaitpointInfo.from_record(
                record, primary=record.waitpoint_id == core.current_waitpoint_id)
        return _named(eid, waitpoint, await open_waitpoints(backend, eid, core))
    if core.current_waitpoint_id:
        record = await backend.get_waitpoint(execution_tag(eid), core.current_waitpoint_id)
        if record is not None and record.execution_id == eid and record.state == "active":
            return WaitpointInfo.from_record(record, primary=True)
    return _choose(eid, core, await open_waitpoints(backend, eid, core))


async def _call(backend: Backend, call: DeliverSignal | BufferSignal) -> SignalResult:
    """Send once; after a lost reply settle by the signal id (spec 03 §4.3): if
    ``ff:signal:<tag>:<id>`` exists the signal was recorded, else send again."""
    t = execution_tag(call.eid)
    try:
        if isinstance(call, DeliverSignal):
            # A spurious wake (the signal did not resume) costs one empty claim round.
            return await backend.call_and_send(
                call, ("PUBLISH", WAKE_CHANNEL.format(lane=call.lane), "1"))
        return await backend.call(call)
    except TransportError as exc:
        if not exc.sent:
            raise
        recorded = await backend.get_signal(t, call.signal_id)
        if recorded is not None:
            return SignalResult(call.signal_id, recorded.observed_effect)
        return await backend.call(call)
    except (TargetNotSignalable, WaitpointClosed):
        # After a transparent resend of a keyed signal, the first copy may have
        # closed the waitpoint itself: then it is ours, not a refusal.
        recorded = await backend.get_signal(t, call.signal_id)
        if recorded is not None:
            return SignalResult(call.signal_id, recorded.observed_effect)
        raise


async def send_signal(
    backend: Backend,
    execution_id: str,
    name: str,
    payload: Any = None,
    *,
    idempotency_key: str | None = None,
    source: str = "client",
    source_type: str = "external_api",
    category: str = "callback",
    correlation_id: str = "",
    waitpoint: str | None = None,
    token: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> SignalOutcome:
    """Deliver signal ``name`` to the execution's open waitpoint (see
    :meth:`Client.signal <flowfabric_worker.client.Client.signal>`)."""
    eid, plain, body = _encoded(execution_id, name, payload, limits)
    core = await _core(backend, eid)
    wp = await _target(backend, eid, core, waitpoint)
    # Checked against what the wait recorded before anything is written.
    found = await expectation(backend, eid, wp.waitpoint_id)
    unmatched = found is not None and is_waited_for(found[0].names, name) is False
    if found is not None and not unmatched:
        check_payload(found, eid, name, plain)
    presented = wp.token
    if token is not None:
        if not wp.token.matches(token):
            raise TokenMismatch(execution_id=eid, function="signal")
        presented = Token(token)
    common: dict[str, Any] = dict(
        eid=eid, waitpoint_id=wp.waitpoint_id, signal_name=name, token=presented,
        signal_category=category, source_type=source_type, source_identity=source,
        payload=body, idempotency_key=idempotency_key or "", correlation_id=correlation_id,
    )
    if wp.state == "active":
        result = await _call(backend, DeliverSignal(
            signal_id=new_uuid(), lane=core.lane_id or "default", **common))
    else:
        result = await _call(backend, BufferSignal(signal_id=new_uuid(), **common))
    if result.duplicate or result.effect == _EFFECT_BUFFERED:
        late = await _redeliver_if_late(backend, core, result.signal_id, common)
        if late is not None:
            return late
    return _outcome(result, eid, wp.waitpoint_id, unmatched=unmatched, name=name)


def _encoded(execution_id: str, name: str, payload: Any, limits: Limits
             ) -> tuple[ExecutionId, Any, bytes]:
    """``(execution id, JSON value, bytes)`` of a signal, checked (no I/O)."""
    if not name:
        raise InvalidInput("a signal needs a name")
    eid = parse_execution_id(execution_id)
    if payload is None:
        return eid, None, b""
    plain = codec.to_builtins(payload)
    codec.check_json(plain, max_depth=limits.max_depth, what="signal payload")
    # PayloadTooLarge is an InvalidInput, as this refusal always was.
    body = codec.check_size(codec.dumps(plain), limits.max_signal_payload_bytes,
                            "signal payload", "max_signal_payload_bytes")
    return eid, plain, body


async def check_signal(backend: Backend, execution_id: str, name: str, payload: Any = None,
                       *, waitpoint: str | None = None,
                       limits: Limits = DEFAULT_LIMITS) -> SignalCheck:
    """Everything :func:`send_signal` checks before sending, and nothing sent
    (see :meth:`Client.validate_signal_payload
    <flowfabric_worker.client.Client.validate_signal_payload>`)."""
    eid, plain, _ = _encoded(execution_id, name, payload, limits)
    core = await _core(backend, eid)
    wp = await _target(backend, eid, core, waitpoint)
    found = await expectation(backend, eid, wp.waitpoint_id)
    if found is not None:
        names: list[str] | None = found[0].names
    elif wp.state == "active":
        names = await waited_names(backend, eid, wp.waitpoint_id)
    else:
        names = None  # a pending waitpoint's condition is stated when the task waits
    waited = is_waited_for(names, name)
    if found is not None and waited is not False:
        check_payload(found, eid, name, plain)
    return SignalCheck(
        execution_id=eid, waitpoint_id=wp.waitpoint_id, name=name, waited_for=waited,
        expected_names=names, payload_type=found[0].type if found is not None else "",
        schema=found[0].schema if found is not None else None)


async def _redeliver_if_late(backend: Backend, core: ExecCore, signal_id: str,
                             common: dict[str, Any]) -> SignalOutcome | None:
    """Deliver again a signal that was buffered but never evaluated.

    The buffer function also appends to a waitpoint activated a moment ago,
    where nothing evaluates the signal any more (spec 03 §4.2): a signal we
    saw pending but that landed after the task suspended. ``signal_id`` is
    ours, or — on a duplicate — the first signal with this idempotency key,
    so a retry after a crash between the two steps also completes. The
    redelivery uses the key suffixed ``#redeliver``, so it happens once.
    Returns None when there is nothing to do.
    """
    eid, wp_id = common["eid"], common["waitpoint_id"]
    t = execution_tag(eid)
    recorded = await backend.get_signal(t, signal_id)
    if recorded is None or recorded.observed_effect != _EFFECT_BUFFERED:
        return None
    now = await backend.get_waitpoint(t, wp_id)
    if now is None or now.state != "active" or now.activated_at is None:
        return None  # still pending, or closed: the buffered signal was (or will be) replayed
    if recorded.accepted_at is None or recorded.accepted_at < now.activated_at:
        return None  # buffered before activation: replayed there
    late = dict(common)
    if late["idempotency_key"]:
        late["idempotency_key"] = late["idempotency_key"] + "#redeliver"
    again = await _call(backend, DeliverSignal(signal_id=new_uuid(),
                                               lane=core.lane_id or "default", **late))
    return _outcome(again, eid, wp_id, name=common["signal_name"])
