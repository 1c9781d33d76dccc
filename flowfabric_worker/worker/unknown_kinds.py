"""What a worker does with an execution of a kind it has no task for.

A worker claims whatever is eligible on its lanes; the kind is only known
once the claim answered. In a mixed fleet (Python and Rust workers of one
FlowFabric deployment on a shared lane) or during a rolling deploy (an old
worker meeting a task added by the new release), that kind belongs to
another worker. So the execution is **handed back**: ``ff_delay_execution``
parks the same attempt in the lane's delayed index for a short while (no
attempt consumed, no failure recorded; spec 02 §3.11), and whichever worker
claims it next resumes it. The delay grows with the execution's
``lease_epoch`` — every claim of it, by any worker, bumps the epoch — so the
back-off is shared by the whole fleet and survives restarts, and a kind no
live worker knows costs one claim per :data:`MAX_DELAY_MS` per execution, not
a hot loop.

Failing such an execution (category ``unknown_task``) is only an opt-in for
a standalone fleet that is the only one serving its lanes
(``Worker(fail_unknown_after=N)``): after N claims nobody took it. In
attached mode that is refused, since a FlowFabric worker this process cannot
see may be the one that knows the kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.errors import ConfigurationError

__all__ = ["BASE_DELAY_MS", "MAX_DELAY_MS", "UnknownKinds", "hand_back_delay_ms"]

#: The first hand-back's delay: long enough that the worker that handed it
#: back is not the only one racing for it, short against a task's run.
BASE_DELAY_MS = 250
#: The delay stops growing here (reached at about the ninth claim): a kind
#: nobody serves is looked at once a minute per execution.
MAX_DELAY_MS = 60_000


def hand_back_delay_ms(lease_epoch: int) -> int:
    """How long the ``lease_epoch``-th claim of an execution parks it:
    ``BASE_DELAY_MS`` doubled per earlier claim, capped at ``MAX_DELAY_MS``."""
    doublings = min(max(lease_epoch - 1, 0), 20)
    return min(BASE_DELAY_MS << doublings, MAX_DELAY_MS)


@dataclass(frozen=True)
class UnknownKinds:
    """The worker's rule for kinds it has no task for.

    ``fail_after``: ``None`` (the default) hands every such execution back;
    an integer N fails it (``unknown_task``, not retried) once it has been
    claimed N times (its ``lease_epoch``), standalone only.
    """

    fail_after: int | None = None

    @classmethod
    def for_mode(cls, mode: str, fail_after: int | None) -> UnknownKinds:
        """The rule for a worker in ``mode``; a bound that cannot hold there
        is a :class:`ConfigurationError` (raised before anything runs)."""
        if fail_after is None:
            return cls()
        if fail_after < 1:
            raise ConfigurationError(
                f"fail_unknown_after must be at least 1 claim (got {fail_after})")
        if mode == "attached":
            raise ConfigurationError(
                "fail_unknown_after is refused in attached mode: another worker of the "
                "FlowFabric deployment may serve the kind; unknown kinds are handed back")
        return cls(fail_after)

    def should_fail(self, lease: Claimed) -> bool:
        return self.fail_after is not None and lease.lease_epoch >= self.fail_after

    def reason(self, lease: Claimed) -> str:
        """The failure reason (bounded case) or the hand-back log line."""
        if self.should_fail(lease):
            return (f"no task registered for {lease.execution_kind!r} on this worker "
                    f"(claimed {lease.lease_epoch} times, fail_unknown_after="
                    f"{self.fail_after})")
        return (f"for another worker: no task registered for {lease.execution_kind!r} "
                f"here; claimable again in {hand_back_delay_ms(lease.lease_epoch) / 1000:g} s")
