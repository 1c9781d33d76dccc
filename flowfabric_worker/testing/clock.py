"""The virtual clock of a time-skipping test environment.

Time reaches the runtime in two ways, and both are moved together:

* **The server's clock.** Every library function reads ``TIME`` (``now_ms``
  in ``lua/shared/00_base.lua``): delays, retry backoffs, suspension and
  signal timeouts (``ctx.sleep`` is one), pending-waitpoint expiry,
  execution deadlines, attempt timeouts and lease expiry are all decided
  against it, and the scanners pass the ``now`` it gives them back to the
  library. On an embedded ``memory://`` server the clock is attached to
  that server (:func:`attach`): its ``TIME``, key expiry and stream ids
  read ``time.time() + offset``.
* **The client's wall clock** (:mod:`flowfabric_worker.tasks.clock`), which
  turns a submission's ``delay`` / ``deadline`` into absolute times.

The clock ticks with real time; :meth:`VirtualClock.advance` adds to its
offset, which only grows (a stream id or a score never goes back).

How it reaches fakeredis: fakeredis reads ``time.time()`` through the
``time`` module of a few of its own modules. Those names are replaced, once
per process, by a stand-in that answers the virtual time while a command of
a server with a clock attached runs (on the thread running it), and the
real time otherwise: servers without a clock are not affected.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

from flowfabric_worker.errors import ConfigurationError, InvalidInput

__all__ = ["VirtualClock", "attach", "detach"]

#: The fakeredis modules whose ``time.time()`` a command's time comes from:
#: the per-command clock of key expiry, ``TIME``, and ``current_time()``
#: (stream ids, hash field TTLs).
_FAKEREDIS_TIME_USERS = (
    "fakeredis._socket._base",
    "fakeredis.commands_mixins.server_mixin",
    "fakeredis._helpers",
    "fakeredis.model._stream",
)

_ATTRIBUTE = "_ffw_virtual_clock"
_running = threading.local()
_install_lock = threading.Lock()
_installed = False


class VirtualClock:
    """Real time plus an offset that only grows.

    ``clock.time()`` is epoch seconds as the environment sees them;
    ``clock.advance(3600)`` moves it an hour ahead at once.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        """Seconds this clock is ahead of real time."""
        return self._offset

    def time(self) -> float:
        """Now, in epoch seconds."""
        return time.time() + self._offset

    def now_ms(self) -> int:
        """Now, in epoch milliseconds (what the library's ``now_ms`` gives)."""
        return int(self.time() * 1000)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead (``InvalidInput`` if negative)."""
        if not seconds >= 0:  # NaN too
            raise InvalidInput(f"a clock only moves forward, not by {seconds!r} s")
        with self._lock:
            self._offset += seconds

    def advance_to_ms(self, when_ms: int) -> float:
        """Move the clock to epoch ms ``when_ms`` if that is ahead; returns
        the seconds it moved (0 when ``when_ms`` has passed already)."""
        step = max(0.0, when_ms / 1000 - self.time())
        self.advance(step)
        return step


class _ClockedTime:
    """Stands in for the ``time`` module inside fakeredis: ``time()`` is the
    clock of the server whose command runs on this thread, if it has one."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def time() -> float:
        clock: VirtualClock | None = getattr(_running, "clock", None)
        return time.time() if clock is None else clock.time()


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        from fakeredis._socket._base import BaseFakeSocket

        modules = [importlib.import_module(name) for name in _FAKEREDIS_TIME_USERS]
        process = getattr(BaseFakeSocket, "_process_command", None)
        if process is None or any(getattr(m, "time", None) is not time for m in modules):
            raise ConfigurationError(
                "this fakeredis version is laid out differently from the one the "
                "virtual clock was written for: use time_skipping=False")
        stand_in = _ClockedTime()
        for module in modules:
            module.time = stand_in  # type: ignore[attr-defined]

        def clocked(self: Any, fields: list[bytes]) -> None:
            clock = getattr(self._server, _ATTRIBUTE, None)
            if clock is None:
                process(self, fields)
                return
            previous = getattr(_running, "clock", None)
            _running.clock = clock
            try:
                process(self, fields)
            finally:
                _running.clock = previous

        BaseFakeSocket._process_command = clocked  # type: ignore[method-assign]
        _installed = True


def attach(server: Any, clock: VirtualClock) -> None:
    """Give the fakeredis ``server`` this clock (until :func:`detach`)."""
    _install()
    setattr(server, _ATTRIBUTE, clock)


def detach(server: Any) -> None:
    """Put ``server`` back on real time."""
    if hasattr(server, _ATTRIBUTE):
        delattr(server, _ATTRIBUTE)
