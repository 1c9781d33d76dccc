"""TaskContext: what a running task sees of its execution.

Later features attach themselves through the ``extensions`` mapping (e.g. a
frames writer, a step journal, a flow spawner) from their own modules, so this
class stays small: ``ctx.extensions["frames"]`` is set by the worker when that
feature is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import anyio

from .engine import LeaseLost
from .task_streams import emit_event, emit_stream, emit_summary, writer_of

_base_log = logging.getLogger("flowfabric_worker.task")


class _ExecutionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds ``execution_id`` / ``attempt_index`` to every record."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return f"[{extra['execution_id']}#{extra['attempt_index']}] {msg}", kwargs


class TaskContext:
    """Handed to a task function as its first parameter when annotated.

    Example::

        @task()
        async def work(ctx: TaskContext, n: int) -> int:
            await ctx.progress(50, "half way")
            ctx.ensure_lease()          # before an irreversible side effect
            return n * 2
    """

    def __init__(
        self,
        *,
        execution_id: str,
        attempt_index: int,
        attempt_type: str,
        lane: str,
        tags: Mapping[str, str],
        progress_fn: Callable[[float, str], Awaitable[None]] | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.attempt_index = attempt_index
        self.attempt_type = attempt_type
        self.lane = lane
        self.tags: Mapping[str, str] = dict(tags)
        #: Set on the first terminal renewal error or local lease expiry.
        self.lease_lost = anyio.Event()
        self.lease_lost_reason = ""
        #: Feature hooks installed by the worker (frames, journal, flows...).
        self.extensions: dict[str, Any] = {}
        self._progress_fn = progress_fn
        self.log = _ExecutionLog(
            _base_log, {"execution_id": execution_id, "attempt_index": attempt_index}
        )

    async def progress(self, pct: float, message: str = "") -> None:
        """Record progress (0..100) on the execution (``ff_update_progress``)."""
        if not 0 <= pct <= 100:
            raise ValueError(f"progress percentage must be within 0..100, got {pct}")
        self.ensure_lease()
        if self._progress_fn is not None:
            await self._progress_fn(pct, message)

    async def stream(
        self, data: str | bytes, *, kind: str = "stdout", frame_type: str | None = None,
        correlation_id: str | None = None, mode: str = "durable",
    ) -> None:
        """Append one frame to this attempt's stream (text or bytes).

        ``kind`` is ``stdout``, ``stderr``, ``event`` or ``blob``; ``mode`` is
        ``durable`` (kept until the stream's retention cap) or ``best_effort``
        (live-only, trimmed by rate and TTL). Frames are batched: the call
        usually returns without a round trip, and the worker flushes them
        before the attempt ends, so consumers never see a finished attempt
        with frames missing. See docs/streams.md.
        """
        self.ensure_lease()
        await emit_stream(writer_of(self.extensions), data, kind=kind, frame_type=frame_type,
                          correlation_id=correlation_id, mode=mode)

    async def event(self, obj_or_name: Any, data: Any = None, *, live: bool = False) -> None:
        """A structured (JSON) event frame: ``event("name", data)`` or
        ``event(obj)`` for a dict/dataclass/model. ``live=True`` → best-effort."""
        self.ensure_lease()
        await emit_event(writer_of(self.extensions), obj_or_name, data, live=live)

    async def summary(self, patch: Any) -> None:
        """Merge ``patch`` into this attempt's summary document (JSON Merge
        Patch: ``None`` deletes a key; read it with ``run.summary()``)."""
        self.ensure_lease()
        await emit_summary(writer_of(self.extensions), patch)

    def ensure_lease(self) -> None:
        """Raise :class:`LeaseLost` if this attempt no longer owns its lease."""
        if self.lease_lost.is_set():
            raise LeaseLost(self.execution_id, self.lease_lost_reason or "lease lost")

    def mark_lease_lost(self, reason: str) -> None:
        """Called by the renewer; idempotent."""
        if not self.lease_lost.is_set():
            self.lease_lost_reason = reason
            self.lease_lost.set()
