"""``backend.reads``: the redis client for plain reads, made safe to retry.

Every command and pipeline sent through it is an idempotent read, so a
dropped connection is retried with the backend's bounded backoff (see
:mod:`.transport`) and a failure that persists surfaces as
:class:`~flowfabric_worker.errors.TransportError` — a typed error callers
can catch — rather than a raw redis-py exception. Writes must not go
through it: a write whose reply was lost would be sent again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ReadClient"]

#: ``(what, op, idempotent=...)``: the backend's retrying transport wrapper.
Transport = Callable[..., Awaitable[Any]]


class ReadClient:
    """Forwards ``await reads.<command>(...)`` to the redis client, retried."""

    def __init__(self, redis: Any, transport: Transport) -> None:
        self._redis = redis
        self._transport = transport

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._redis, name)

        async def read(*args: Any, **kwargs: Any) -> Any:
            return await self._transport(name, lambda: method(*args, **kwargs),
                                         idempotent=True)

        return read

    def pipeline(self) -> ReadPipeline:
        """A non-transactional pipeline of reads; ``execute()`` rebuilds and
        resends it whole on a retry (redis-py empties one that failed)."""
        return ReadPipeline(self._redis, self._transport)


class ReadPipeline:
    """Records read commands, then sends them in one round trip."""

    def __init__(self, redis: Any, transport: Transport) -> None:
        self._redis = redis
        self._transport = transport
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., ReadPipeline]:
        def record(*args: Any, **kwargs: Any) -> ReadPipeline:
            self._calls.append((name, args, kwargs))
            return self

        return record

    async def execute(self) -> list[Any]:
        calls = list(self._calls)

        async def once() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for name, args, kwargs in calls:
                getattr(pipe, name)(*args, **kwargs)
            replies: list[Any] = await pipe.execute()
            return replies

        result: list[Any] = await self._transport("pipeline", once, idempotent=True)
        return result
