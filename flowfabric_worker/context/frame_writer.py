"""FrameWriter: ordered, batched frame appends for one attempt.

A task producing many small frames should not pay one round trip (nor one
function call inside Redis) per frame, so frames are queued and sent by a
background flusher as ``ffw_append_frames`` batches: one call appends a whole
batch under one lease check, leaving what consecutive ``ff_append_frame``
calls would, except that summary and best-effort frames never trim away
durable ones (docs/streams.md, "What the stream keeps").

When to send (Nagle-like, adaptive):

* the first frame written while nothing is queued starts the flusher, which
  waits at most ``max_delay_s`` for company, then sends;
* while a batch is in flight, new frames queue up and go as the next batch as
  soon as it returns — a fast producer gets large batches, a slow one low
  latency;
* a batch is sent at once when it reaches ``max_batch`` frames or
  ``max_batch_bytes`` payload bytes (larger queues are split on those caps);
* a producer that gets ``max_pending_batches`` batches ahead of Redis waits
  (backpressure), so memory stays bounded.

One batch is in flight at a time, so frames keep the order they were written
in. :meth:`FrameWriter.flush` sends everything queued; the worker MUST await it
before any terminal or suspend call, because those close the stream and later
appends would be refused with ``stream_closed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from flowfabric_worker.backend._caller import Caller
from flowfabric_worker.errors import InvalidInput, PayloadError
from flowfabric_worker.protocol.stream_batch import (
    MAX_BATCH_FRAMES,
    AppendFrames,
    AppendFramesResult,
    FrameArgs,
    check_summary_patch,
)
from flowfabric_worker.protocol.streams import DEFAULT_MAX_PAYLOAD_BYTES, FrameKind, StreamMode

__all__ = ["FrameWriter"]



class FrameWriter:
    """Batches frames of one attempt under its lease fence.

    The first batch refused by the server (``stale_owner_cannot_append``,
    ``stream_closed``...) is raised from the next ``write``/``flush`` and the
    writer stays failed: frames queued after a refusal are dropped, never
    reordered. A refused batch appends nothing (the server validates a whole
    batch before writing), and a frame larger than ``max_payload_bytes`` is
    refused by :meth:`write` itself, before it is queued.
    """

    def __init__(
        self,
        backend: Caller,
        *,
        eid: str,
        attempt_index: int,
        lease_id: str,
        lease_epoch: int,
        attempt_id: str = "",
        max_batch: int = 1024,
        max_batch_bytes: int = 512 * 1024,
        max_delay_s: float = 0.001,
        max_pending_batches: int = 2,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        best_effort_ttl_ms: int = 10_000,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH_FRAMES:
            raise InvalidInput(f"max_batch must be within 1..{MAX_BATCH_FRAMES}")
        if max_batch_bytes < 1 or max_pending_batches < 1 or max_delay_s < 0:
            raise InvalidInput("max_batch_bytes and max_pending_batches must be >= 1, "
                               "max_delay_s >= 0")
        self._backend = backend
        self._fence: dict[str, Any] = dict(
            eid=eid, attempt_index=attempt_index, lease_id=lease_id,
            lease_epoch=lease_epoch, attempt_id=attempt_id,
            max_payload_bytes=max_payload_bytes, ttl_ms=best_effort_ttl_ms)
        self._max_payload = max_payload_bytes
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._max_delay_s = max_delay_s
        self._high_frames = max_batch * max_pending_batches
        self._high_bytes = max_batch_bytes * max_pending_batches
        self._pending: list[FrameArgs] = []
        self._pending_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()   # send now: a full batch or a flush()
        self._space = asyncio.Event()  # the queue shrank (backpressure)
        self._error: BaseException | None = None
        #: Frames appended so far (acknowledged by the server).
        self.sent = 0
        #: Calls made so far (one per batch).
        self.batches = 0
        self.last_result: AppendFramesResult | None = None

    # -- producers -------------------------------------------------------
    async def write(self, frame_type: str, payload: bytes | str, *,
                    mode: StreamMode = StreamMode.DURABLE, correlation_id: str = "") -> None:
        """Queue one frame. Validated now: an oversize payload or a malformed
        summary patch raises :class:`InvalidInput` and nothing is queued."""
        # This runs once per frame: keep it lean (no enum lookups, plain tuples).
        if self._error is not None:
            raise self._error
        try:
            data = payload.encode("utf-8") if isinstance(payload, str) else payload
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 to store
            raise PayloadError("frame text holds a lone surrogate, which is not valid "
                               "UTF-8") from None
        size = len(data)
        if size > self._max_payload:
            raise InvalidInput(f"payload of {size} bytes exceeds "
                               f"max_payload_bytes={self._max_payload}")
        if mode == "summary":
            check_summary_patch(data)
        # StreamMode is a str: the member itself is the wire value.
        self._pending.append((frame_type, data, mode, correlation_id, ""))
        self._pending_bytes += size
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._run())
        if len(self._pending) >= self._max_batch or self._pending_bytes >= self._max_batch_bytes:
            self._wake.set()
            while (len(self._pending) >= self._high_frames
                   or self._pending_bytes >= self._high_bytes) and self._error is None:
                self._space.clear()
                await self._space.wait()
            self._raise_if_failed()

    async def stdout(self, text: str) -> None:
        await self.write(FrameKind.STDOUT.value, text)

    async def stderr(self, text: str) -> None:
        await self.write(FrameKind.STDERR.value, text)

    async def event(self, name: str, data: Any = None, *, live: bool = False) -> None:
        """A JSON event frame; ``live=True`` sends it best-effort (may be trimmed)."""
        body = json.dumps({"event": name, "data": data}, separators=(",", ":"))
        await self.write(FrameKind.EVENT.value, body,
                         mode=StreamMode.BEST_EFFORT if live else StreamMode.DURABLE)

    async def blob(self, data: bytes, *, correlation_id: str = "") -> None:
        await self.write(FrameKind.BLOB.value, data, correlation_id=correlation_id)

    async def summary(self, patch: dict[str, Any]) -> None:
        """Merge ``patch`` into the rolling summary (JSON Merge Patch, spec 03 §8.7)."""
        await self.write("summary", json.dumps(patch, separators=(",", ":")),
                         mode=StreamMode.SUMMARY)

    # -- flushing --------------------------------------------------------
    async def flush(self) -> None:
        """Send everything queued (no waiting for company); raises the first
        refusal, if any."""
        while self._error is None and (self._pending or self._flusher is not None):
            if self._flusher is None:
                self._flusher = asyncio.get_running_loop().create_task(self._run())
            self._wake.set()
            # wait() (not await task): cancelling this flush must not cancel the send.
            await asyncio.wait({self._flusher})
        self._raise_if_failed()

    async def aclose(self) -> None:
        """Flush and stop; call before completing, failing or suspending."""
        await self.flush()

    def discard(self) -> int:
        """Drop queued frames without sending them (the lease is gone, so the
        server would refuse them anyway); returns how many were dropped."""
        if self._flusher is not None and self._flusher is not asyncio.current_task():
            self._flusher.cancel()
        self._flusher = None
        dropped = len(self._pending)
        self._pending, self._pending_bytes = [], 0
        self._space.set()
        return dropped

    async def _run(self) -> None:
        try:
            if self._max_delay_s > 0 and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._max_delay_s)
            while self._pending and self._error is None:
                self._wake.clear()
                batch = self._take()
                self._space.set()  # the producer may queue the next batch meanwhile
                try:
                    result = await self._backend.call(
                        AppendFrames(frames=batch, prevalidated=True, **self._fence))
                except Exception as exc:  # kept, raised to the producer
                    self._error = exc
                    self._pending, self._pending_bytes = [], 0
                    break
                self.sent += result.appended
                self.batches += 1
                self.last_result = result
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None
            self._space.set()

    def _take(self) -> tuple[FrameArgs, ...]:
        """The oldest frames up to the batch caps (at least one)."""
        pending = self._pending
        if len(pending) <= self._max_batch and self._pending_bytes <= self._max_batch_bytes:
            batch = tuple(pending)
            self._pending, self._pending_bytes = [], 0
            return batch
        n = min(len(pending), self._max_batch)
        size = 0
        for i in range(n):
            size += len(pending[i][1])
            if size > self._max_batch_bytes and i > 0:
                n = i
                size -= len(pending[i][1])
                break
        batch = tuple(pending[:n])
        del pending[:n]
        self._pending_bytes -= size
        return batch

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
