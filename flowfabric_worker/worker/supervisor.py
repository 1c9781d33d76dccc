"""Several worker processes under one parent (``flowfabric-worker run --processes N``).

One worker process runs its task bodies on one event loop, so it uses about
one core; the supervisor starts N of them with one command, restarts one that
dies, and drains them all on SIGTERM / SIGINT.

Each child is a fresh interpreter running an ordinary worker command line
(``subprocess``, not ``multiprocessing``): a child is then exactly what an
operator would run by hand (same signal handling, same drain, same exit
codes), nothing has to be pickled, the parent's imported modules and Redis
connections are not inherited (there are none: the parent never connects),
and the ``multiprocessing`` machinery (``__main__`` re-import, resource
tracker) stays out of the way. The caller (the CLI) builds the command lines;
this module only knows argv lists, so it does not depend on the CLI.

Lifecycle (docs/operations.md, "Running several processes"):

* a child that exits while the supervisor is not stopping is restarted after
  a backoff (:data:`RESTART_INITIAL` doubling to :data:`RESTART_MAX`; back to
  the start once a child has run :data:`HEALTHY_AFTER`), each restart logged;
* except a child whose *first* run ends with :data:`CONFIG_EXIT` (the CLI's
  error exit: unimportable module, invalid settings, a server refusing the
  durability): the same configuration would fail the same way N times over,
  so the supervisor stops the others and exits with it;
* the first SIGTERM / SIGINT is forwarded as one SIGTERM to every child (each
  drains within its grace period); children still alive after
  ``grace_period`` + the worker's hand-back bound + ``stop_margin`` are
  killed. A second signal forwards a second SIGTERM (a worker then exits at
  once, leaving its leases to expire) and the supervisor exits too.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from flowfabric_worker.worker.worker import HAND_BACK_TIMEOUT

__all__ = [
    "CONFIG_EXIT",
    "HEALTHY_AFTER",
    "RESTART_INITIAL",
    "RESTART_MAX",
    "STOP_MARGIN",
    "Supervisor",
]

log = logging.getLogger("flowfabric_worker.supervisor")

#: First restart delay of a child; doubled on each further crash.
RESTART_INITIAL = 1.0
#: Longest restart delay: a crash loop costs at most one start per this.
RESTART_MAX = 30.0
#: A child that ran this long before exiting counts as healthy: its next
#: restart starts the backoff again.
HEALTHY_AFTER = 60.0
#: What a loaded box may add to a child's exit after its grace period and
#: hand-back: interpreter teardown, closing connections.
STOP_MARGIN = 5.0
#: After a second signal: how long children get to act on the second SIGTERM
#: (they ``os._exit`` at once) before they are killed.
SECOND_SIGNAL_WAIT = 2.0
#: The CLI's exit status for a FlowFabricError (``error: ...``).
CONFIG_EXIT = 2

_PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the supervisor
    dies (even by SIGKILL): the child then drains instead of running on as an
    orphan nobody stops. ``None`` elsewhere (no such facility)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl: no signal would come.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


@dataclass
class _Child:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    runs: int = 0
    delay: float = RESTART_INITIAL
    #: Monotonic time of the pending restart (None: none pending).
    restart_at: float | None = None
    #: The current run's exit was seen (logged, restart decided).
    reaped: bool = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Supervisor:
    """Run one child per argv in ``commands`` until a signal (see the module doc).

    ``grace_period`` is the children's drain time (their ``--grace-period``);
    ``env`` the children's environment (default: this process's).
    :meth:`run` returns the exit status: 0 when every child drained cleanly.
    """

    def __init__(
        self, commands: Sequence[Sequence[str]], *, grace_period: float,
        env: Mapping[str, str] | None = None, stop_margin: float = STOP_MARGIN,
        restart_initial: float = RESTART_INITIAL, restart_max: float = RESTART_MAX,
        healthy_after: float = HEALTHY_AFTER,
    ) -> None:
        if not commands:
            raise ValueError("a supervisor needs at least one child")
        self.children = [_Child(i, list(argv), delay=restart_initial)
                         for i, argv in enumerate(commands)]
        self.grace_period = grace_period
        self.env = dict(os.environ if env is None else env)
        self.stop_margin = stop_margin
        self.restart_initial = restart_initial
        self.restart_max = restart_max
        self.healthy_after = healthy_after
        self._preexec = _parent_death_signal()
        self._signals: list[int] = []

    # -- children ------------------------------------------------------------

    def _start(self, child: _Child) -> None:
        child.proc = subprocess.Popen(
            child.argv, env=self.env, stdin=subprocess.DEVNULL,
            # Its own process group: a terminal's Ctrl-C (SIGINT to the
            # foreground group) reaches only the supervisor, which forwards
            # one SIGTERM. Were the children in its group, each would get the
            # SIGINT *and* the forwarded SIGTERM, a "second signal" that makes
            # a worker exit at once instead of draining.
            process_group=0,
            preexec_fn=self._preexec,
        )
        child.started_at = time.monotonic()
        child.runs += 1
        child.restart_at = None
        child.reaped = False
        log.info("child %d started (pid %d)", child.index, child.proc.pid)

    def _reap(self, stopping: bool) -> int | None:
        """Collect exited children; schedule restarts unless ``stopping``.
        Returns an exit status when the supervisor must give up."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is None or child.reaped:
                continue
            code = child.proc.poll()
            if code is None:
                continue
            child.reaped = True
            ran = now - child.started_at
            if stopping:
                log.info("child %d (pid %d) stopped: %s", child.index, child.proc.pid,
                         _describe(code))
                continue
            if code == CONFIG_EXIT and child.runs == 1 and ran < self.healthy_after:
                log.error("child %d (pid %d) failed on start with exit status %d (see its "
                          "error above): not restarting the same configuration",
                          child.index, child.proc.pid, code)
                return CONFIG_EXIT
            if ran >= self.healthy_after:
                child.delay = self.restart_initial
            log.warning("child %d (pid %d) exited unexpectedly (%s) after %.1fs: "
                        "restarting in %.1fs", child.index, child.proc.pid, _describe(code),
                        ran, child.delay)
            child.restart_at = now + child.delay
            child.delay = min(child.delay * 2, self.restart_max)
        return None

    def _due_restarts(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and child.restart_at <= now:
                log.info("restarting child %d (run %d)", child.index, child.runs + 1)
                self._start(child)

    def _signal_all(self, signum: int) -> None:
        for child in self.children:
            if child.alive:
                assert child.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signum)

    def _live(self) -> list[_Child]:
        for child in self.children:
            if child.proc is not None and child.proc.returncode is None:
                child.proc.poll()
        return [c for c in self.children if c.alive]

    # -- signals -------------------------------------------------------------

    def _wait(self, rfd: socket.socket, timeout: float) -> None:
        """Sleep until a signal arrives (SIGCHLD included) or ``timeout``;
        record SIGTERM / SIGINT. The wakeup fd carries each signal's number,
        so nothing is lost between two waits."""
        ready, _, _ = select.select([rfd], [], [], max(0.0, timeout))
        if not ready:
            return
        with contextlib.suppress(BlockingIOError, InterruptedError):
            for byte in rfd.recv(512):
                if byte in (signal.SIGTERM, signal.SIGINT):
                    self._signals.append(byte)

    # -- the loop ------------------------------------------------------------

    def run(self) -> int:
        rfd, wfd = socket.socketpair()
        rfd.setblocking(False)
        wfd.setblocking(False)

        def noop(_signum: int, _frame: FrameType | None) -> None:
            # The wakeup fd does the work; a Python handler must be installed
            # for it to be written to.
            return None

        watched = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, noop) for sig in watched}
        previous_fd = signal.set_wakeup_fd(wfd.fileno(), warn_on_full_buffer=False)
        try:
            return self._supervise(rfd)
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            rfd.close()
            wfd.close()

    def _supervise(self, rfd: socket.socket) -> int:
        for child in self.children:
            self._start(child)
        log.info("supervising %d worker processes (SIGTERM/SIGINT drains them all)",
                 len(self.children))
        while not self._signals:
            fatal = self._reap(stopping=False)
            if fatal is not None:
                self._signals.append(signal.SIGTERM)  # stop the others like an operator
                self._shutdown(rfd)
                return fatal
            self._due_restarts()
            pending = [c.restart_at for c in self.children if c.restart_at is not None]
            timeout = min(pending, default=time.monotonic() + 1.0) - time.monotonic()
            self._wait(rfd, min(timeout, 1.0))
        return self._shutdown(rfd)

    def _shutdown(self, rfd: socket.socket) -> int:
        first = self._signals[0]
        for child in self.children:
            child.restart_at = None  # no restart during shutdown
        live = self._live()
        log.info("%s: draining %d worker processes (grace %.0fs; a second signal exits "
                 "at once)", signal.Signals(first).name, len(live), self.grace_period)
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_period + HAND_BACK_TIMEOUT + self.stop_margin
        second: int | None = None
        while self._live():
            if second is None and len(self._signals) > 1:
                second = self._signals[1]
                log.warning("second signal (%s): children exit now, their leases expire",
                            signal.Signals(second).name)
                self._signal_all(signal.SIGTERM)
                deadline = min(deadline, time.monotonic() + SECOND_SIGNAL_WAIT)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for child in self._live():
                    assert child.proc is not None
                    log.warning("child %d (pid %d) still running after the drain: killing it",
                                child.index, child.proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.kill()
                    child.proc.wait()
                break
            self._wait(rfd, min(remaining, 0.5))
        self._reap(stopping=True)
        if second is not None:
            return 128 + second
        # A child killed by the forwarded SIGTERM before its worker installed
        # its handlers (still importing) had nothing to drain: clean too.
        clean = all(c.proc is None or c.proc.returncode in (0, -signal.SIGTERM)
                    for c in self.children)
        if clean:
            log.info("all worker processes drained")
            return 0
        log.warning("not every worker process exited cleanly: %s", ", ".join(
            f"child {c.index}: {_describe(c.proc.returncode)}" for c in self.children
            if c.proc is not None and c.proc.returncode is not None))
        return 1
