"""The budget and quota methods of
:class:`~flowfabric_worker.client.client.Client` (which inherits them):
creating budgets and quota policies and handing out handles on them
(docs/budgets.md). The calls are built by ``tasks.budgets``."""

from __future__ import annotations

import time
from collections.abc import Mapping

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.tasks.budgets import (
    Budget,
    Limit,
    Quota,
    build_create_budget,
    build_create_quota,
)

__all__ = ["BudgetMethods"]


class BudgetMethods:
    """``Client.create_budget``, ``budget``, ``create_quota``, ``quota``."""

    backend: Backend
    namespace: str

    async def create_budget(
        self,
        dimensions: Mapping[str, Limit],
        *,
        budget_id: str | None = None,
        reset_every: float | None = None,
        scope: tuple[str, str] | None = None,
        on_hard_limit: str = "fail",
        on_soft_limit: str = "warn",
        enforcement_mode: str = "strict",
    ) -> Budget:
        """Create a budget (``ff_create_budget``) and return its handle.

        ``dimensions`` maps a name (``"tokens"``) to its :class:`Limit`; at
        most 64, sent sorted by name. ``reset_every`` (seconds) zeroes usage
        periodically (the ``budget_reset`` scanner). ``scope`` is
        ``("execution" | "flow" | "lane" | "tenant", id)``, stored only
        (default: the client's namespace as tenant). ``on_hard_limit`` /
        ``on_soft_limit`` are stored for peers; this worker always fails on a
        hard breach and warns on a soft one. Creating with an existing
        ``budget_id`` is a no-op that keeps the stored limits. Example::

            budget = await client.create_budget({"tokens": Limit(hard=10_000, soft=8_000)})
            run = await summarize.submit(client, doc, budgets=[budget])
        """
        now = int(time.time() * 1000)
        call = build_create_budget(
            dimensions, budget_id=budget_id, reset_every=reset_every,
            scope=scope if scope is not None else ("tenant", self.namespace),
            on_hard_limit=on_hard_limit, on_soft_limit=on_soft_limit,
            enforcement_mode=enforcement_mode, now_ms=now, backend=self.backend)
        await self.backend.create_budget(call)
        return Budget(self.backend, call.budget_id)

    def budget(self, budget_id: str) -> Budget:
        """A handle on an existing budget (the id is validated, not looked up)."""
        return Budget(self.backend, budget_id)

    async def create_quota(
        self,
        *,
        rate: int | None = None,
        per: float = 60,
        concurrency: int | None = None,
        jitter: float = 0.0,
        quota_id: str | None = None,
    ) -> Quota:
        """Create a quota policy (``ff_create_quota_policy``): at most ``rate``
        claims per ``per`` seconds (sliding window) and at most
        ``concurrency`` executions running at once. ``jitter`` (seconds) is
        the random spread 0.15 adds to rate-limit retry hints. An execution
        over the quota waits in ``blocked:quota`` until the ``unblock``
        scanner finds room. Example::

            quota = await client.create_quota(rate=10, per=60, concurrency=2)
            await call_api.submit(client, url, quota=quota)
        """
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or jitter < 0:
            raise InvalidInput("jitter must be a non-negative number of seconds")
        now = int(time.time() * 1000)
        call = build_create_quota(quota_id=quota_id, rate=rate, per=per,
                                  concurrency=concurrency, now_ms=now, backend=self.backend)
        res = await self.backend.create_quota_policy(call)
        if res.created and jitter:
            await self.backend.set_quota_jitter(call.quota_id, round(jitter * 1000))
        return Quota(self.backend, call.quota_id)

    def quota(self, quota_id: str) -> Quota:
        """A handle on an existing quota policy (the id is validated)."""
        return Quota(self.backend, quota_id)
