"""Calling the worker's async machinery from a sync task's worker thread.

A plain (sync) task function runs in a thread of its own (a daemon thread
the worker starts, see ``worker/task_threads.py``, bound to the loop with
:func:`bind_loop`; or an ``anyio.to_thread`` worker thread); the frame
writer, the backend and everything else it may want to use live on the
worker's event loop. :func:`loop_or_thread` lets one ``TaskContext``
method serve both kinds of task: on the event loop it returns the coroutine
for the caller to ``await``; in a worker thread it runs the coroutine on the
loop (``anyio.from_thread.run``), waits for it, re-raises its error, and
returns an awaitable that is already done — so a sync task just calls
``ctx.stream(...)`` and an ``await`` on the result is still harmless.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

import anyio.from_thread
from anyio.lowlevel import EventLoopToken

from flowfabric_worker.errors import ConfigurationError

__all__ = ["DONE", "bind_loop", "loop_or_thread", "on_event_loop", "run_from_thread"]

T = TypeVar("T")

#: The loop a task thread started by the worker belongs to. anyio knows the
#: loop of its own worker threads only; ours are daemon threads (a hung body
#: must not keep the process alive at exit), so they carry the token here.
_bound = threading.local()


def bind_loop(token: EventLoopToken) -> None:
    """Make the calling thread a task thread of the loop of ``token``:
    :func:`run_from_thread` (``ctx.sync``, frames) reaches that loop."""
    _bound.token = token


class _Done:
    """An awaitable that is already complete."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


DONE: Awaitable[None] = _Done()


def on_event_loop() -> bool:
    """True when this thread is running an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_from_thread(call: Callable[[], Awaitable[T]], needs: str) -> T:
    """Run ``call()`` on the worker's event loop from a task's worker thread,
    wait for it and return its value (its own errors re-raised). Any other
    thread gets :class:`ConfigurationError` saying ``needs``."""
    started = False

    async def run() -> T:
        nonlocal started
        started = True
        return await call()

    try:
        return anyio.from_thread.run(run, token=getattr(_bound, "token", None))
    except RuntimeError as exc:
        if started:
            raise  # the call's own error
        raise ConfigurationError(
            f"{needs} needs the worker's event loop: make it from the task itself "
            "(an async task, or a sync task the worker runs in its thread), not from "
            "a thread the task started") from exc


def loop_or_thread(make: Callable[[], Coroutine[Any, Any, None]]) -> Awaitable[None]:
    """``make()`` to await on the event loop; run to completion from a worker
    thread. Any other thread gets :class:`ConfigurationError`."""
    if on_event_loop():
        return make()
    run_from_thread(make, "this call")
    return DONE
