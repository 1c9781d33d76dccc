"""The claimed attempt a task context belongs to, and how a lost lease is
recognised."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flowfabric_worker.errors import ContractError, LeaseLost

#: Renew / terminal refusals meaning "this claim no longer owns the lease"
#: (spec 05 §3.2): the renewal loop stops on the first one.
LEASE_LOST_CODES = frozenset(
    {"stale_lease", "lease_revoked", "lease_expired", "execution_not_active",
     "execution_not_found"}
)


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
    #: ``time.monotonic()`` just before the claim that granted this lease was
    #: sent (0: unknown). The lease is certainly valid until this plus its
    #: TTL, whatever the server's clock says: the worker-side fence counts
    #: from here (TaskContext.ensure_lease).
    claim_sent_at: float = 0.0
