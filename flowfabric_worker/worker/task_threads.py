"""The threads sync task bodies run in, and the ones left behind.

A thread cannot be stopped from outside: a sync body past its timeout (or
still running when the drain hands its lease back) is *abandoned*, it keeps
its thread until it returns on its own. Two consequences shape this module:

* The threads are daemon threads of our own, not ``anyio.to_thread`` workers:
  those are non-daemon, so the interpreter waits for a hung one at exit and a
  stopped worker process never ends (issue 12, hole 4).
* Abandoned threads are counted, so the worker can stop claiming once too
  many pile up (``Worker(max_abandoned_threads=...)``) instead of leaking one
  thread per hung attempt forever (hole 5).

A thread per call rather than a reused pool: at most ``concurrency`` bodies
run at once (the worker's permits) plus the capped abandoned ones, so the
number of threads is bounded anyway, and a thread that is never reused can
never hand a stuck body's thread-local state to the next task.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from flowfabric_worker.context.thread_bridge import bind_loop

__all__ = ["TaskThreads"]

T = TypeVar("T")

log = logging.getLogger("flowfabric_worker.worker")


@dataclass
class _Call(Generic[T]):
    label: str
    done: anyio.Event = field(default_factory=anyio.Event)
    value: T | None = None
    error: BaseException | None = None
    finished: bool = False
    abandoned: bool = False


class TaskThreads:
    """Runs sync callables in daemon threads; counts the abandoned ones.

    ``on_released`` is called on the event loop when an abandoned thread
    finally returns (the worker wakes its claim loop with it)."""

    def __init__(self, on_released: Callable[[], None] | None = None) -> None:
        self.on_released = on_released
        self._lock = threading.Lock()
        #: Abandoned calls still running, by thread name (for logs).
        self._abandoned: dict[int, str] = {}

    @property
    def abandoned(self) -> int:
        """How many abandoned bodies are still running in their threads."""
        with self._lock:
            return len(self._abandoned)

    def abandoned_labels(self) -> list[str]:
        with self._lock:
            return sorted(self._abandoned.values())

    async def run(self, fn: Callable[[], T], label: str) -> T:
        """``fn()`` in a new daemon thread, with a copy of the caller's
        context variables; its value or its exception. Cancelled while it
        runs: the thread is abandoned and counted until ``fn`` returns."""
        token = anyio.lowlevel.current_token()
        context = contextvars.copy_context()
        call: _Call[T] = _Call(label)

        def body() -> None:
            bind_loop(token)
            try:
                call.value = context.run(fn)
            except BaseException as exc:
                call.error = exc
            with self._lock:
                call.finished = True
                released = self._abandoned.pop(threading.get_ident(), None) is not None
            try:
                anyio.from_thread.run_sync(self._deliver, call, released, token=token)
            except Exception:
                pass  # the loop is gone (the worker exited): nobody waits any more

        thread = threading.Thread(target=body, name=f"ffw-task {label}", daemon=True)
        thread.start()
        try:
            await call.done.wait()
        except BaseException:
            with self._lock:
                if not call.finished and thread.ident is not None:
                    call.abandoned = True
                    self._abandoned[thread.ident] = label
            raise
        if call.error is not None:
            error, call.error = call.error, None  # no cycle through the traceback
            raise error
        return call.value  # type: ignore[return-value]  # set when no error

    def _deliver(self, call: _Call[Any], released: bool) -> None:
        call.done.set()
        if released:
            log.info("abandoned task thread returned: %s", call.label)
            if self.on_released is not None:
                self.on_released()
