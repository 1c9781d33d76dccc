"""The narrow port the worker runtime is written against.

The runtime never builds FCALLs itself: it needs a dozen operations (read the
best candidate of a lane partition, issue a grant, claim, renew, complete,
fail, ...). They are described here as a :class:`Engine` protocol so the
runtime stays independent of how the backend spells its typed structs; the
adapter that binds it to :class:`~flowfabric_worker.backend.Backend` lives in
``worker/backend_port.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flowfabric_worker.context.attempt import Claimed

#: Claim-time refusals that mean "try the next partition" (spec 05 §2.2, 2.7).
SKIPPABLE_CLAIM_CODES = frozenset(
    {"grant_already_exists", "execution_not_eligible", "execution_not_found",
     "not_in_eligible_set", "claim_grant_not_found", "execution_not_active",
     "invalid_claim_grant", "lease_conflict"}
)


@dataclass(frozen=True)
class FailOutcome:
    """What ``ff_fail_execution`` decided: retry later or terminal."""

    retry_scheduled: bool
    delay_until_ms: int = 0


class Engine(Protocol):
    """Operations the runtime performs against the engine (spec 02, 05)."""

    @property
    def num_partitions(self) -> int: ...

    async def candidates(self, lane: str, partitions: list[int], per_partition: int
                         ) -> list[list[str]]:
        """For each partition, up to ``per_partition`` lowest-score eligible
        execution ids of ``lane`` (one round trip for the whole window)."""

    async def required_capabilities(self, eid: str) -> frozenset[str]: ...

    async def block_for_capability(self, eid: str, lane: str) -> None:
        """Move ``eid`` to ``blocked:waiting_for_capable_worker`` (spec 05 §2.2)."""

    async def claim(
        self, eid: str, lane: str, worker_id: str, worker_instance_id: str,
        capabilities: frozenset[str], lease_ttl_ms: int, grant_ttl_ms: int,
    ) -> Claimed:
        """Issue a grant to self and consume it (fresh claim, or resumed claim
        when the engine answers ``use_claim_resumed_execution``)."""

    async def list_reclaimable(self, lane: str, partition: int, limit: int) -> list[str]:
        """Executions of ``lane`` whose lease expired (``lease_expired_reclaimable``)."""

    async def reclaim(
        self, eid: str, lane: str, worker_id: str, worker_instance_id: str,
        capabilities: frozenset[str], lease_ttl_ms: int, grant_ttl_ms: int,
    ) -> Claimed:
        """Reclaim grant + reclaim: a new attempt on an expired lease."""

    async def renew(self, lease: Claimed, lease_ttl_ms: int) -> int:
        """Renew; returns the new expiry (ms). Raises typed errors on loss."""

    async def complete(self, lease: Claimed, result: bytes) -> None: ...

    async def fail(
        self, lease: Claimed, reason: str, category: str, retry_policy_json: str
    ) -> FailOutcome: ...

    async def cancel(self, lease: Claimed, reason: str) -> None: ...

    async def hand_back(self, lease: Claimed, *, delay_ms: int = 0) -> None:
        """Release the lease so the same attempt is claimable again at once,
        or after ``delay_ms`` (``ff_delay_execution``; spec 02 §3.11). Used
        by drain, and for kinds this worker has no task for."""

    async def update_progress(self, lease: Claimed, pct: float, message: str) -> None: ...

    async def publish_done(self, eid: str) -> None:
        """``PUBLISH ffw:done:<eid>`` so result waiters wake up."""
