"""``ctx.report_usage``: usage reports of a running attempt against the
budgets attached to its execution (spec 04 §6.3, docs/budgets.md).

Each report goes to every attached budget in one pipeline
(``ff_report_usage_and_check`` on each budget's own partition). Each carries
a dedup key built from the budget id, the execution, the attempt and the
report's sequence number within the attempt, with the budget's hash tag: a
report resent after a transport error — or re-run by a task replaying after a
suspension, which restarts the sequence — is counted once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.errors import BudgetExceeded, TransportError
from flowfabric_worker.protocol.budgets import BudgetReply, ReportUsageAndCheck
from flowfabric_worker.protocol.partitions import budget_tag
from flowfabric_worker.tasks.budgets import BudgetResult, UsageReport, attached_budgets

__all__ = ["USAGE_EXTENSION", "UsageReporter"]

USAGE_EXTENSION = "usage"
#: Resends of a report whose reply was lost (safe: every call carries a dedup key).
_SENDS = 5


class UsageReporter:
    """The usage reports of one attempt."""

    def __init__(self, backend: Backend, lease: Claimed, log: logging.LoggerAdapter[Any]) -> None:
        self.backend = backend
        self.lease = lease
        self.log = log
        self.budgets = attached_budgets(lease.budget_ids)
        self._seq = 0

    def _dedup_id(self, budget_id: str, seq: int) -> str:
        # Includes the budget id: budgets sharing a partition share the dedup
        # key space, and one report must count once against *each* of them.
        return f"{budget_id}:{self.lease.execution_id}:{self.lease.attempt_index}:{seq}"

    async def report(self, deltas: Mapping[str, int]) -> UsageReport:
        """Report ``deltas`` (validated, name-sorted) to every attached budget."""
        seq = self._seq
        self._seq += 1
        if not self.budgets:
            return UsageReport(usage=dict(deltas))
        now = int(time.time() * 1000)
        calls = [
            ReportUsageAndCheck(tag=budget_tag(bid, self.backend.partitions), budget_id=bid,
                                deltas=dict(deltas), now_ms=now,
                                dedup_id=self._dedup_id(bid, seq))
            for bid in self.budgets
        ]
        replies = await self._send(calls)
        results: list[BudgetResult] = []
        hard: tuple[str, BudgetReply] | None = None
        for bid, reply in zip(self.budgets, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            assert isinstance(reply, BudgetReply)
            if reply.status == "HARD_BREACH":
                hard = hard or (bid, reply)
                continue
            results.append(BudgetResult(budget_id=bid, status=reply.status,
                                        dimension=reply.dimension, value=reply.value,
                                        limit=reply.limit))
            if reply.status == "SOFT_BREACH":
                self.log.warning("budget %s: soft limit of %s passed (%d > %d)",
                                 bid, reply.dimension, reply.value, reply.limit)
        if hard is not None:
            bid, reply = hard
            requested = deltas.get(reply.dimension, 0)
            raise BudgetExceeded(
                f"budget {bid}: {reply.dimension} {reply.value} + {requested} would pass "
                f"the hard limit {reply.limit}",
                budget_id=bid, dimension=reply.dimension, used=reply.value,
                limit=reply.limit, requested=requested)
        return UsageReport(usage=dict(deltas), results=tuple(results))

    async def _send(self, calls: Sequence[ReportUsageAndCheck]) -> list[Any]:
        delay = 0.05
        for attempt in range(_SENDS):
            try:
                return await self.backend.call_many(list(calls))
            except TransportError:
                if attempt == _SENDS - 1:
                    raise
                await anyio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")
