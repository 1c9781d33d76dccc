"""``ctx.lease_lost``: an event set once the attempt no longer owns its
lease, readable from any thread."""

from __future__ import annotations

import asyncio

import anyio

from flowfabric_worker.context.thread_bridge import on_event_loop


class LeaseLostEvent:
    """``ctx.lease_lost``: set once the attempt no longer owns its lease.

    ``is_set()`` works anywhere, a sync task's thread included; ``await
    wait()`` needs the event loop. Nothing is allocated until someone waits
    (most attempts never look).
    """

    __slots__ = ("_event", "_loop", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Set it; callable from a sync task's thread too (``ensure_lease``
        sets it there), where the waiters' event is set through their loop."""
        self._set = True
        event, loop = self._event, self._loop
        if event is None:
            return
        if loop is None or on_event_loop():
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    async def wait(self) -> None:
        if self._set:
            return
        if self._event is None:
            self._loop = asyncio.get_running_loop()
            self._event = anyio.Event()
            if self._set:  # set from a thread while the event was being made
                return
        await self._event.wait()
