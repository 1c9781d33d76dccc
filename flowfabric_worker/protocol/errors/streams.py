"""Contract error codes (spec 01 §7.3) of attempt streams, replay and attempts."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import B, E, I, R, S, StreamError, T, _code

__all__ = [
    "AttemptAlreadyTerminal",
    "AttemptNotFound",
    "AttemptNotInCreatedState",
    "AttemptNotStarted",
    "Corruption",
    "ExecutionNotTerminal",
    "InvalidFrameType",
    "InvalidOffset",
    "MaxReplaysExhausted",
    "RetentionLimitExceeded",
    "StaleOwnerCannotAppend",
    "StreamAlreadyClosed",
    "StreamClosed",
    "StreamNotFound",
]


@_code("stream_closed", T, "state")
class StreamClosed(StreamError):
    """The attempt ended; no more frames."""


@_code("stale_owner_cannot_append", T, "state")
class StaleOwnerCannotAppend(StreamError):
    """Lease mismatch on append."""


@_code("retention_limit_exceeded", T, "validation")
class RetentionLimitExceeded(StreamError):
    """Frame over the size limit."""


@_code("corruption", T, "transport")
class Corruption(StreamError):
    """A stored summary is unreadable."""


@_code("execution_not_terminal", T, "state")
class ExecutionNotTerminal(StreamError):
    """Replay of a live execution."""


@_code("max_replays_exhausted", T, "state")
class MaxReplaysExhausted(StreamError):
    """The replay cap is reached."""


@_code("stream_not_found", E, "not_found", lua=False)
class StreamNotFound(StreamError):
    """Rust-side: no frames yet."""


@_code("stream_already_closed", I, "state", lua=False)
class StreamAlreadyClosed(StreamError):
    """Rust-side; the library answers ``stream_closed``."""


@_code("invalid_frame_type", S, "validation", lua=False)
class InvalidFrameType(StreamError):
    """Rust-side; frame types are free-form in the library."""


@_code("invalid_offset", R, "validation", lua=False)
class InvalidOffset(StreamError):
    """Rust-side: malformed stream id for a read."""


@_code("attempt_not_found", T, "not_found", lua=False)
class AttemptNotFound(StreamError):
    """Rust-side: no attempt with that index."""


@_code("attempt_not_in_created_state", B, "bug", lua=False)
class AttemptNotInCreatedState(StreamError):
    """Rust-side: attempt sequencing bug."""


@_code("attempt_not_started", T, "state", lua=False)
class AttemptNotStarted(StreamError):
    """Rust-side: the attempt is not running."""


@_code("attempt_already_terminal", I, "state", lua=False)
class AttemptAlreadyTerminal(StreamError):
    """Rust-side: the attempt already ended."""
