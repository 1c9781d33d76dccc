"""When a write is acknowledged: the ``durability`` setting (issue 12,
hole 9; docs/operations.md, "Durability").

Redis answers a write once it is applied in memory. With ``appendfsync
everysec`` the AOF reaches the disk up to a second later, so a machine crash
loses the last second of acknowledged submissions and completions (the
completed ones then run again). ``strict`` closes that window for the calls
that matter — submissions and terminal calls — by sending ``WAITAOF 1 0``
after them on the same connection: the reply comes once the local AOF has
fsynced everything that connection wrote. ``replicas:N`` sends ``WAIT N``
instead: the reply comes once N replicas received it (a failover then keeps
it; a crash of the whole machine set does not).

Both commands block their connection until the disk or the replicas answer,
so they never go over the shared pipelined connection (:mod:`.multiplex`:
every caller's commands would queue behind the wait); the durable call and
its wait take a pooled connection of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from flowfabric_worker.errors import (
    ConfigurationError,
    DurabilityNotConfirmed,
    DurabilityUnavailable,
)
from flowfabric_worker.settings import DURABILITY_PATTERN

__all__ = ["FAST", "Durability"]

#: How long a durable call waits for its confirmation. With ``everysec`` an
#: fsync comes within about a second; five leave room for a slow disk before
#: the call reports :class:`DurabilityNotConfirmed` (applied, not confirmed).
DEFAULT_TIMEOUT_MS = 5_000


@dataclass(frozen=True)
class Durability:
    """A parsed ``durability`` value."""

    mode: Literal["fast", "strict", "replicas"] = "fast"
    #: Replica acknowledgements ``replicas:N`` waits for.
    replicas: int = 0
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    @classmethod
    def parse(cls, value: str | Durability) -> Durability:
        if isinstance(value, Durability):
            return value
        if not re.match(DURABILITY_PATTERN, value):
            raise ConfigurationError(
                f"durability {value!r}: use 'fast', 'strict' or 'replicas:N' (N >= 1)")
        if value.startswith("replicas:"):
            return cls("replicas", int(value.split(":", 1)[1]))
        return cls("strict") if value == "strict" else cls()

    def __str__(self) -> str:
        return f"replicas:{self.replicas}" if self.mode == "replicas" else self.mode

    @property
    def waits(self) -> bool:
        """Whether durable calls are followed by a wait command."""
        return self.mode != "fast"

    def wait_command(self) -> list[Any]:
        if self.mode == "strict":
            return ["WAITAOF", 1, 0, self.timeout_ms]
        return ["WAIT", self.replicas, self.timeout_ms]

    def confirm(self, reply: Any, what: str) -> None:
        """Raise :class:`DurabilityNotConfirmed` unless ``reply`` (to
        :meth:`wait_command`) confirms the write."""
        if isinstance(reply, ResponseError):
            raise DurabilityNotConfirmed(f"{what}: applied, but {self} could not be "
                                         f"confirmed: {reply}")
        if self.mode == "strict":
            local = int(reply[0]) if isinstance(reply, list | tuple) and reply else 0
            if local < 1:
                raise DurabilityNotConfirmed(
                    f"{what}: applied, but the AOF did not confirm the fsync within "
                    f"{self.timeout_ms} ms")
        elif int(reply) < self.replicas:
            raise DurabilityNotConfirmed(
                f"{what}: applied, but only {int(reply)} of {self.replicas} replicas "
                f"confirmed it within {self.timeout_ms} ms")

    async def check(self, redis: aioredis.Redis, url: str) -> None:
        """Refuse, with :class:`DurabilityUnavailable`, a server that cannot
        give this guarantee (at connect time, not at the first submission)."""
        if self.mode == "strict":
            await self._check_aof(redis, url)
        elif self.mode == "replicas":
            await self._check_replicas(redis, url)

    async def _check_aof(self, redis: aioredis.Redis, url: str) -> None:
        try:
            # No write yet on this connection: answers at once where it can.
            # (execute_command is untyped in redis-py)
            reply = await cast(Any, redis).execute_command("WAITAOF", 1, 0, self.timeout_ms)
        except ResponseError as exc:
            text = str(exc)
            if "unknown command" in text.lower():
                version = await _version(redis)
                raise DurabilityUnavailable(
                    f"durability 'strict' needs WAITAOF (Redis or Valkey >= 7.2); the "
                    f"server at {_host(url)} is {version}: upgrade it, or use 'fast' "
                    f"or 'replicas:N'") from exc
            if "appendonly" in text.lower():
                raise DurabilityUnavailable(
                    f"durability 'strict' needs the AOF: the server at {_host(url)} runs "
                    f"with appendonly no (set appendonly yes, appendfsync everysec or "
                    f"always)") from exc
            raise DurabilityUnavailable(
                f"durability 'strict' refused by the server at {_host(url)}: {text}"
            ) from exc
        local = int(reply[0]) if isinstance(reply, list | tuple) and reply else 0
        if local < 1:
            raise DurabilityUnavailable(
                f"durability 'strict': the server at {_host(url)} does not confirm AOF "
                f"fsyncs (WAITAOF answered {reply!r}; is appendonly yes?)")

    async def _check_replicas(self, redis: aioredis.Redis, url: str) -> None:
        info = await redis.info("replication")
        role = str(info.get("role", ""))
        connected = int(info.get("connected_slaves", 0) or 0)
        if role != "master":
            raise DurabilityUnavailable(
                f"durability {self}: the server at {_host(url)} is a {role}, not a primary")
        if connected < self.replicas:
            raise DurabilityUnavailable(
                f"durability {self}: the server at {_host(url)} has {connected} replica(s) "
                f"connected, fewer than the {self.replicas} to wait for")


FAST = Durability()


async def _version(redis: aioredis.Redis) -> str:
    try:
        info = await redis.info("server")
    except Exception:
        return "an older version"
    name = "Valkey" if info.get("valkey_version") else "Redis"
    return f"{name} {info.get('valkey_version') or info.get('redis_version', '?')}"


def _host(url: str) -> str:
    """The URL's host and port, never its password."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1].split("/", 1)[0]
