"""Consuming an attempt stream: replay from an offset, then tail live.

    async for frame in frames(backend, eid):
        print(frame.text)

The iterator follows spec 03 §8.8: blocking ``XREAD`` steps after the last
seen id, a close check after each step, and a final range read after the
close so frames written just before it are not lost. A dropped connection is
retried from the last id, so no frame is delivered twice or skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowfabric_worker.backend.ops_streams import StreamOps
from flowfabric_worker.errors import TransportError
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.streams import Frame, ReadAttemptStream, StreamMode

__all__ = ["frames"]

_DROPS = (RedisConnectionError, RedisTimeoutError, TransportError, OSError)


async def _current_attempt(backend: StreamOps, eid: str) -> int:
    raw = await backend.reads.hget(ExecKeys(eid).core, "current_attempt_index")
    text = (raw or b"").decode()
    return int(text) if text.isdigit() else 0


async def frames(
    backend: StreamOps,
    eid: str,
    attempt: int | None = None,
    after: str | None = None,
    follow: bool = True,
    include_best_effort: bool = True,
    *,
    block_ms: int = 1000,
    batch: int = 500,
    reconnect_delay_s: float = 0.2,
) -> AsyncIterator[Frame]:
    """Frames of one attempt (default: the current one) after id ``after``.

    With ``follow=False`` it stops after the replay; otherwise it tails until
    the stream is closed.
    """
    index = attempt if attempt is not None else await _current_attempt(backend, eid)
    last = after or "0-0"

    def wanted(f: Frame) -> bool:
        return include_best_effort or f.mode is not StreamMode.BEST_EFFORT

    while True:
        try:
            got, closed_at, _ = await backend.tail_frames(
                eid, index, last, count=batch, block_ms=block_ms if follow else 0)
        except _DROPS:
            await asyncio.sleep(reconnect_delay_s)
            continue
        for f in got:
            last = f.id
            if wanted(f):
                yield f
        if not follow and len(got) < batch:
            return
        if closed_at is not None:
            break
    # Drain what was appended between the last read and the close.
    while True:
        try:
            page = await backend.read_attempt_stream(ReadAttemptStream(
                eid=eid, attempt_index=index, from_id="(" + last, count_limit=batch))
        except _DROPS:
            await asyncio.sleep(reconnect_delay_s)
            continue
        for f in page.frames:
            last = f.id
            if wanted(f):
                yield f
        if len(page.frames) < batch:
            return
