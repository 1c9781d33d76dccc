"""Background lease renewal (spec 05 §3).

One :class:`Renewer` per held lease ticks every ``ttl / 3``, skipping the
first tick. Transport errors are retried until the last confirmed expiry has
passed; the first typed "lease gone" refusal (or local expiry) marks the
context's ``lease_lost`` and cancels the task's scope.
"""

from __future__ import annotations

import logging
import time

import anyio

from ..errors import ContractError, TransportError
from .context import TaskContext
from .engine import Claimed, Engine, is_lease_lost

log = logging.getLogger("flowfabric_worker.renewer")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Renewer:
    """Keeps one lease alive while its task runs."""

    def __init__(
        self, engine: Engine, lease: Claimed, ctx: TaskContext,
        scope: anyio.CancelScope, lease_ttl_ms: int,
    ) -> None:
        self.engine = engine
        self.lease = lease
        self.ctx = ctx
        self.scope = scope
        self.lease_ttl_ms = lease_ttl_ms
        self.expires_at_ms = lease.lease_expires_at_ms
        self.consecutive_failures = 0
        self.renewals = 0

    @property
    def healthy(self) -> bool:
        """0.15 polling semantics: healthy until 3 consecutive failures."""
        return self.consecutive_failures < 3 and not self.ctx.lease_lost.is_set()

    def _lose(self, reason: str) -> None:
        log.warning("lease lost for %s: %s", self.lease.execution_id, reason)
        self.ctx.mark_lease_lost(reason)
        self.scope.cancel()

    async def run(self) -> None:
        """Tick until cancelled by the owner or until the lease is lost."""
        interval = max(self.lease_ttl_ms / 3000.0, 0.01)
        while True:
            await anyio.sleep(interval)
            if _now_ms() >= self.expires_at_ms:
                self._lose("lease expired locally without a successful renewal")
                return
            try:
                # The guard orders renewals with a suspend (which releases the
                # lease): a renewal after it would report a spurious loss.
                async with self.ctx.lease_guard:
                    if self.ctx.lease_released:
                        return
                    self.expires_at_ms = await self.engine.renew(self.lease, self.lease_ttl_ms)
            except (TransportError, OSError) as exc:
                self.consecutive_failures += 1
                log.info("renewal of %s failed (will retry): %s", self.lease.execution_id, exc)
                continue
            except ContractError as exc:
                self.consecutive_failures += 1
                if is_lease_lost(exc):
                    self._lose(exc.code)
                    return
                log.warning("unexpected renewal refusal for %s: %s",
                            self.lease.execution_id, exc)
                continue
            self.consecutive_failures = 0
            self.renewals += 1
