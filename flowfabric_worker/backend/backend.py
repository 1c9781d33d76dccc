"""The async backend: one object per connection pool that runs library
functions (``await backend.call(fn)``), pipelines independent calls, and
offers the few plain reads the layers above need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import LibraryError, ScriptError, TransportError
from ..protocol.function import FCall
from ..protocol.keys import CONFIG_PARTITIONS
from ..protocol.partitions import PartitionConfig
from ._caller import Caller
from .connection import is_memory_url, open_redis
from .library import FFW, FLOWFABRIC, LibrarySpec, library_text
from .ops_flows import FlowOps
from .ops_journal import JournalOps
from .ops_lifecycle import LifecycleOps
from .ops_scan import ScanOps
from .ops_signals import SignalOps
from .ops_streams import StreamOps
from .reads import Reads

__all__ = ["Backend", "Mode", "execute"]

R = TypeVar("R")
Mode = Literal["standalone", "attached"]

_NOT_LOADED = "function not found"


async def execute(client: Any, *args: Any) -> Any:
    """``execute_command`` (untyped in redis-py) behind a typed signature."""
    return await client.execute_command(*args)


class Backend(LifecycleOps, SignalOps, StreamOps, FlowOps, JournalOps, Reads, ScanOps, Caller):
    """Runs library functions against one Redis (or ``memory://``) database."""

    def __init__(self, redis: aioredis.Redis, *, url: str, mode: Mode = "standalone") -> None:
        self.redis = redis
        self.url = url
        self.mode: Mode = mode
        self.partitions = PartitionConfig()

    @classmethod
    async def open(cls, url: str, *, mode: Mode = "standalone") -> Backend:
        """Connect, make sure the libraries are loaded, read the partition counts."""
        backend = cls(open_redis(url), url=url, mode=mode)
        try:
            await backend.ensure_libraries()
            backend.partitions = PartitionConfig.from_hash(
                await backend.redis.hgetall(CONFIG_PARTITIONS)
            )
        except BaseException:
            await backend.close()
            raise
        return backend

    @property
    def is_memory(self) -> bool:
        return is_memory_url(self.url)

    async def close(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- library loading ---------------------------------------------------

    async def _loaded_version(self, spec: LibrarySpec) -> str | None:
        try:
            reply = await execute(self.redis, "FCALL", spec.version_function, 0)
        except ResponseError as exc:
            if _NOT_LOADED in str(exc).lower():
                return None
            raise
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def ensure_library(self, spec: LibrarySpec) -> None:
        version = await self._loaded_version(spec)
        if version == spec.version:
            return
        if self.mode == "attached" and spec is FLOWFABRIC:
            if version is None:
                raise LibraryError(
                    "attached mode: no 'flowfabric' library is loaded on the server"
                )
            raise LibraryError(
                f"attached mode: the loaded 'flowfabric' library answers version {version}, "
                f"this SDK speaks {spec.version}"
            )
        await execute(self.redis, "FUNCTION", "LOAD", "REPLACE", library_text(spec))
        version = await self._loaded_version(spec)
        if version != spec.version:
            raise LibraryError(
                f"library {spec.name!r} reports version {version} after loading {spec.version}"
            )

    async def ensure_libraries(self) -> None:
        await self.ensure_library(FLOWFABRIC)
        await self.ensure_library(FFW)

    # --- calling functions ---------------------------------------------------

    @staticmethod
    def _command(fn: FCall[Any]) -> list[Any]:
        keys = list(fn.keys())
        return ["FCALL", fn.NAME, len(keys), *keys, *fn.argv()]

    async def call(self, fn: FCall[R]) -> R:
        """Run one library function and decode its reply."""
        command = self._command(fn)
        try:
            reply = await execute(self.redis, *command)
        except ResponseError as exc:
            if _NOT_LOADED in str(exc).lower():
                # Server restart or failover lost the library: load and retry once.
                await self.ensure_libraries()
                reply = await execute(self.redis, *command)
            else:
                raise ScriptError(f"{fn.NAME}: {exc}") from exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise TransportError(f"{fn.NAME}: {exc}", sent=True) from exc
        return fn.decode(reply)

    async def call_many(self, fns: Sequence[FCall[Any]]) -> list[Any]:
        """Run independent calls in one pipeline (no transaction). Each element of
        the result is the decoded value or the exception that call raised."""
        if not fns:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for fn in fns:
            pipe.execute_command(*self._command(fn))
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise TransportError(f"pipeline: {exc}", sent=True) from exc
        out: list[Any] = []
        for fn, reply in zip(fns, replies, strict=True):
            if isinstance(reply, ResponseError):
                out.append(ScriptError(f"{fn.NAME}: {reply}"))
                continue
            try:
                out.append(fn.decode(reply))
            except Exception as exc:  # a refusal is a value here, not a failure of the batch
                out.append(exc)
        return out
