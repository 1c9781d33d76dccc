"""Classification of Redis client failures and the bounded retry loop.

A failure *before* the command left the client (cannot connect, server still
loading, cluster not ready) is always safe to retry. A failure *after* sending
(reply lost, read timeout) is only retried for calls the contract makes
idempotent (``FCall.IDEMPOTENT``), because the command may have run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import BusyLoadingError, InvalidResponse, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowfabric_worker.errors import TransportError

__all__ = ["RetryPolicy", "classify", "with_retries"]

T = TypeVar("T")

# Response-error prefixes meaning "not executed, try again later".
_TRANSIENT_REPLIES = ("TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN", "READONLY")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: ``attempts`` tries in total."""

    attempts: int = 4
    base_delay: float = 0.05
    max_delay: float = 1.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * (2**attempt)))


def classify(exc: BaseException) -> tuple[bool, bool] | None:
    """``(transient, sent)`` for a transport-level failure, None for anything else."""
    if isinstance(exc, BusyLoadingError):
        return True, False
    if isinstance(exc, InvalidResponse):
        # Protocol desync / not a Redis server: retrying cannot help.
        return False, True
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        text = str(exc).lower()
        # redis-py words connect-phase failures "Error ... connecting to ..." /
        # "Timeout connecting to server": nothing was written to the socket.
        sent = "connecting to" not in text and "connection refused" not in text
        return True, sent
    if isinstance(exc, ResponseError):
        if str(exc).upper().startswith(_TRANSIENT_REPLIES):
            return True, False
    return None


async def with_retries(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    url: str,
    idempotent: bool,
    policy: RetryPolicy,
) -> T:
    """Run ``op``, retrying transport failures the contract makes safe, and turn
    the final transport failure into :class:`TransportError`."""
    attempt = 0
    while True:
        try:
            return await op()
        except (RedisConnectionError, RedisTimeoutError, ResponseError, InvalidResponse) as exc:
            kind = classify(exc)
            if kind is None:
                raise
            transient, sent = kind
            safe = transient and (not sent or idempotent)
            attempt += 1
            if not safe or attempt >= policy.attempts:
                raise TransportError(
                    f"{what} on {_redact(url)}: {exc}", sent=sent
                ) from exc
            await asyncio.sleep(policy.delay(attempt - 1))


def _redact(url: str) -> str:
    """The URL without a password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in creds else user}@{host}"
