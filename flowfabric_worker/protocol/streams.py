"""Attempt-stream calls and records (spec 03 §8).

Frames are appended under the lease with :class:`AppendFrame` in one of three
durability modes, read back with :class:`ReadAttemptStream` (range read plus
the close markers) and the rolling summary document with :class:`ReadSummary`.
:func:`merge_patch` is the pure-Python twin of the server's summary merge so
consumers and tests can predict the document.
"""

from __future__ import annotations

import enum
import json
from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.function import FCall, as_str
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import ExecKeys

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_RETENTION_MAXLEN",
    "NULL_SENTINEL",
    "READ_HARD_CAP",
    "AppendFrame",
    "AppendFrameResult",
    "Frame",
    "FrameKind",
    "ReadAttemptStream",
    "ReadAttemptStreamResult",
    "ReadSummary",
    "StreamMeta",
    "StreamMode",
    "Summary",
    "check_summary_patch",
    "decode_entry",
    "merge_patch",
]

NULL_SENTINEL = "__ff_null__"
DEFAULT_MAX_PAYLOAD_BYTES = 65536
DEFAULT_RETENTION_MAXLEN = 10000
READ_HARD_CAP = 10000
MAX_PATCH_DEPTH = 16
_MAX_SENTINEL_DEPTH = 32


class StreamMode(enum.StrEnum):
    """Durability mode of a frame (ARGV 14)."""

    DURABLE = "durable"
    SUMMARY = "summary"
    BEST_EFFORT = "best_effort"


class FrameKind(enum.StrEnum):
    """The typed frame classifiers; ``frame_type`` itself stays free-form."""

    STDOUT = "stdout"
    STDERR = "stderr"
    EVENT = "event"
    BLOB = "blob"


def _object_depth(value: dict[str, Any]) -> int:
    deepest = 0
    for child in value.values():
        if isinstance(child, dict) and child:
            deepest = max(deepest, 1 + _object_depth(child))
    return deepest


def check_summary_patch(payload: bytes) -> None:
    """Raise :class:`InvalidInput` unless ``payload`` is a summary patch the
    server accepts (a JSON object nested at most 16 levels)."""
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise InvalidInput("patch payload is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise InvalidInput("patch must be a JSON object")
    if _object_depth(doc) > MAX_PATCH_DEPTH:
        raise InvalidInput("patch_depth_exceeded")


def _resolve_sentinel(value: Any, depth: int) -> Any:
    if depth > _MAX_SENTINEL_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: None if v == NULL_SENTINEL else _resolve_sentinel(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [None if v == NULL_SENTINEL else _resolve_sentinel(v, depth + 1) for v in value]
    return value


def _merge(target: Any, patch: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and value:
            out[key] = _merge(out.get(key), value)
        else:
            out[key] = value
    return out


def merge_patch(document: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a summary patch the way the server does (spec 03 §8.7).

    ``null`` deletes a key, a non-empty object recurses, anything else
    (scalars, arrays, the empty object) replaces wholesale; afterwards every
    :data:`NULL_SENTINEL` string becomes ``None``. Inputs are not modified.
    """
    if not isinstance(patch, dict):
        raise InvalidInput("patch must be a JSON object")
    if _object_depth(patch) > MAX_PATCH_DEPTH:
        raise InvalidInput("patch_depth_exceeded")
    merged = _merge(document, patch)
    result: dict[str, Any] = _resolve_sentinel(merged, 1)
    return result


class Frame(msgspec.Struct, frozen=True, kw_only=True):
    """One stream entry as a reader sees it."""

    id: str
    frame_type: str
    payload: bytes
    ts: int
    mode: StreamMode | str = StreamMode.DURABLE
    encoding: str = "utf8"
    source: str = "worker"
    correlation_id: str | None = None
    summary_version: int | None = None
    ttl_ms: int | None = None

    @property
    def kind(self) -> FrameKind | None:
        """The typed kind when ``frame_type`` is one of the four known ones."""
        try:
            return FrameKind(self.frame_type)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")

    @property
    def timestamp_ms(self) -> int:
        """Server-side id time (ms) — the moment the frame was appended."""
        return int(self.id.split("-", 1)[0])


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return as_str(value).encode("utf-8")


def decode_entry(entry_id: Any, flat: Any) -> Frame:
    """A :class:`Frame` from an XRANGE/XREAD entry (flat or mapping fields)."""
    if isinstance(flat, dict):
        items = list(flat.items())
    else:
        items = [(flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2)]
    fields: dict[str, Any] = {as_str(k): v for k, v in items}
    raw_mode = as_str(fields.get("mode")) or "durable"
    mode: StreamMode | str
    try:
        mode = StreamMode(raw_mode)
    except ValueError:
        mode = raw_mode
    ts_text = as_str(fields.get("ts"))
    sv = as_str(fields.get("summary_version"))
    ttl = as_str(fields.get("ttl_ms"))
    return Frame(
        id=as_str(entry_id),
        frame_type=as_str(fields.get("frame_type")),
        payload=_as_bytes(fields.get("payload", b"")),
        ts=int(ts_text) if ts_text.lstrip("-").isdigit() else 0,
        mode=mode,
        encoding=as_str(fields.get("encoding")) or "utf8",
        source=as_str(fields.get("source")) or "worker",
        correlation_id=as_str(fields["correlation_id"]) if "correlation_id" in fields else None,
        summary_version=int(sv) if sv.isdigit() else None,
        ttl_ms=int(ttl) if ttl.isdigit() else None,
    )


class StreamMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Typed view of ``stream_meta`` (spec 03 §8.3), read with HGETALL."""

    stream_id: str = ""
    execution_id: str = ""
    attempt_id: str = ""
    attempt_index: int = 0
    created_at: int = 0
    closed_at: int | None = None
    closed_reason: str = ""
    durability_mode: str = ""
    retention_maxlen: int = 0
    last_sequence: str = ""
    frame_count: int = 0
    total_bytes: int = 0
    last_frame_at: int | None = None
    has_durable_frame: bool = False
    ema_rate_hz: float | None = None
    last_append_ts_ms: int | None = None
    maxlen_applied_last: int | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> StreamMeta:
        f = {as_str(k): as_str(v) for k, v in raw.items()}

        def opt_int(name: str) -> int | None:
            v = f.get(name, "")
            return int(v) if v.lstrip("-").isdigit() else None

        ema = f.get("ema_rate_hz", "")
        return cls(
            stream_id=f.get("stream_id", ""),
            execution_id=f.get("execution_id", ""),
            attempt_id=f.get("attempt_id", ""),
            attempt_index=opt_int("attempt_index") or 0,
            created_at=opt_int("created_at") or 0,
            closed_at=opt_int("closed_at"),
            closed_reason=f.get("closed_reason", ""),
            durability_mode=f.get("durability_mode", ""),
            retention_maxlen=opt_int("retention_maxlen") or 0,
            last_sequence=f.get("last_sequence", ""),
            frame_count=opt_int("frame_count") or 0,
            total_bytes=opt_int("total_bytes") or 0,
            last_frame_at=opt_int("last_frame_at"),
            has_durable_frame=f.get("has_durable_frame") == "1",
            ema_rate_hz=float(ema) if ema else None,
            last_append_ts_ms=opt_int("last_append_ts_ms"),
            maxlen_applied_last=opt_int("maxlen_applied_last"),
        )


class AppendFrameResult(msgspec.Struct, frozen=True):
    entry_id: str
    frame_count: int
    summary_version: int | None


def _uint(name: str, value: int) -> None:
    if value < 0:
        raise InvalidInput(f"{name} must be >= 0")


class AppendFrame(FCall[AppendFrameResult], frozen=True, kw_only=True):
    """``ff_append_frame`` (spec 03 §8.5). Not idempotent: every call appends."""

    NAME: ClassVar[str] = "ff_append_frame"
    IDEMPOTENT: ClassVar[bool] = False
    eid: ExecutionId
    attempt_index: int
    lease_id: str
    lease_epoch: int
    frame_type: str
    payload: bytes | str
    ts: int | None = None
    encoding: str = "utf8"
    correlation_id: str = ""
    source: str = "worker"
    retention_maxlen: int = DEFAULT_RETENTION_MAXLEN
    attempt_id: str = ""
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    mode: StreamMode = StreamMode.DURABLE
    ttl_ms: int = 0
    maxlen_floor: int = 0
    maxlen_ceiling: int = 0
    ema_alpha: float = 0.0

    def __post_init__(self) -> None:
        for name in ("attempt_index", "lease_epoch", "retention_maxlen",
                     "max_payload_bytes", "ttl_ms", "maxlen_floor", "maxlen_ceiling"):
            _uint(name, getattr(self, name))
        if not 0 <= self.ema_alpha <= 1:
            raise InvalidInput("ema_alpha must be within [0, 1]")
        if len(self.payload_bytes()) > self.max_payload_bytes:
            raise InvalidInput(
                f"payload of {len(self.payload_bytes())} bytes exceeds "
                f"max_payload_bytes={self.max_payload_bytes}")
        if self.mode is StreamMode.SUMMARY:
            check_summary_patch(self.payload_bytes())

    def payload_bytes(self) -> bytes:
        p = self.payload
        return p.encode("utf-8") if isinstance(p, str) else p

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        i = self.attempt_index
        return [k.core, k.stream(i), k.stream_meta(i), k.attempt_summary(i)]

    def argv(self) -> list[str | bytes]:
        return [
            self.eid, str(self.attempt_index), self.lease_id, str(self.lease_epoch),
            self.frame_type, "" if self.ts is None else str(self.ts), self.payload_bytes(),
            self.encoding, self.correlation_id, self.source, str(self.retention_maxlen),
            self.attempt_id, str(self.max_payload_bytes), self.mode.value,
            "json-merge-patch" if self.mode is StreamMode.SUMMARY else "",
            str(self.ttl_ms), str(self.maxlen_floor), str(self.maxlen_ceiling),
            f"{self.ema_alpha:.6f}",
        ]

    def decode(self, reply: Any) -> AppendFrameResult:
        env = self.envelope(reply)
        sv = env.field(2)
        return AppendFrameResult(entry_id=env.field(0), frame_count=int(env.field(1)),
                                 summary_version=int(sv) if sv else None)


class ReadAttemptStreamResult(msgspec.Struct, frozen=True):
    frames: list[Frame]
    closed_at: int | None
    closed_reason: str

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


class ReadAttemptStream(FCall[ReadAttemptStreamResult], frozen=True, kw_only=True):
    """``ff_read_attempt_stream`` (spec 03 §8.6): inclusive XRANGE bounds; a
    ``(`` prefix makes a bound exclusive. The best-effort filter runs after
    COUNT, so page by the last returned id, not by the page size."""

    NAME: ClassVar[str] = "ff_read_attempt_stream"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    attempt_index: int
    from_id: str = "-"
    to_id: str = "+"
    count_limit: int = 1000
    exclude_best_effort: bool = False

    def __post_init__(self) -> None:
        if self.count_limit < 1:
            raise InvalidInput("count_limit must be >= 1")
        if self.count_limit > READ_HARD_CAP:
            raise InvalidInput("count_limit_exceeds_hard_cap")

    def keys(self) -> list[str]:
        k = ExecKeys(self.eid)
        return [k.stream(self.attempt_index), k.stream_meta(self.attempt_index)]

    def argv(self) -> list[str]:
        return [self.from_id, self.to_id, str(self.count_limit),
                "exclude_best_effort" if self.exclude_best_effort else ""]

    def decode(self, reply: Any) -> ReadAttemptStreamResult:
        if isinstance(reply, list) and len(reply) >= 3 and reply[0] == 1:
            entries = reply[2] or []
            closed_at = as_str(reply[3]) if len(reply) > 3 else ""
            reason = as_str(reply[4]) if len(reply) > 4 else ""
            return ReadAttemptStreamResult(
                frames=[decode_entry(e[0], e[1]) for e in entries],
                closed_at=int(closed_at) if closed_at else None,
                closed_reason=reason)
        self.envelope(reply)  # raises the contract error (or ScriptError)
        raise AssertionError("unreachable")  # pragma: no cover


class Summary(msgspec.Struct, frozen=True):
    """The rolling summary document; ``version == 0`` means none yet."""

    document: dict[str, Any]
    version: int
    patch_kind: str
    last_updated_ms: int
    first_applied_ms: int


class ReadSummary(FCall[Summary], frozen=True, kw_only=True):
    """``ff_read_summary`` (spec 03 §8.7)."""

    NAME: ClassVar[str] = "ff_read_summary"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    attempt_index: int

    def keys(self) -> list[str]:
        return [ExecKeys(self.eid).attempt_summary(self.attempt_index)]

    def argv(self) -> list[str]:
        return []

    def decode(self, reply: Any) -> Summary:
        env = self.envelope(reply)
        text = env.field(0)
        doc = json.loads(text) if text else {}
        return Summary(document=doc if isinstance(doc, dict) else {},
                       version=int(env.field(1) or 0), patch_kind=env.field(2),
                       last_updated_ms=int(env.field(3) or 0),
                       first_applied_ms=int(env.field(4) or 0))
