"""FrameWriter: ordered, batched frame appends for one attempt.

A task producing many small frames should not pay one round trip per frame,
so frames are queued and sent as one pipeline of ``ff_append_frame`` calls
when the batch is full (count or bytes), after a short delay, or on
:meth:`FrameWriter.flush` — which the worker MUST await before any terminal
or suspend call, because those close the stream and later appends would be
refused with ``stream_closed``. Pipelined calls run in order on one
connection, so frames keep the order they were written in.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..backend._caller import Caller
from ..protocol.streams import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    AppendFrame,
    AppendFrameResult,
    FrameKind,
    StreamMode,
)

__all__ = ["FrameWriter"]


class FrameWriter:
    """Batches frames of one attempt under its lease fence.

    The first append refused by the server (``stale_owner_cannot_append``,
    ``stream_closed``...) is raised from the next ``write``/``flush`` and the
    writer stays failed: frames after a refusal are dropped, never reordered.
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
        max_batch: int = 256,
        max_batch_bytes: int = 256 * 1024,
        max_delay_s: float = 0.02,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        best_effort_ttl_ms: int = 10_000,
    ) -> None:
        self._backend = backend
        self._fence: dict[str, Any] = dict(
            eid=eid, attempt_index=attempt_index, lease_id=lease_id,
            lease_epoch=lease_epoch, attempt_id=attempt_id,
            max_payload_bytes=max_payload_bytes)
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._max_delay_s = max_delay_s
        self._be_ttl_ms = best_effort_ttl_ms
        self._pending: list[AppendFrame] = []
        self._pending_bytes = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        #: Results of every append sent so far, in order.
        self.sent = 0
        self.last_result: AppendFrameResult | None = None

    # -- producers -------------------------------------------------------
    async def write(self, frame_type: str, payload: bytes | str, *,
                    mode: StreamMode = StreamMode.DURABLE, correlation_id: str = "") -> None:
        """Queue one frame (validated now: oversize raises InvalidInput here)."""
        self._raise_if_failed()
        extra: dict[str, Any] = {}
        if mode is StreamMode.BEST_EFFORT:
            extra["ttl_ms"] = self._be_ttl_ms
        fc = AppendFrame(frame_type=frame_type, payload=payload, mode=mode,
                         correlation_id=correlation_id, **self._fence, **extra)
        self._pending.append(fc)
        self._pending_bytes += len(fc.payload_bytes())
        if len(self._pending) >= self._max_batch or self._pending_bytes >= self._max_batch_bytes:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._flush_later())

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
        """Send everything queued; raises the first refusal, if any."""
        async with self._lock:
            if self._timer is not None and self._timer is not asyncio.current_task():
                self._timer.cancel()
            self._timer = None
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            if batch and self._error is None:
                results = await self._backend.call_many(list(batch))
                for r in results:
                    if isinstance(r, BaseException):
                        self._error = r
                        break
                    self.sent += 1
                    self.last_result = r
        self._raise_if_failed()

    async def aclose(self) -> None:
        """Flush and stop; call before completing, failing or suspending."""
        await self.flush()

    def discard(self) -> int:
        """Drop queued frames without sending them (the lease is gone, so the
        server would refuse them anyway); returns how many were dropped."""
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self._timer = None
        dropped = len(self._pending)
        self._pending, self._pending_bytes = [], 0
        return dropped

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._max_delay_s)
        try:
            await self.flush()
        except Exception:  # kept in self._error, raised to the producer
            pass

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
