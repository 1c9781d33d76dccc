"""The CPU time one coroutine itself spends on the event loop.

An event loop runs one task's step at a time, so what a coroutine costs the
loop is the thread CPU time of its own steps: from each resume to its next
suspension. Timing the whole ``await`` instead would also charge it whatever
other tasks ran while it waited for a reply; the scanners' pacing did that
once, and on a worker starting on a busy box a pass "cost" 0.2 s it never
used, which paced the next pass 13 s out.

:class:`Metered` drives the coroutine the way the task would (every value it
yields goes to the loop, every value or exception the loop sends back goes to
it), and adds up the time of each step. It is loop-agnostic: asyncio and
trio only see the values passed through.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Metered"]

T = TypeVar("T")


class Metered(Generic[T]):
    """``await Metered(coro)`` runs ``coro``; afterwards ``.cpu`` holds the
    thread CPU time (s) of its own steps, excluding other tasks' turns.

    Only the coroutine's own task is measured: tasks it starts (a task
    group's children) run as turns of their own and are not counted.
    """

    __slots__ = ("_coro", "cpu")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self.cpu = 0.0

    def __await__(self) -> Generator[Any, Any, T]:
        coro = self._coro
        value: Any = None
        error: BaseException | None = None
        while True:
            start = time.thread_time()
            try:
                step = coro.throw(error) if error is not None else coro.send(value)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            finally:
                self.cpu += time.thread_time() - start
            try:
                value, error = (yield step), None
            except GeneratorExit:
                # The awaiting task is being closed without being resumed:
                # close the coroutine the same way, so its cleanup runs.
                coro.close()
                raise
            except BaseException as exc:  # cancellation, or the loop's own error
                value, error = None, exc
