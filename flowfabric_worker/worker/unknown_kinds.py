"""What a worker does with an execution of a kind it has no task for.

A worker claims whatever is eligible on its lanes. In a mixed fleet (Python
and Rust workers of one FlowFabric deployment on a shared lane) or during a
rolling deploy (an old worker meeting a task added by the new release), some
kinds belong to another worker.

**Left alone first.** A claim round usually knows the kind before it claims:
the solo partition's heads come with their pre-read, and a direct wake-up
names the kind. Such an execution is skipped (:class:`ForeignKinds`) for
:data:`LEAVE_FOR` from the moment this worker first saw it, so a worker that
has the kind takes it with its first claim. Claiming and handing back
instead made the two fleets race for it at every promotion, and the loser's
hand-back doubled the wait: eight lost races in a row cost over a minute.

**Then handed back.** Still there after that (its fleet is busy or gone),
or claimed without a pre-read (flow members on other partitions, engines
without batch claims), the execution is claimed and **handed back**:
``ff_delay_execution`` parks the same attempt in the lane's delayed index for
a short while (no attempt consumed, no failure recorded; spec 02 §3.11), and
whichever worker claims it next resumes it. That also moves it out of the
way of this worker's own work behind it. The delay grows with the
execution's ``lease_epoch`` — every claim of it, by any worker, bumps the
epoch — so the back-off is shared by the whole fleet and survives restarts,
and a kind no live worker knows costs one claim per :data:`MAX_DELAY_MS` +
:data:`LEAVE_FOR` per execution, not a hot loop.

Failing such an execution (category ``unknown_task``) is only an opt-in for
a standalone fleet that is the only one serving its lanes
(``Worker(fail_unknown_after=N)``): after N claims nobody took it. In
attached mode that is refused, since a FlowFabric worker this process cannot
see may be the one that knows the kind.
"""

from __future__ import annotations

import time
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.errors import ConfigurationError

__all__ = ["BASE_DELAY_MS", "LEAVE_FOR", "MAX_DELAY_MS", "ForeignKinds", "UnknownKinds",
           "hand_back_delay_ms"]

#: The first hand-back's delay: long enough that the worker that handed it
#: back is not the only one racing for it, short against a task's run.
BASE_DELAY_MS = 250
#: The delay stops growing here (reached at about the ninth claim): a kind
#: nobody serves is looked at once a minute per execution.
MAX_DELAY_MS = 60_000
#: Seconds a worker leaves an execution of a kind it lacks in the lane after
#: first seeing it there: long enough for an idle worker that has the kind
#: to claim it, short enough that a foreign kind at the head of the lane
#: does not hold up this worker's own work behind it for long.
LEAVE_FOR = 1.0
#: Sightings remembered before the old ones (past LEAVE_FOR) are dropped.
_REMEMBERED = 1024


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


class ForeignKinds:
    """Which executions a claim round leaves for another worker.

    ``kinds`` is what this worker has tasks for (``None``: anything, no
    filtering). An execution of another kind is left alone for
    :data:`LEAVE_FOR` from this worker's first sighting of it; after that it
    is claimed (and handed back) like before, and a later sighting starts a
    new wait.
    """

    def __init__(self, kinds: Container[str] | None) -> None:
        self.kinds = kinds
        self._first_seen: dict[str, float] = {}

    def knows(self, kind: str) -> bool:
        """Whether this worker runs ``kind`` (an unknown kind, "", is not
        judged: the claim finds out)."""
        return self.kinds is None or not kind or kind in self.kinds

    def leave(self, eid: str, kind: str) -> bool:
        """Whether to leave ``eid`` (of ``kind``) alone this round."""
        if self.knows(kind):
            return False
        now = time.monotonic()
        first = self._first_seen.get(eid)
        if first is None:
            if len(self._first_seen) >= _REMEMBERED:
                self._forget(now)
            self._first_seen[eid] = now
            return True
        if now - first < LEAVE_FOR:
            return True
        del self._first_seen[eid]  # claimed now: a later sighting waits again
        return False

    def claimable(self, eids: Sequence[str], pre_read: Mapping[str, Any]) -> list[str]:
        """``eids`` without those to leave alone, judged by their pre-read
        (``CandidateRead``: ``core["execution_kind"]``); an eid without one
        is kept."""
        out = []
        for eid in eids:
            read = pre_read.get(eid)
            if read is None or not self.leave(eid, read.core.get("execution_kind", "")):
                out.append(eid)
        return out

    def _forget(self, now: float) -> None:
        # Most sightings end with the right worker claiming the execution,
        # which this worker never hears of: drop the ones past their wait.
        self._first_seen = {e: t for e, t in self._first_seen.items()
                            if now - t < LEAVE_FOR}
