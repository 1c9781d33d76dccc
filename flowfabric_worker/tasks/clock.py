"""The wall clock the submitting side stamps absolute times with.

A submission's ``delay`` and ``deadline`` (and a child's deadline) become
absolute epoch milliseconds on the client, which the server then compares
with its own clock (``TIME`` in the library). Both clocks must agree. They
do in production (both are real time); the test environment's virtual clock
(:mod:`flowfabric_worker.testing`) moves the server's clock ahead, so it
moves this one too, through :func:`set_wall_clock`.

Everything else the SDK times (leases, timeouts, polls, backoffs) runs on
the event loop's monotonic clock or on the server's, never on this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["set_wall_clock", "wall_ms"]

_wall: Callable[[], float] = time.time


def wall_ms() -> int:
    """Now, in epoch milliseconds, as the client stamps it."""
    return int(_wall() * 1000)


def set_wall_clock(clock: Callable[[], float] | None) -> Callable[[], float]:
    """Make ``clock`` (epoch seconds) the client's wall clock for the whole
    process (``None``: the system's) and return the one it replaces."""
    global _wall
    previous = _wall
    _wall = clock if clock is not None else time.time
    return previous
