"""Typed backend methods for attempt streams (spec 03 §8)."""

from __future__ import annotations

from typing import Any

from flowfabric_worker.backend._caller import Caller
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.stream_batch import AppendFrames, AppendFramesResult
from flowfabric_worker.protocol.streams import (
    READ_HARD_CAP,
    AppendFrame,
    AppendFrameResult,
    Frame,
    ReadAttemptStream,
    ReadAttemptStreamResult,
    ReadSummary,
    StreamMeta,
    Summary,
    decode_entry,
)


class StreamOps(Caller):
    """Stream appends, range reads, summary reads and the blocking tail read."""

    redis: Any
    reads: Any  # self.redis for reads (retried; read_client.py)

    async def append_frame(self, args: AppendFrame) -> AppendFrameResult:
        return await self.call(args)

    async def append_frames(self, args: AppendFrames) -> AppendFramesResult:
        """Append a batch of frames in one call (``ffw_append_frames``)."""
        return await self.call(args)

    async def read_attempt_stream(self, args: ReadAttemptStream) -> ReadAttemptStreamResult:
        return await self.call(args)

    async def read_summary(self, args: ReadSummary) -> Summary:
        return await self.call(args)

    async def read_stream_meta(self, eid: ExecutionId, attempt_index: int) -> StreamMeta | None:
        """``stream_meta`` as a typed record, ``None`` before the first append."""
        raw = await self.reads.hgetall(ExecKeys(eid).stream_meta(attempt_index))
        return StreamMeta.from_hash(raw) if raw else None

    async def tail_frames(
        self,
        eid: ExecutionId,
        attempt_index: int,
        last_id: str = "0-0",
        *,
        count: int = 100,
        block_ms: int = 0,
    ) -> tuple[list[Frame], int | None, str]:
        """One tail step of spec 03 §8.8: XREAD (blocking when ``block_ms`` >
        0) after ``last_id`` (exclusive), then the close markers.

        Returns ``(frames, closed_at, closed_reason)``. The redis client hands
        each in-flight command its own pooled connection, so a blocking read
        never stalls other calls made through the same backend.
        """
        if not 1 <= count <= READ_HARD_CAP:
            raise InvalidInput(f"count must be within 1..{READ_HARD_CAP}")
        if block_ms < 0:
            raise InvalidInput("block_ms must be >= 0")
        if last_id in ("-", "+", "$", ""):
            raise InvalidInput("last_id must be a concrete stream id")
        k = ExecKeys(eid)
        args: list[Any] = ["XREAD", "COUNT", str(count)]
        if block_ms > 0:
            args += ["BLOCK", str(block_ms)]
        args += ["STREAMS", k.stream(attempt_index), last_id]
        reply = await self.redis.execute_command(*args)
        frames: list[Frame] = []
        if reply:
            streams = reply.values() if isinstance(reply, dict) else [s[1] for s in reply]
            for entries in streams:
                frames.extend(decode_entry(e[0], e[1]) for e in entries)
        closed_at, reason = await self.reads.hmget(
            k.stream_meta(attempt_index), ["closed_at", "closed_reason"])
        ca = (closed_at or b"").decode()
        return frames, (int(ca) if ca else None), (reason or b"").decode()
