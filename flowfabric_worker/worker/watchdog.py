"""Event-loop watchdog: says so when something blocks the worker's loop.

An async task body that calls blocking code (``time.sleep``, a sync HTTP
client, a long CPU loop) stops the event loop itself: no other task runs, no
lease is renewed, and the body's own timeout, itself a loop callback, never
fires. Nothing on the loop can notice that, so a thread does: the loop
stamps a heartbeat every ``threshold / 4``; when the stamp is older than
``threshold``, the thread logs one warning with the loop thread's current
stack (the blocking call) and the execution whose body runs there, and logs
again only once the loop has run again (one warning per blocking episode).

The watchdog cannot unblock the loop. The server-side attempt timeout (the
``attempt_timeout`` scanner of any other process) is what ends such an
attempt; see docs/operations.md, "Hung tasks".
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

import anyio

__all__ = ["LoopWatchdog"]

log = logging.getLogger("flowfabric_worker.watchdog")


class LoopWatchdog:
    """Watches the asyncio loop :meth:`run` is awaited on.

    ``describe(task_id)`` names what the loop task of id ``task_id`` runs
    (or returns ``None``); it is called from the watchdog thread."""

    def __init__(self, threshold: float, describe: Callable[[int], str | None]) -> None:
        self.threshold = threshold
        self.describe = describe
        self._beat = time.monotonic()
        self._stop = threading.Event()
        #: Blocking episodes seen (tests, metrics).
        self.episodes = 0

    async def run(self) -> None:
        """Heartbeat on the loop while the watchdog thread watches it."""
        loop = asyncio.get_running_loop()
        thread = threading.Thread(
            target=self._watch, args=(loop, threading.get_ident()),
            name="ffw-loop-watchdog", daemon=True)  # never keeps the process alive
        self._beat = time.monotonic()
        self._stop.clear()
        thread.start()
        try:
            while True:
                self._beat = time.monotonic()
                await anyio.sleep(self.threshold / 4)
        finally:
            self._stop.set()

    def _watch(self, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        blocked_since: float | None = None
        while not self._stop.wait(self.threshold / 4):
            beat = self._beat
            now = time.monotonic()
            if now - beat <= self.threshold:
                if blocked_since is not None:
                    log.warning("event loop ran again after being blocked for %.1fs",
                                now - blocked_since)
                    blocked_since = None
                continue
            if blocked_since is not None:
                continue  # this episode was reported already
            blocked_since = beat
            self.episodes += 1
            self._report(loop, loop_thread, now - beat)

    def _report(self, loop: asyncio.AbstractEventLoop, loop_thread: int, lag: float) -> None:
        frame = sys._current_frames().get(loop_thread)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(unknown)\n"
        # Read from this thread without a lock: a dict lookup, and a stale
        # answer only makes the message less precise.
        running = asyncio.current_task(loop)
        what = self.describe(id(running)) if running is not None else None
        log.warning(
            "event loop blocked for %.1fs (threshold %.1fs) by %s: no other task, lease "
            "renewal or timeout runs until it returns; blocking call in the loop thread:\n%s",
            lag, self.threshold, f"task {what}" if what else "code outside any task body",
            stack.rstrip())
