"""What the claim path reads before it claims: candidates and their pre-read.

A claim needs, per candidate, a few exec_core fields (is it still claimable,
which capabilities and budgets it needs, which attempt it starts or resumes)
plus the task context (payload, tags). :func:`candidate_reads` gets the
lane's candidates *with* that pre-read in one round trip (issue 18: it used
to take two, a ZRANGE per partition and then an HMGET + GET + HGETALL per
candidate); :func:`pre_read_many` is the separate read for candidates found
elsewhere (flow members live on their flow's partition).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.claim_candidates import (
    MAX_CANDIDATES,
    CandidateRead,
    ClaimCandidates,
)
from flowfabric_worker.protocol.keys import ExecKeys, PartitionKeys
from flowfabric_worker.protocol.partitions import tag

__all__ = ["PRE_READ", "any_present", "candidate_reads", "pre_read_many"]

#: Core fields the claim path pre-reads per candidate.
PRE_READ = ("lifecycle_phase", "eligibility_state", "required_capabilities",
            "execution_kind", "total_attempt_count", "current_attempt_index",
            "retry_count", "created_at", "attempt_state",
            "budget_ids", "quota_policy_id")


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def candidate_reads(backend: Backend, lane: str, partitions: list[int],
                          per_partition: int
                          ) -> tuple[list[list[str]], dict[str, CandidateRead]]:
    """Up to ``per_partition`` heads of ``lane``'s eligible index on each of
    ``partitions``; those of the first one (the lane's solo partition, where
    every non-flow execution lives) come pre-read by ``ffw_claim_candidates``.
    One round trip: the function call and the other partitions' ZRANGEs (a
    tenth of a function call each, and almost always empty) share the
    multiplexed connection's write."""
    # Capped: a concurrency past the cap gets fewer heads per round.
    first = ClaimCandidates(lane=lane, partition=partitions[0],
                            limit=min(per_partition, MAX_CANDIDATES), fields=PRE_READ)
    keys = [PartitionKeys(tag("fp", p)).lane_eligible(lane) for p in partitions[1:]]
    if keys:
        read, others = await asyncio.gather(backend.call(first),
                                            backend.all_members(keys, per_partition))
    else:
        read, others = await backend.call(first), []
    return [[c.eid for c in read], *others], {c.eid: c for c in read}


async def pre_read_many(backend: Backend, eids: Sequence[str]) -> list[CandidateRead]:
    """The pre-read of ``eids`` in one pipeline of plain reads."""
    reads: list[list[Any]] = []
    for eid in eids:
        k = ExecKeys(eid)
        reads += [["HMGET", k.core, *PRE_READ], ["GET", k.payload], ["HGETALL", k.tags]]
    raw = await backend.read_many(reads)
    out = []
    for i, eid in enumerate(eids):
        vals, payload, flat_tags = raw[3 * i: 3 * i + 3]
        out.append(CandidateRead(
            eid, {n: (_text(v) if v is not None else "") for n, v in zip(PRE_READ, vals,
                                                                        strict=True)},
            payload or b"",
            {_text(a): _text(b) for a, b in zip(flat_tags[::2], flat_tags[1::2], strict=True)}))
    return out


def _exists_all(keys: Sequence[str]) -> list[list[Any]]:
    return [["EXISTS", *keys]]


async def any_present(backend: Backend, keys: Sequence[str]) -> bool:
    """Whether any of ``keys`` exists, in one command (split per slot on a
    cluster). Redis deletes an emptied sorted set, so a missing index key is
    an empty index: what lets an idle worker ask "anything to claim in these
    partitions?" or "any lease there?" for one command instead of a read per
    partition (issue 18, idle cost)."""
    if not keys:
        return False
    (count,) = await backend.read_many(_exists_all(keys))
    return bool(int(count))
