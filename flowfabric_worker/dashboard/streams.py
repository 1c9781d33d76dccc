"""Server-sent events: the live parts of the pages.

- ``/executions/{id}/events``: the output stream from its stored history,
  then live, attempt after attempt (a resumed or retried execution goes on
  in a new attempt), plus ``state`` events when the state or progress
  changes, and ``end`` once it finished and every frame was sent. Event ids
  are ``<attempt>:<frame id>``: a reconnecting browser sends the last one
  (``Last-Event-ID``) and resumes after it, so no frame is shown twice.
- ``/events/overview`` and ``/flows/{id}/events``: a fresh snapshot every
  couple of seconds.

Frames go to the browser as JSON and are inserted as text (never as HTML).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse

from flowfabric_worker.client.client import Client
from flowfabric_worker.protocol.ids import parse_execution_id
from flowfabric_worker.protocol.streams import Frame

__all__ = ["event", "execution_events", "snapshots", "sse"]

_TERMINAL = frozenset({"completed", "failed", "cancelled", "expired", "skipped"})
#: How long one read waits for a new frame before the state is looked at again.
_BLOCK_MS = 1000
_BATCH = 200
_IDLE_POLL = 0.5
_PING_EVERY = 15.0


def event(name: str, data: Any, event_id: str | None = None) -> str:
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id else "")
    return head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _frame(attempt: int, f: Frame) -> str:
    if f.summary_version is not None:
        return ""  # a summary patch: the page shows the document, not the patches
    return event("frame", {"attempt": attempt, "type": f.frame_type, "text": f.text, "ts": f.ts},
                 f"{attempt}:{f.id}")


def _resume_point(last_event_id: str | None) -> tuple[int | None, str]:
    attempt, _, frame_id = (last_event_id or "").partition(":")
    if attempt.isdigit() and frame_id:
        return int(attempt), frame_id
    return None, "0-0"


async def execution_events(client: Client, execution_id: str,
                           last_event_id: str | None = None) -> AsyncIterator[str]:
    """The events of one execution's page (see the module docstring)."""
    eid = parse_execution_id(execution_id)
    backend = client.backend
    attempt, last = _resume_point(last_event_id)
    shown: tuple[str, str, str] | None = None

    async def state_event() -> tuple[int | None, str, str | None]:
        nonlocal shown
        core = await backend.get_exec_core(eid)
        if core is None:
            return None, "", None
        now = (str(core.public_state), core.progress_pct, core.progress_message)
        out = None
        if now != shown:
            shown = now
            out = event("state", {"state": now[0], "progress_pct": now[1],
                                  "progress_message": now[2],
                                  "attempt": core.current_attempt_index})
        return core.current_attempt_index, now[0], out

    current, state, ev = await state_event()
    if ev:
        yield ev
    if attempt is None:
        attempt = current
    while True:
        if attempt is None:  # never claimed yet
            if state in _TERMINAL or not state:
                break
            await anyio.sleep(_IDLE_POLL)
            attempt, state, ev = await state_event()
            if ev:
                yield ev
            continue
        finished = state in _TERMINAL
        started = anyio.current_time()
        frames, closed_at, _ = await backend.tail_frames(
            eid, attempt, last, count=_BATCH, block_ms=0 if finished else _BLOCK_MS)
        for f in frames:
            last = f.id
            if text := _frame(attempt, f):
                yield text
        if len(frames) == _BATCH:
            continue  # more history to replay
        current, state, ev = await state_event()
        if ev:
            yield ev
        if current is not None and current > attempt:
            # Drain what this attempt wrote since, then follow the next one.
            more, _, _ = await backend.tail_frames(eid, attempt, last, count=_BATCH)
            for f in more:
                if text := _frame(attempt, f):
                    yield text
            attempt, last = attempt + 1, "0-0"
            continue
        if finished or (closed_at is not None and state in _TERMINAL):
            more, _, _ = await backend.tail_frames(eid, attempt, last, count=_BATCH)
            for f in more:
                last = f.id
                if text := _frame(attempt, f):
                    yield text
            if len(more) < _BATCH:
                break
        elif not frames and anyio.current_time() - started < _IDLE_POLL / 2:
            # A read that did not block (memory://'s XREAD): do not spin.
            await anyio.sleep(_IDLE_POLL)
    yield event("end", {"state": state})


async def snapshots(request: Request, read: Callable[[], Awaitable[Any]],
                    every: float = 2.0) -> AsyncIterator[str]:
    """``read()`` as a ``snapshot`` event every ``every`` seconds, while the
    browser listens; a failed read is reported as ``error`` and retried."""
    last_sent = anyio.current_time()
    previous = None
    while not await request.is_disconnected():
        try:
            data = await read()
        except Exception as exc:
            yield event("error", {"message": str(exc)})
        else:
            if data != previous:
                previous = data
                last_sent = anyio.current_time()
                yield event("snapshot", data)
            elif anyio.current_time() - last_sent > _PING_EVERY:
                last_sent = anyio.current_time()
                yield ": ping\n\n"
        await anyio.sleep(every)

