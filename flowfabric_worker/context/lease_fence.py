"""The lease fence of a running attempt: what :meth:`TaskContext.ensure_lease`
checks before a side effect, and the state the executor and the renewer keep
it with (confirmed expiry, time limit, the attempt's end)."""

from __future__ import annotations

import time

import anyio

from flowfabric_worker.context.lease_lost_event import LeaseLostEvent
from flowfabric_worker.errors import LeaseLost

__all__ = ["LEASE_FENCE_MARGIN", "LeaseFence"]

#: Part of the lease TTL that :meth:`TaskContext.ensure_lease` keeps in hand:
#: it fails once less than this fraction of the TTL remains of the last
#: confirmed lease. Renewals go out every third of the TTL, so a healthy
#: lease always has about two thirds left and never comes near it; the
#: margin covers the time between the check and the side effect it guards
#: landing (and clock rate drift between worker and server, parts per million).
LEASE_FENCE_MARGIN = 0.1


class LeaseFence:
    """The lease-keeping half of :class:`TaskContext` (which inherits it)."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        #: Set once the attempt can no longer complete: a terminal renewal
        #: error, local lease expiry, its time limit, a drain hand-back, or
        #: the attempt's end (see ensure_lease).
        self.lease_lost = LeaseLostEvent()
        self.lease_lost_reason = ""
        #: The lease itself is gone (refused renewal, local expiry): no
        #: terminal call can land. False when only the attempt was ended
        #: (time limit: the executor still records the timeout under it).
        self.lease_gone = False
        #: The attempt's time limit passed (set by ensure_lease or the executor).
        self.timed_out = False
        #: time.monotonic() until which the lease is known valid: when the
        #: last successful claim / renewal was sent plus the TTL it granted.
        self._lease_valid_until: float | None = None
        self._lease_margin = 0.0
        #: time.monotonic() of the executor's time limit for this attempt.
        self._time_limit_at: float | None = None
        self._guard: anyio.Lock | None = None
        self.lease_released = False

    @property
    def lease_guard(self) -> anyio.Lock:
        """Held around lease renewals and around a suspend, which releases
        the lease (``lease_released``): no renewal races a suspension."""
        if self._guard is None:
            self._guard = anyio.Lock()
        return self._guard

    def ensure_lease(self) -> None:
        """Raise :class:`LeaseLost` if this attempt can no longer complete.

        That is: its time limit passed, it was handed back on drain or has
        ended, a renewal was refused, or the local monotonic clock is past
        the last confirmed lease expiry minus a margin (a tenth of the TTL)
        — checked here, so a process paused longer than its lease fails on
        waking, before any renewal answers. Sets ``lease_lost`` when it
        raises. Advisory: see docs/api.md for what it cannot guarantee.
        """
        if not self.lease_lost.is_set():
            now = time.monotonic()
            if self._time_limit_at is not None and now >= self._time_limit_at:
                self.end_attempt("attempt time limit passed", timed_out=True)
            elif self.lease_expired(now, self._lease_margin):
                self.mark_lease_lost("lease expired locally (last confirmed expiry passed)")
        if self.lease_lost.is_set():
            raise LeaseLost(self.execution_id, self.lease_lost_reason or "lease lost")

    def confirm_lease(self, sent_at: float, ttl_s: float) -> None:
        """A claim or renewal sent at ``sent_at`` (monotonic) granted
        ``ttl_s``: the lease holds at least until then, however long the
        answer took. Called by the executor and the renewer."""
        until = sent_at + ttl_s
        if self._lease_valid_until is None or until > self._lease_valid_until:
            self._lease_valid_until = until
        self._lease_margin = ttl_s * LEASE_FENCE_MARGIN

    def lease_expired(self, now: float | None = None, margin: float = 0.0) -> bool:
        """True once the monotonic clock is past the confirmed expiry
        (minus ``margin``); False while nothing was confirmed yet."""
        until = self._lease_valid_until
        if until is None:
            return False
        return (time.monotonic() if now is None else now) >= until - margin

    def lease_valid_for(self, now: float | None = None) -> float | None:
        """Seconds left before the confirmed expiry (never negative); None
        while nothing was confirmed yet."""
        until = self._lease_valid_until
        if until is None:
            return None
        return max(0.0, until - (time.monotonic() if now is None else now))

    def set_time_limit(self, at: float) -> None:
        """The executor's time limit for this attempt, as a monotonic time."""
        self._time_limit_at = at

    def end_attempt(self, reason: str, *, timed_out: bool = False) -> None:
        """The attempt can no longer complete although its lease may still
        hold (time limit, drain hand-back, attempt over): fence it.
        Idempotent; the first reason is kept."""
        if timed_out:
            self.timed_out = True
        if not self.lease_lost.is_set():
            self.lease_lost_reason = reason
            self.lease_lost.set()

    def mark_lease_lost(self, reason: str) -> None:
        """The lease itself is gone (renewal refused, local expiry); idempotent."""
        self.lease_gone = True
        if not self.lease_lost.is_set():
            self.lease_lost_reason = reason
            self.lease_lost.set()
