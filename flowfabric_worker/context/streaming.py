"""In-task streaming: what ``ctx.stream`` / ``ctx.event`` / ``ctx.summary`` do.

The worker installs one :class:`~.frames.FrameWriter` per attempt under
``ctx.extensions["frames"]``; these helpers turn the task-facing calls into
frames on it. Keeping them here (not in ``context.py``) keeps the context
small and lets other front ends (a step journal, a flow spawner) reuse them.
"""

from __future__ import annotations

from typing import Any

from flowfabric_worker.context.frame_writer import FrameWriter
from flowfabric_worker.errors import ConfigurationError, InvalidInput
from flowfabric_worker.protocol.streams import FrameKind, StreamMode
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.bounds import DEFAULT_LIMITS

__all__ = ["FRAMES_EXTENSION", "emit_event", "emit_stream", "emit_summary", "writer_of"]

#: Key of the attempt's writer in ``TaskContext.extensions``.
FRAMES_EXTENSION = "frames"

_KINDS = {k.value for k in FrameKind}


def writer_of(extensions: dict[str, Any]) -> FrameWriter:
    """The attempt's writer; a task run outside a worker has none."""
    fw = extensions.get(FRAMES_EXTENSION)
    if fw is None:
        raise ConfigurationError(
            "streaming is only available inside a worker-run attempt "
            "(no frame writer installed on this TaskContext)")
    if not isinstance(fw, FrameWriter):
        raise ConfigurationError(f"extensions[{FRAMES_EXTENSION!r}] is not a FrameWriter")
    return fw


_MODES: dict[str, StreamMode] = {m.value: m for m in StreamMode}


def _mode(mode: StreamMode | str) -> StreamMode:
    # A dict lookup, not StreamMode(mode): this runs once per frame.
    m = _MODES.get(mode)
    if m is None:
        raise InvalidInput(
            f"mode must be one of {', '.join(m.value for m in StreamMode)}; got {mode!r}")
    return m


def _json(value: Any) -> bytes:
    # codec.to_builtins also accepts dataclasses, msgspec structs and pydantic
    # models; codec.dumps turns what JSON cannot hold (a lone surrogate, deep
    # nesting) into PayloadError, and check_json refuses NaN, which json.dumps
    # wrote as the invalid token NaN. The frame's size bound is the writer's.
    plain = codec.to_builtins(value)
    codec.check_json(plain, max_depth=DEFAULT_LIMITS.max_depth, what="event")
    return codec.dumps(plain)


async def emit_stream(
    fw: FrameWriter, data: str | bytes, *, kind: str = "stdout", frame_type: str | None = None,
    correlation_id: str | None = None, mode: StreamMode | str = StreamMode.DURABLE,
) -> None:
    """One frame of ``kind`` (stdout/stderr/event/blob); ``frame_type``
    overrides the stored classifier (defaults to the kind)."""
    if kind not in _KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(sorted(_KINDS))}; got {kind!r}")
    if not isinstance(data, str | bytes):
        raise InvalidInput(f"stream data must be str or bytes, got {type(data).__name__}")
    m = _mode(mode)
    if m is StreamMode.SUMMARY:
        # A summary frame is a merge patch: ctx.summary validates and encodes it.
        raise InvalidInput("use ctx.summary(patch) for summary mode")
    await fw.write(frame_type or kind, data, mode=m, correlation_id=correlation_id or "")


async def emit_event(fw: FrameWriter, obj_or_name: Any, data: Any = None, *,
                     live: bool = False, correlation_id: str | None = None) -> None:
    """A structured event frame (JSON).

    ``emit_event(fw, "token_count", {"n": 3})`` writes ``{"event": ..., "data": ...}``
    (the same shape as :meth:`FrameWriter.event`); any other object (a dict, a
    dataclass, a pydantic model) is written as its own JSON document.
    ``live=True`` sends it best-effort: cheap, but it may be trimmed.
    """
    mode = StreamMode.BEST_EFFORT if live else StreamMode.DURABLE
    if isinstance(obj_or_name, str):
        body = _json({"event": obj_or_name, "data": data})
    else:
        if data is not None:
            raise InvalidInput("data= is only used with an event name")
        body = _json(obj_or_name)
    await fw.write(FrameKind.EVENT.value, body, mode=mode, correlation_id=correlation_id or "")


async def emit_summary(fw: FrameWriter, patch: Any) -> None:
    """Merge ``patch`` (a JSON object) into the attempt's summary document."""
    doc = codec.to_builtins(patch)
    if not isinstance(doc, dict):
        raise InvalidInput("a summary patch must be a JSON object")
    codec.check_json(doc, max_depth=DEFAULT_LIMITS.max_depth, what="summary patch")
    await fw.summary(doc)
