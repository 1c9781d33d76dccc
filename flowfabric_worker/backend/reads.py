"""Typed plain reads of stored records (no library function involved).

Mixed into :class:`~flowfabric_worker.backend.backend.Backend`; everything goes
through ``self.reads`` (bytes replies; retried, typed transport failures).
"""

from __future__ import annotations

import json
from typing import Any

from flowfabric_worker.protocol.ids import ExecutionId, execution_tag
from flowfabric_worker.protocol.journal import JournalEntry, entries_from_hash
from flowfabric_worker.protocol.keys import ExecKeys, PartitionKeys
from flowfabric_worker.protocol.records import (
    Attempt,
    ClaimGrant,
    Condition,
    ExecCore,
    LeaseCurrent,
    SignalRecord,
    StreamMeta,
    Suspension,
    Waitpoint,
    decode_hash,
)
from flowfabric_worker.protocol.tokens import Token

__all__ = ["Reads"]


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


class Reads:
    """Plain typed reads the upper layers need."""

    redis: Any
    #: ``self.redis`` for reads, retried and with typed failures (read_client.py).
    reads: Any

    async def _hash(self, key: str) -> dict[bytes, bytes] | None:
        raw: dict[bytes, bytes] = await self.reads.hgetall(key)
        return raw or None

    async def get_exec_core(self, eid: ExecutionId) -> ExecCore | None:
        raw = await self._hash(ExecKeys(eid).core)
        return None if raw is None else ExecCore.from_hash(raw)

    async def get_exec_core_raw(self, eid: ExecutionId) -> dict[str, str] | None:
        raw = await self._hash(ExecKeys(eid).core)
        return None if raw is None else decode_hash(raw)

    async def get_payload(self, eid: ExecutionId) -> bytes | None:
        value: bytes | None = await self.reads.get(ExecKeys(eid).payload)
        return value

    async def get_result(self, eid: ExecutionId) -> bytes | None:
        value: bytes | None = await self.reads.get(ExecKeys(eid).result)
        return value

    async def get_policy(self, eid: ExecutionId) -> bytes | None:
        """The ``ExecutionPolicy`` JSON exactly as submitted (None when absent)."""
        value: bytes | None = await self.reads.get(ExecKeys(eid).policy)
        return value

    async def get_tags(self, eid: ExecutionId) -> dict[str, str]:
        return decode_hash(await self.reads.hgetall(ExecKeys(eid).tags))

    async def get_attempt(self, eid: ExecutionId, index: int) -> Attempt | None:
        raw = await self._hash(ExecKeys(eid).attempt(index))
        return None if raw is None else Attempt.from_hash(raw)

    async def attempt_indexes(self, eid: ExecutionId) -> list[int]:
        members = await self.reads.zrange(ExecKeys(eid).attempts, 0, -1)
        return sorted(int(_str(m)) for m in members)

    async def list_attempts(self, eid: ExecutionId) -> list[Attempt]:
        """Every attempt of the execution, in index order."""
        keys = ExecKeys(eid)
        indexes = await self.attempt_indexes(eid)
        if not indexes:
            return []
        pipe = self.reads.pipeline()
        for i in indexes:
            pipe.hgetall(keys.attempt(i))
        raws = await pipe.execute()
        return [Attempt.from_hash(r) for r in raws if r]

    async def get_attempt_policy(self, eid: ExecutionId, index: int) -> dict[str, str]:
        return decode_hash(await self.reads.hgetall(ExecKeys(eid).attempt_policy(index)))

    async def get_lease(self, eid: ExecutionId) -> LeaseCurrent | None:
        raw = await self._hash(ExecKeys(eid).lease_current)
        return None if raw is None else LeaseCurrent.from_hash(raw)

    async def get_claim_grant(self, eid: ExecutionId) -> ClaimGrant | None:
        raw = await self._hash(ExecKeys(eid).claim_grant)
        return None if raw is None else ClaimGrant.from_hash(raw)

    async def journal_and_suspension(
        self, eid: ExecutionId
    ) -> tuple[tuple[JournalEntry, ...], Suspension | None]:
        """The step journal and the suspension record in one round trip (what
        a run reads before its first journaled call)."""
        k = ExecKeys(eid)
        pipe = self.reads.pipeline()
        pipe.hgetall(k.journal)
        pipe.hgetall(k.suspension_current)
        journal, suspension = await pipe.execute()
        return (entries_from_hash(journal or {}),
                Suspension.from_hash(suspension) if suspension else None)

    async def get_suspension(self, eid: ExecutionId) -> Suspension | None:
        raw = await self._hash(ExecKeys(eid).suspension_current)
        return None if raw is None else Suspension.from_hash(raw)

    async def get_waitpoint(self, tag: str, waitpoint_id: str) -> Waitpoint | None:
        raw = await self._hash(PartitionKeys(tag).waitpoint(waitpoint_id))
        return None if raw is None else Waitpoint.from_hash(raw)

    async def get_condition(self, tag: str, waitpoint_id: str) -> Condition | None:
        raw = await self._hash(PartitionKeys(tag).waitpoint_condition(waitpoint_id))
        return None if raw is None else Condition.from_hash(raw)

    async def get_signal(self, tag: str, signal_id: str) -> SignalRecord | None:
        raw = await self._hash(PartitionKeys(tag).signal(signal_id))
        return None if raw is None else SignalRecord.from_hash(raw)

    async def get_signal_payload(self, tag: str, signal_id: str) -> bytes | None:
        value: bytes | None = await self.reads.get(PartitionKeys(tag).signal_payload(signal_id))
        return value

    async def satisfier_signal_ids(
        self, tag: str, waitpoint_id: str, suspension: Suspension | None = None
    ) -> list[str]:
        """Ids of the signals that satisfied a waitpoint's condition (spec 03
        §7): a composite suspension's ``all_satisfier_signals``, otherwise the
        satisfied matchers of the waitpoint's condition, in matcher order."""
        if suspension is not None and suspension.all_satisfier_signals:
            try:
                ids = json.loads(suspension.all_satisfier_signals)
            except ValueError:
                ids = []
            if isinstance(ids, list) and ids:
                return [str(i) for i in ids]
        cond = decode_hash(
            await self.reads.hgetall(PartitionKeys(tag).waitpoint_condition(waitpoint_id)))
        out = []
        for j in range(int(cond.get("total_matchers") or 0)):
            sid = cond.get(f"matcher:{j}:signal_id", "")
            if cond.get(f"matcher:{j}:satisfied") == "1" and sid:
                out.append(sid)
        return out

    async def signals_with_payloads(
        self, tag: str, signal_ids: list[str]
    ) -> list[tuple[SignalRecord, bytes | None]]:
        """Signal records and raw payloads in one pipeline; ids whose record
        is gone are skipped (spec 03 §7 step 3)."""
        if not signal_ids:
            return []
        pk = PartitionKeys(tag)
        pipe = self.reads.pipeline()
        for sid in signal_ids:
            pipe.hgetall(pk.signal(sid))
            pipe.get(pk.signal_payload(sid))
        raw = await pipe.execute()
        out = []
        for i in range(len(signal_ids)):
            record, payload = raw[2 * i], raw[2 * i + 1]
            if record:
                out.append((SignalRecord.from_hash(record), payload))
        return out

    async def waitpoint_signal_entries(self, tag: str, waitpoint_id: str
                                       ) -> list[tuple[str, str]]:
        """``(signal_id, signal_name)`` of every signal recorded on a
        waitpoint (its ``wp_signals`` stream, oldest first)."""
        rows = await self.reads.xrange(PartitionKeys(tag).waitpoint_signals(waitpoint_id))
        out = []
        for _id, fields in rows:
            f = {_str(k): _str(v) for k, v in fields.items()}
            if f.get("signal_id"):
                out.append((f["signal_id"], f.get("signal_name", "")))
        return out

    async def hmac_keystore_ready(self, tag: str) -> bool:
        """Whether the partition's waitpoint keystore has a current kid."""
        return bool(await self.reads.hget(PartitionKeys(tag).hmac_keystore, "current_kid"))

    async def waitpoint_token(self, tag: str, waitpoint_id: str) -> Token:
        """The stored token of a waitpoint (empty when unknown); redacted when printed."""
        raw = await self.reads.hget(PartitionKeys(tag).waitpoint(waitpoint_id), "waitpoint_token")
        return Token(_str(raw) if raw else "")

    async def get_stream_meta(self, eid: ExecutionId, index: int) -> StreamMeta | None:
        raw = await self._hash(ExecKeys(eid).stream_meta(index))
        return None if raw is None else StreamMeta.from_hash(raw)

    async def get_keystores(self, tags: list[str]) -> list[dict[str, str]]:
        """The raw HMAC keystore hash of each partition tag (``{}`` when absent),
        in one pipeline. The values include secrets: keep them out of logs."""
        if not tags:
            return []
        pipe = self.reads.pipeline()
        for t in tags:
            pipe.hgetall(PartitionKeys(t).hmac_keystore)
        return [decode_hash(raw) for raw in await pipe.execute()]

    async def get_waitpoints(self, tag: str, waitpoint_ids: list[str]) -> list[Waitpoint | None]:
        """Several waitpoint records of one partition in one pipeline."""
        if not waitpoint_ids:
            return []
        pipe = self.reads.pipeline()
        for wp in waitpoint_ids:
            pipe.hgetall(PartitionKeys(tag).waitpoint(wp))
        return [Waitpoint.from_hash(raw) if raw else None for raw in await pipe.execute()]

    async def execution_waitpoints(self, eid: ExecutionId) -> list[str]:
        return sorted(_str(m) for m in await self.reads.smembers(ExecKeys(eid).waitpoints))

    async def partition_members(
        self,
        key: str,
        min_score: float | str = "-inf",
        max_score: float | str = "+inf",
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[tuple[str, float]]:
        """Members of a per-partition zset (e.g. ``PartitionKeys(tag).lane_eligible(lane)``)
        with scores in ``[min_score, max_score]``, lowest score first."""
        if limit is None:
            rows = await self.reads.zrangebyscore(key, min_score, max_score, withscores=True)
        else:
            rows = await self.reads.zrangebyscore(
                key, min_score, max_score, start=offset, num=limit, withscores=True
            )
        return [(_str(m), float(s)) for m, s in rows]

    async def set_members(self, key: str) -> list[str]:
        return sorted(_str(m) for m in await self.reads.smembers(key))

    @staticmethod
    def tag_of(eid: ExecutionId) -> str:
        return execution_tag(eid)
