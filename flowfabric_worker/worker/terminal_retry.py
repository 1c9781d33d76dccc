"""How long, how often and how loudly a terminal call (complete / fail) is
retried while Redis cannot be reached (issue 12, hole 8).

A fixed number of tries (it was five, about 1.5 s) lets an outage longer
than that turn a finished task into a re-run: the worker gives up, the lease
lapses, another worker reclaims and runs the body again. Yet the result is
still ours to write for as long as our lease holds, and resending is safe
(a copy that landed is answered ``execution_not_active`` with our own epoch
and attempt, which the engine binding reads as success; a lease that moved
on is a typed refusal). So the call is retried until the locally confirmed
lease expiry (``TaskContext``: monotonic, counted from when the claim or
renewal was *sent*, so never later than the server's), and only then given
up, when another worker may reclaim.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

from flowfabric_worker.context.task_context import TaskContext

__all__ = ["TerminalRetry"]

#: First pause between two tries, and the cap of the doubling: a restarted
#: server is noticed within ~2 s, and an outage is not hammered.
BASE_DELAY = 0.1
MAX_DELAY = 2.0
#: One WARNING line per this many seconds at most (the others go to DEBUG):
#: a long outage with many tasks finishing must not flood the log.
LOG_EVERY = 5.0
#: Without a context (an executor driven directly) nothing confirms the
#: lease: retry about as long as before this module existed.
NO_CONTEXT_WINDOW = 1.5
#: One jitter source for every retry: a ``random.Random()`` per terminal call
#: seeded itself from ``os.urandom`` (~11 µs), paid by every completed task
#: though the jitter is only drawn during an outage.
_JITTER = random.Random()


@dataclass
class TerminalRetry:
    """The retry state of one terminal call of one attempt."""

    op: str
    execution_id: str
    ctx: TaskContext | None
    attempt: int = 0
    _started: float = field(default_factory=time.monotonic)
    _last_log: float | None = None
    _rng: random.Random = field(default_factory=lambda: _JITTER)

    def remaining(self, now: float | None = None) -> float:
        """Seconds the lease is still known to be ours (0 once it may not be)."""
        now = time.monotonic() if now is None else now
        if self.ctx is None:
            return max(0.0, self._started + NO_CONTEXT_WINDOW - now)
        if self.ctx.lease_gone:  # a renewal was refused: the lease moved on
            return 0.0
        left = self.ctx.lease_valid_for(now)
        return NO_CONTEXT_WINDOW if left is None else left

    def next_delay(self, now: float | None = None) -> float | None:
        """The pause before the next try, or None to give up (the lease has
        certainly expired, or will have by the time the pause ends)."""
        left = self.remaining(now)
        if left <= 0:
            return None
        # Capped doubling with "equal jitter" (half fixed, half random): the
        # terminal calls of the many tasks an outage caught do not all land
        # on the restarted server in the same instant.
        cap = min(MAX_DELAY, BASE_DELAY * float(2 ** min(self.attempt, 16)))
        delay = cap / 2 + self._rng.uniform(0, cap / 2)
        # Never sleep past the expiry: one last try right before it.
        return min(delay, left)

    def note_failure(self, exc: BaseException, log: logging.Logger,
                     now: float | None = None) -> float | None:
        """Count a failed try and log it; the pause before the next one, or
        None to give up."""
        now = time.monotonic() if now is None else now
        self.attempt += 1
        delay = self.next_delay(now)
        if delay is None:
            log.error("redis unreachable, giving up %s of %s after %d attempts: the lease "
                      "has expired and another worker will reclaim it (%s)",
                      self.op, self.execution_id, self.attempt, exc)
            return None
        loud = self._last_log is None or now - self._last_log >= LOG_EVERY
        if loud:
            self._last_log = now
        log.log(logging.WARNING if loud else logging.DEBUG,
                "redis unreachable, retrying %s of %s (attempt %d), lease valid for "
                "another %.1f s: %s", self.op, self.execution_id, self.attempt + 1,
                self.remaining(now), exc)
        return delay
