"""What the runtime measures, behind a recorder that does nothing by default.

The worker, the executor, the renewal loop, the scanners and admission call
the methods of the process's :func:`recorder` at each event. Until metrics
are enabled (``run --metrics-port``, :func:`install`) that is a
:class:`NullRecorder`, whose methods return at once: a disabled feature costs
one method call per event and imports nothing. The Prometheus recorder
(:mod:`.prometheus`) maps each method to the metrics of docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["NullRecorder", "Recorder", "install", "recorder", "reset"]


class Recorder(Protocol):
    """The events measured. Labels are plain strings; ``task`` is the task
    name, ``lane`` the lane, ``category`` a failure category."""

    #: False for the no-op recorder: callers skip work done only to measure.
    enabled: bool

    def attempt_started(self, task: str, lane: str, attempt_type: str,
                        claim_latency: float) -> None:
        """An attempt was claimed and its body is about to run;
        ``claim_latency``: seconds since its claim was sent."""

    def attempt_finished(self, task: str, lane: str, outcome: str, category: str,
                         duration: float) -> None:
        """An attempt ended with a terminal call. ``outcome``: ``ok``,
        ``error``, ``timeout`` or ``retry`` (a failure with a retry
        scheduled); ``category`` is empty for ``ok``."""

    def attempt_interrupted(self, task: str, lane: str, how: str) -> None:
        """An attempt ended without a terminal call: ``suspended``,
        ``handed_back``, ``lease_lost`` or ``cancelled`` (its execution was
        cancelled or expired under it)."""

    def lease_renewal(self, ok: bool) -> None:
        """One lease renewal answered (``ok``) or failed."""

    def at_capacity(self) -> None:
        """The claim loop found every slot busy and waited."""

    def budget_hit(self, dimension: str) -> None:
        """Admission refused a candidate at a budget's hard limit."""

    def quota_hit(self, reason: str) -> None:
        """Admission refused a candidate by its quota: ``rate`` or ``concurrency``."""

    def scanner_cycle(self, scanner: str, seconds: float) -> None:
        """One pass of a maintenance scanner finished."""

    def redis_round_trip(self, seconds: float) -> None:
        """One measured round trip to the server."""

    def bind_slots(self, in_flight: Callable[[], float], free: Callable[[], float]) -> None:
        """Read the worker's busy and free slots when scraped (no cost per task)."""


class NullRecorder:
    """Records nothing (the default)."""

    enabled = False

    def attempt_started(self, task: str, lane: str, attempt_type: str,
                        claim_latency: float) -> None:
        pass

    def attempt_finished(self, task: str, lane: str, outcome: str, category: str,
                         duration: float) -> None:
        pass

    def attempt_interrupted(self, task: str, lane: str, how: str) -> None:
        pass

    def lease_renewal(self, ok: bool) -> None:
        pass

    def at_capacity(self) -> None:
        pass

    def budget_hit(self, dimension: str) -> None:
        pass

    def quota_hit(self, reason: str) -> None:
        pass

    def scanner_cycle(self, scanner: str, seconds: float) -> None:
        pass

    def redis_round_trip(self, seconds: float) -> None:
        pass

    def bind_slots(self, in_flight: Callable[[], float], free: Callable[[], float]) -> None:
        pass


_NULL = NullRecorder()
_current: Recorder = _NULL


def recorder() -> Recorder:
    """The process's recorder (a :class:`NullRecorder` until :func:`install`)."""
    return _current


def install(new: Recorder) -> Recorder:
    """Make ``new`` the process's recorder; returns the previous one.
    Components created afterwards record to it (a worker reads it when built)."""
    global _current
    previous, _current = _current, new
    return previous


def reset() -> None:
    """Back to the no-op recorder."""
    install(_NULL)
