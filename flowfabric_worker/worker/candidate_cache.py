"""Heads a claim round read with their pre-read but did not claim.

A busy lane's round reads the solo partition's heads with their pre-read
(``ffw_claim_candidates``) for as many candidates as the worker has slots,
claims what its free permits allow and keeps the rest here; the next rounds
claim from them without reading the index again, until they run out, grow
stale or a claim of one of them is refused (another worker got there first).
A no-op drain made one index read per ~6 claims, most of it re-reading heads
the previous round had left; with the leftovers kept, one per ~20.

Claiming a kept head is as safe as claiming a freshly read one: the grant
and claim check the execution's state on the server, and the claim path
already treats a pre-read as possibly stale (``BatchClaims.claim_many``).
What the cache can cost is order: work that arrived meanwhile with a higher
priority waits until the kept heads (at most a worker's concurrency plus a
few) are claimed or :data:`MAX_AGE` passes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_AGE", "CandidateCache"]

#: Seconds a kept head stays claimable without a new index read.
MAX_AGE = 0.25


class CandidateCache:
    """Per lane: unclaimed heads of the last index read, oldest read first."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[list[str], Mapping[str, Any], float]] = {}

    def take(self, lane: str, want: int) -> tuple[list[str], Mapping[str, Any]] | None:
        """``want`` kept heads of ``lane`` with their pre-read, or None when
        there are not that many fresh ones (then nothing is kept any more)."""
        kept = self._kept.pop(lane, None)
        if kept is None:
            return None
        eids, pre_read, read_at = kept
        if len(eids) < want or time.monotonic() - read_at > MAX_AGE:
            return None
        if len(eids) > want:
            self._kept[lane] = (eids[want:], pre_read, read_at)
        return eids[:want], pre_read

    def keep(self, lane: str, eids: list[str], pre_read: Mapping[str, Any]) -> None:
        """Keep ``eids`` (read just now, with their pre-read) for later rounds."""
        eids = [eid for eid in eids if eid in pre_read]
        if eids:
            self._kept[lane] = (eids, {eid: pre_read[eid] for eid in eids}, time.monotonic())
        else:
            self._kept.pop(lane, None)

    def drop(self, lane: str) -> None:
        """Forget ``lane``'s kept heads (one was refused: the rest may be too)."""
        self._kept.pop(lane, None)

    def __len__(self) -> int:
        return sum(len(eids) for eids, _, _ in self._kept.values())
