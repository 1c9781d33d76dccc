"""``ffw_claim_candidates`` (our ``ffw`` library, read-only): a partition's
eligible heads of one lane, each with the exec_core fields the claim needs,
its payload and its tags, in one call.

The claim path used to read candidates (``ZRANGE``) and then pre-read each
one (``HMGET`` core, ``GET`` payload, ``HGETALL`` tags) in a second round
trip; this is both in one (issue 18). It writes nothing, so it is safe next
to a FlowFabric deployment's own library (attached mode).
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.function import FCall, as_str
from flowfabric_worker.protocol.keys import PartitionKeys
from flowfabric_worker.protocol.partitions import tag

__all__ = ["MAX_CANDIDATES", "CandidateRead", "ClaimCandidates"]

#: Most heads one call returns (the Lua refuses more).
MAX_CANDIDATES = 1000


class CandidateRead(msgspec.Struct, frozen=True):
    """One head of the index as read by the call. ``core`` maps each asked
    field to its value ("" when absent, every value "" when the record is
    gone); ``payload`` and ``tags`` are read only for a runnable, eligible_now
    record (empty otherwise)."""

    eid: str
    core: dict[str, str]
    payload: bytes
    tags: dict[str, str]


class ClaimCandidates(FCall[list[CandidateRead]], frozen=True, kw_only=True):
    """Up to ``limit`` heads of ``lane``'s eligible index on ``partition``,
    in index order (priority, then age), with their pre-read."""

    NAME: ClassVar[str] = "ffw_claim_candidates"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    lane: str
    partition: int
    limit: int
    #: exec_core fields to read; must include lifecycle_phase and eligibility_state.
    fields: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_CANDIDATES:
            raise InvalidInput(f"limit must be between 1 and {MAX_CANDIDATES}")
        if not {"lifecycle_phase", "eligibility_state"} <= set(self.fields):
            raise InvalidInput("fields must include lifecycle_phase and eligibility_state")

    def keys(self) -> list[str]:
        return [PartitionKeys(tag("fp", self.partition)).lane_eligible(self.lane)]

    def argv(self) -> list[str]:
        return [str(self.limit), *self.fields]

    def decode(self, reply: Any) -> list[CandidateRead]:
        self.envelope(reply[:3] if isinstance(reply, list | tuple) else reply)
        n, pos, width = int(as_str(reply[2])), 3, len(self.fields)
        out: list[CandidateRead] = []
        for _ in range(n):
            eid = as_str(reply[pos])
            core = {f: as_str(v) for f, v in zip(self.fields, reply[pos + 1: pos + 1 + width],
                                                 strict=True)}
            pos += 1 + width
            raw = reply[pos]
            payload = raw if isinstance(raw, bytes) else as_str(raw).encode()
            count = int(as_str(reply[pos + 1]))
            pairs = reply[pos + 2: pos + 2 + 2 * count]
            pos += 2 + 2 * count
            tags = {as_str(a): as_str(b) for a, b in zip(pairs[::2], pairs[1::2], strict=True)}
            out.append(CandidateRead(eid, core, payload, tags))
        return out
