"""``Client.submit_many``: many executions of one task in pipelined chunks.

The whole batch is checked and its creation calls built before the first
write, so a bad item refuses the batch with nothing written
(:class:`BatchItemInvalid`, naming the item). The calls then go out in chunks
of :data:`CHUNK` through one pipeline each (``Backend.call_many``), followed
by one wake-up of the lane per chunk instead of one per item. What the
library refuses after that is per item: the chunk is finished, later chunks
are not sent, and :class:`BatchSubmitError` says which items were written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.run_handle import HandleOwner, RunHandle
from flowfabric_worker.client.submission import Submission, now_ms
from flowfabric_worker.errors import FlowFabricError, InvalidInput, TransportError
from flowfabric_worker.protocol.budgets import AttachAdmission
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import parse_execution_id
from flowfabric_worker.protocol.lifecycle import CreateExecution, CreateResult
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks.bounds import check_idempotency_key

__all__ = ["CHUNK", "DURABLE_WINDOW", "BatchItemInvalid", "BatchSubmitError", "submit_batch"]

log = logging.getLogger("flowfabric_worker.client")

R = TypeVar("R")

#: Creation calls per pipeline. Large enough that the round trip is a small
#: part of a chunk's time, small enough that Redis, which runs a client's
#: pipelined calls back to back, holds other clients up for a few
#: milliseconds at most (a create is some tens of µs of server time).
CHUNK = 200

#: With durability "strict" / "replicas:N", items written at once, each
#: with its own wait (see :func:`submit_batch`).
DURABLE_WINDOW = 32

_Call = tuple[CreateExecution, AttachAdmission | None]


class BatchItemInvalid(InvalidInput):
    """An item of a ``submit_many`` batch was refused before anything was
    sent, so nothing of the batch was written. ``index`` is the item's
    position in the batch, ``error`` the refusal it got (its type is the one
    ``submit`` raises for the same input: :class:`PayloadError`,
    :class:`PayloadTooLarge`, :class:`InvalidInput`)."""

    def __init__(self, index: int, error: FlowFabricError) -> None:
        super().__init__(f"item {index}: {error}")
        self.index = index
        self.error = error


class BatchSubmitError(FlowFabricError):
    """Part of a ``submit_many`` batch was written, part was not.

    ``handles[i]`` is the handle of item ``i`` when it was written (or
    found a duplicate of its idempotency key), else None. ``errors[i]`` is
    why item ``i`` was not written: a refusal by the library (a
    :class:`ContractError`, :class:`ScriptError`), or a
    :class:`TransportError` for every item of a chunk whose pipeline was
    lost (those may or may not have been written: resubmit them with
    idempotency keys to be sure). Items in neither (:attr:`unsent`) come
    after the failed chunk and were never sent.
    """

    def __init__(self, handles: list[RunHandle[Any] | None],
                 errors: dict[int, BaseException]) -> None:
        self.handles = handles
        self.errors = errors
        first = min(errors)
        super().__init__(
            f"submit_many: {len(errors)} of {len(handles)} items failed (item {first}: "
            f"{errors[first]}); {len(self.written)} written, {len(self.unsent)} not sent")

    @property
    def written(self) -> list[int]:
        """Indices of the items that have an execution."""
        return [i for i, h in enumerate(self.handles) if h is not None]

    @property
    def unsent(self) -> list[int]:
        """Indices of the items never sent (after the failed chunk)."""
        return [i for i, h in enumerate(self.handles) if h is None and i not in self.errors]


def _keys(idempotency_keys: Sequence[str | None] | None, count: int,
          limits: Limits) -> list[str]:
    if idempotency_keys is None:
        return [""] * count
    if isinstance(idempotency_keys, str) or len(idempotency_keys) != count:
        raise InvalidInput(
            "idempotency_keys must be a sequence with one key (or None) per item: "
            f"{count} items")
    keys: list[str] = []
    for i, key in enumerate(idempotency_keys):
        try:
            keys.append(check_idempotency_key(key, limits))
        except FlowFabricError as exc:
            raise BatchItemInvalid(i, exc) from exc
    return keys


def prepare(sub: Submission[Any], items: Sequence[Any],
            idempotency_keys: Sequence[str | None] | None) -> list[_Call]:
    """Every item's creation call, or :class:`BatchItemInvalid` for the first
    bad one (nothing sent)."""
    keys = _keys(idempotency_keys, len(items), sub.limits)
    sub = sub.for_batch()
    now = now_ms()
    calls: list[_Call] = []
    for i, item in enumerate(items):
        # One rule, no guessing: an item is the tuple of the call's positional
        # arguments. A list could as well be one argument; Task.map is the
        # way to pass single arguments.
        if not isinstance(item, tuple):
            raise BatchItemInvalid(i, InvalidInput(
                f"expected a tuple of positional arguments, got {type(item).__name__} "
                "(a one-argument task takes (value,), or use task.map(client, values))"))
        try:
            calls.append(sub.build(sub.payload(item, {}), keys[i], now))
        except FlowFabricError as exc:
            raise BatchItemInvalid(i, exc) from exc
    return calls


async def submit_batch(owner: HandleOwner, sub: Submission[R],
                       calls: list[_Call]) -> list[RunHandle[R]]:
    """Write prepared calls; one handle per item, in order."""
    backend = owner.backend
    handles: list[RunHandle[Any] | None] = [None] * len(calls)
    if not calls:
        return []
    if backend.durability.waits:
        await _durable(owner, sub, calls, handles)
    else:
        await _pipelined(owner, sub, calls, handles)
    written = [h for h in handles if h is not None]
    assert len(written) == len(calls)  # a failed item raised BatchSubmitError
    return written


def _handle(owner: HandleOwner, sub: Submission[R], create: CreateExecution,
            result: CreateResult) -> RunHandle[R]:
    # A new execution has the id we minted (no need to re-check the reply);
    # a duplicate answers the id of the execution holding the key.
    eid = parse_execution_id(result.execution_id) if result.duplicate else create.eid
    return RunHandle(owner, eid, sub.definition, duplicate=result.duplicate)


def _fcalls(chunk: list[_Call]) -> list[FCall[Any]]:
    fns: list[FCall[Any]] = []
    for create, attach in chunk:
        fns.append(create)
        if attach is not None:
            fns.append(attach)  # right after its create, before the wake-up
    return fns


async def _pipelined(owner: HandleOwner, sub: Submission[R], calls: list[_Call],
                     handles: list[RunHandle[Any] | None]) -> None:
    backend = owner.backend
    # The lane registry first, once for the batch (every item has the same
    # lane): then a lost reply here has written no execution yet.
    await backend.read_many([sub.registry_command()])
    wake = sub.wake_command()
    # One chunk at a time. Two in flight (Redis running one while this side
    # encodes the next) measured no faster on a loaded two-core machine, and
    # would make a refusal leave the next chunk written too.
    for start in range(0, len(calls), CHUNK):
        size = min(CHUNK, len(calls) - start)
        try:
            replies = await backend.call_many(_fcalls(calls[start:start + size]))
        except FlowFabricError as exc:  # a lost pipeline: this chunk's outcome is unknown
            raise BatchSubmitError(
                handles, dict.fromkeys(range(start, start + size), exc)) from exc
        errors: dict[int, BaseException] = {}
        written = _record(owner, sub, calls, start, size, replies, handles, errors)
        if wake is not None and written:
            await _wake(backend, wake)  # after the creates: a woken worker finds them
        if errors:
            raise BatchSubmitError(handles, errors)


def _record(owner: HandleOwner, sub: Submission[R], calls: list[_Call], start: int,
            size: int, replies: list[Any], handles: list[RunHandle[Any] | None],
            errors: dict[int, BaseException]) -> int:
    """Put one chunk's outcomes in ``handles`` / ``errors``; how many got a handle."""
    written = 0
    j = 0
    for i in range(start, start + size):
        create, attach = calls[i]
        reply = replies[j]
        # An attachment's answer is not looked at, as in submit: it is False
        # only for a duplicate, whose core is not under our id.
        j += 1 if attach is None else 2
        if isinstance(reply, BaseException):
            errors[i] = reply
        else:
            handles[i] = _handle(owner, sub, create, reply)
            written += 1
    return written


async def _wake(backend: Backend, wake: list[Any]) -> None:
    """One wake-up for the chunk, after its creates (a woken worker must find
    them). Its loss costs latency only: the executions are written, and an
    idle worker's backoff poll finds them."""
    try:
        await backend.read_many([wake])
    except TransportError as exc:
        log.warning("submit_many: wake-up of lane %s lost (%s); its workers will find "
                    "the new executions on their next poll", wake[1], exc)


async def _durable(owner: HandleOwner, sub: Submission[R], calls: list[_Call],
                   handles: list[RunHandle[Any] | None]) -> None:
    """With durability "strict" / "replicas:N" each item goes out as
    ``submit`` sends it, with its own wait: ``WAITAOF`` / ``WAIT`` confirm
    what their connection wrote, and ``Backend.call_many`` pipelines on the
    shared connection, where a wait would hold up every other caller. A
    window of items at a time, so their waits end at the same fsync."""
    backend = owner.backend
    for start in range(0, len(calls), DURABLE_WINDOW):
        window = calls[start:start + DURABLE_WINDOW]
        results = await asyncio.gather(
            *(sub.send_one(backend, create, attach) for create, attach in window),
            return_exceptions=True)
        errors: dict[int, BaseException] = {}
        for offset, ((create, _), result) in enumerate(zip(window, results, strict=True)):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation and the like are not an item's failure
                errors[start + offset] = result
            else:
                handles[start + offset] = _handle(owner, sub, create, result)
        if errors:
            raise BatchSubmitError(handles, errors)
