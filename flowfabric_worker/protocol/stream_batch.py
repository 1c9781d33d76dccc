"""Batched frame appends: ``ffw_append_frames`` (our ``ffw`` library).

One call appends N frames of one attempt with one lease check and one
``stream_meta`` read. The stream entries, ``stream_meta`` counters,
best-effort estimator and summary document end up as after N consecutive
``ff_append_frame`` calls (spec 03 §8), so FlowFabric consumers cannot tell
the difference; unlike N single calls, a refused batch appends nothing (every
frame is validated before the first write). One deliberate difference: once
the stream has held a durable frame, summary and best-effort appends trim to
the durable retention instead of ~64 / the best-effort cap, so they never cut
a durable frame (docs/streams.md, "What the stream keeps").
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.streams import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_RETENTION_MAXLEN,
    StreamMode,
    check_summary_patch,
)

__all__ = [
    "MAX_BATCH_FRAMES",
    "AppendFrames",
    "AppendFramesResult",
    "FrameArgs",
    "OutFrame",
    "check_summary_patch",
]

#: Most frames one ``ffw_append_frames`` call accepts (the Lua refuses more).
MAX_BATCH_FRAMES = 4096


#: ``(frame_type, payload, mode, correlation_id, ts)``: a plain tuple is
#: accepted wherever an :class:`OutFrame` is (cheaper to build per frame).
FrameArgs = tuple[str, bytes, str, str, str]


class OutFrame(NamedTuple):
    """One frame to append: the per-frame arguments of ``ff_append_frame``.

    ``mode`` is a :class:`StreamMode` value (any other string is stored as
    given and trimmed like durable, as the single call does); ``ts`` is the
    client time in ms as text, ``""`` for the server's clock.
    """

    frame_type: str
    payload: bytes
    mode: str = StreamMode.DURABLE.value
    correlation_id: str = ""
    ts: str = ""


class AppendFramesResult(msgspec.Struct, frozen=True):
    appended: int
    first_id: str
    last_id: str
    #: ``stream_meta.frame_count`` after the batch.
    frame_count: int
    #: Summary version after the batch's last summary frame, if it had one.
    summary_version: int | None


class AppendFrames(FCall[AppendFramesResult], frozen=True, kw_only=True):
    """``ffw_append_frames``: ``frames`` appended in order under the lease.

    Not idempotent: a resend appends again. Oversize frames and malformed
    summary patches raise :class:`InvalidInput` here, before any call.
    """

    NAME: ClassVar[str] = "ffw_append_frames"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = False
    eid: ExecutionId
    attempt_index: int
    lease_id: str
    lease_epoch: int
    frames: tuple[FrameArgs, ...]
    retention_maxlen: int = DEFAULT_RETENTION_MAXLEN
    attempt_id: str = ""
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    encoding: str = "utf8"
    source: str = "worker"
    ttl_ms: int = 0
    maxlen_floor: int = 0
    maxlen_ceiling: int = 0
    ema_alpha: float = 0.0
    #: Set by a caller that already validated every frame (the FrameWriter
    #: checks each one as it is written) to skip the second pass.
    prevalidated: bool = False

    def __post_init__(self) -> None:
        for name in ("attempt_index", "lease_epoch", "retention_maxlen",
                     "max_payload_bytes", "ttl_ms", "maxlen_floor", "maxlen_ceiling"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be >= 0")
        if not 0 <= self.ema_alpha <= 1:
            raise InvalidInput("ema_alpha must be within [0, 1]")
        if not 1 <= len(self.frames) <= MAX_BATCH_FRAMES:
            raise InvalidInput(f"a batch holds 1..{MAX_BATCH_FRAMES} frames")
        if self.prevalidated:
            return
        for i, (_, payload, mode, _, _) in enumerate(self.frames):
            if len(payload) > self.max_payload_bytes:
                raise InvalidInput(
                    f"frame {i}: payload of {len(payload)} bytes exceeds "
                    f"max_payload_bytes={self.max_payload_bytes}")
            if mode == StreamMode.SUMMARY.value:
                check_summary_patch(payload)

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i = self.attempt_index
        return [k.core, k.stream(i), k.stream_meta(i), k.attempt_summary(i)]

    def argv(self) -> list[str | bytes]:
        lengths: list[str] = []
        parts: list[bytes] = []
        add_lengths, add_parts = lengths.append, parts.extend
        for frame_type, payload, mode, correlation_id, ts in self.frames:
            ft, md = frame_type.encode(), mode.encode()
            cid, t = correlation_id.encode(), ts.encode()
            add_lengths(f"{len(ft)} {len(t)} {len(payload)} {len(md)} {len(cid)}")
            add_parts((ft, t, payload, md, cid))
        return [
            self.eid, str(self.attempt_index), self.lease_id, str(self.lease_epoch),
            str(self.retention_maxlen), self.attempt_id, str(self.max_payload_bytes),
            self.encoding, self.source, str(self.ttl_ms), str(self.maxlen_floor),
            str(self.maxlen_ceiling), f"{self.ema_alpha:.6f}", str(len(self.frames)),
            " ".join(lengths), b"".join(parts),
        ]

    def decode(self, reply: Any) -> AppendFramesResult:
        env = self.envelope(reply)
        sv = env.field(4)
        return AppendFramesResult(
            appended=int(env.field(0)), first_id=env.field(1), last_id=env.field(2),
            frame_count=int(env.field(3)), summary_version=int(sv) if sv else None)
