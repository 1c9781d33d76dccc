"""The narrow engine port the worker runtime is written against.

The runtime never builds FCALLs itself: it needs a dozen operations (read the
best candidate of a lane partition, issue a grant, claim, renew, complete,
fail, ...). They are described here as a :class:`Engine` protocol so the
runtime stays independent of how the backend spells its typed structs; the
adapter that binds it to :class:`~flowfabric_worker.backend.Backend` lives in
``runtime/backend_engine.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ContractError, FlowFabricError

#: Renew / terminal refusals meaning "this claim no longer owns the lease"
#: (spec 05 §3.2): the renewal loop stops on the first one.
LEASE_LOST_CODES = frozenset(
    {"stale_lease", "lease_revoked", "lease_expired", "execution_not_active",
     "execution_not_found"}
)

#: Claim-time refusals that mean "try the next partition" (spec 05 §2.2, 2.7).
SKIPPABLE_CLAIM_CODES = frozenset(
    {"grant_already_exists", "execution_not_eligible", "execution_not_found",
     "not_in_eligible_set", "claim_grant_not_found", "execution_not_active",
     "invalid_claim_grant", "lease_conflict"}
)


class LeaseLost(FlowFabricError):
    """This worker's claim on an execution is gone (stale, revoked or expired).

    Raised by :meth:`TaskContext.ensure_lease` and by a terminal call made
    after the lease was lost; it never means the outcome was recorded.
    """

    def __init__(self, execution_id: str, reason: str) -> None:
        self.execution_id = execution_id
        self.reason = reason
        super().__init__(f"lease lost for {execution_id}: {reason}")


def is_lease_lost(exc: BaseException) -> bool:
    """True when ``exc`` is a typed refusal meaning our lease is gone."""
    return isinstance(exc, LeaseLost) or (
        isinstance(exc, ContractError) and exc.code in LEASE_LOST_CODES
    )


@dataclass(frozen=True)
class Claimed:
    """A lease this worker holds (the fence triple plus what the task needs)."""

    execution_id: str
    lane: str
    attempt_index: int
    attempt_id: str
    lease_id: str
    lease_epoch: int
    lease_expires_at_ms: int
    attempt_type: str = "initial"
    execution_kind: str = ""
    payload: bytes = b""
    tags: Mapping[str, str] = field(default_factory=dict)
    resumed: bool = False
    worker_instance_id: str = ""
    retry_count: int = 0
    created_at_ms: int = 0
    #: exec_core ``budget_ids`` / ``quota_policy_id`` (docs/budgets.md).
    budget_ids: str = ""
    quota_policy_id: str = ""


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

    async def hand_back(self, lease: Claimed) -> None:
        """Release the lease so the same attempt is claimable again at once
        (``ff_delay_execution`` to now; spec 02 §3.11). Used by drain."""

    async def update_progress(self, lease: Claimed, pct: float, message: str) -> None: ...

    async def publish_done(self, eid: str) -> None:
        """``PUBLISH ffw:done:<eid>`` so result waiters wake up."""


class TaskLike(Protocol):
    """What the runtime needs of a registered task (H6's ``TaskDefinition``).

    Read-only members, so a frozen ``TaskDefinition`` satisfies it and
    ``Worker(client, tasks=[my_task])`` type-checks in user code.
    """

    @property
    def name(self) -> str: ...
    @property
    def lane(self) -> str: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def capabilities(self) -> Any: ...
    @property
    def fn(self) -> Callable[..., Any]: ...
    @property
    def is_async(self) -> bool: ...
    @property
    def wants_context(self) -> bool: ...
    @property
    def retry(self) -> Any: ...

    def decode_args(self, payload: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]: ...

    def encode_result(self, value: Any) -> bytes: ...
