"""The async backend: one object per connection pool that runs library
functions (``await backend.call(fn)``), pipelines independent calls, and
offers the few plain reads the layers above need.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from flowfabric_worker.backend._caller import Caller
from flowfabric_worker.backend.cluster import ClusterTopology, split_exists
from flowfabric_worker.backend.cluster_client import ClusterClient
from flowfabric_worker.backend.cluster_url import ClusterUrl, is_cluster_url
from flowfabric_worker.backend.connection import is_embedded, is_memory_url, open_redis
from flowfabric_worker.backend.durability import FAST, Durability
from flowfabric_worker.backend.embedded_mux import EmbeddedMultiplexer
from flowfabric_worker.backend.library import (
    BUNDLE_MARK,
    FFW,
    FLOWFABRIC,
    LibrarySpec,
    library_text,
)
from flowfabric_worker.backend.multiplex import Multiplexer
from flowfabric_worker.backend.ops_budgets import BudgetOps
from flowfabric_worker.backend.ops_flows import FlowOps
from flowfabric_worker.backend.ops_journal import JournalOps
from flowfabric_worker.backend.ops_lifecycle import LifecycleOps
from flowfabric_worker.backend.ops_scan import ScanOps
from flowfabric_worker.backend.ops_signals import SignalOps
from flowfabric_worker.backend.ops_streams import StreamOps
from flowfabric_worker.backend.read_client import ReadClient
from flowfabric_worker.backend.reads import Reads
from flowfabric_worker.backend.subscriptions import Subscriptions
from flowfabric_worker.backend.transport import RetryPolicy, with_retries
from flowfabric_worker.errors import (
    DurabilityUnavailable,
    LibraryError,
    ScriptError,
    TransportError,
)
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.keys import CONFIG_PARTITIONS
from flowfabric_worker.protocol.partitions import PartitionConfig

__all__ = ["Backend", "Mode", "execute"]

R = TypeVar("R")
Mode = Literal["standalone", "attached"]

_NOT_LOADED = "function not found"

#: On a cluster a failed primary is replaced by its replica within a few
#: seconds (cluster-node-timeout plus the election): retries of calls that
#: were not sent, and of idempotent ones, span about 7.5 s by default.
CLUSTER_RETRY = RetryPolicy(attempts=12, base_delay=0.05, max_delay=1.0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _sum(replies: Any) -> Any:
    """``EXISTS`` counts of one read split by slot; an error reply wins."""
    total = 0
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
        total += int(reply)
    return total


def _flat(pairs: dict[Any, Any]) -> list[Any]:
    return [x for kv in pairs.items() for x in kv]


async def execute(client: Any, *args: Any) -> Any:
    """``execute_command`` (untyped in redis-py) behind a typed signature."""
    return await client.execute_command(*args)


class Backend(LifecycleOps, SignalOps, StreamOps, FlowOps, BudgetOps, JournalOps, Reads, ScanOps,
              Subscriptions, Caller):
    """Runs library functions against one Redis (or ``memory://``) database.

    Transport failures are retried with bounded backoff when the contract makes
    it safe (always before sending; after sending only for idempotent calls);
    otherwise they surface as :class:`TransportError` carrying ``sent``.
    """

    def __init__(
        self,
        redis: aioredis.Redis | ClusterClient,
        *,
        url: str,
        mode: Mode = "standalone",
        retry: RetryPolicy | None = None,
        load_retry: RetryPolicy | None = None,
        multiplex: bool = True,
        durability: Durability = FAST,
    ) -> None:
        self.redis: Any = redis
        self.url = url
        #: On a cluster: the slot map and per-primary routing (cluster.py).
        self._cluster: ClusterTopology | None = None
        #: Non-blocking commands share one pipelined connection (see
        #: :mod:`.multiplex`); on memory:// (with the embedded fast paths)
        #: they run on one fake socket in the caller's turn (see
        #: :mod:`.embedded_mux`). A cluster has one per primary, inside its
        #: topology.
        self._mux: Multiplexer | EmbeddedMultiplexer | None = None
        if isinstance(redis, ClusterClient):
            self._cluster = redis.topology
            self._cluster.prepare_node = self._prepare_node
        elif multiplex and not is_memory_url(url):
            self._mux = Multiplexer(redis.connection_pool)
        elif multiplex and is_embedded(redis):
            self._mux = EmbeddedMultiplexer(redis.connection_pool)
        self.mode: Mode = mode
        #: What durable calls (:meth:`call_and_send` with ``durable=True``:
        #: submissions, terminal calls) wait for before they return.
        self.durability = durability
        self.partitions = PartitionConfig()
        self.retry = retry or (CLUSTER_RETRY if self._cluster is not None else RetryPolicy())
        #: ``redis`` for plain reads: retried, typed failures (read_client.py).
        self.reads = ReadClient(redis, self._transport)
        # spec 01 §9: six load attempts; 0.15 waits 0.5..7 s between them.
        self.load_retry = load_retry or RetryPolicy(attempts=6, base_delay=0.5, max_delay=7.0)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        mode: Mode = "standalone",
        force_reload: bool = False,
        connect_timeout: float = 5.0,
        request_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        load_retry: RetryPolicy | None = None,
        multiplex: bool = True,
        durability: str | Durability = "fast",
    ) -> Backend:
        """Connect, make sure the libraries are loaded, read the partition counts.

        ``force_reload`` always replaces our libraries (the development override
        of spec 01 §9; never applied to ``flowfabric`` in attached mode).
        ``connect_timeout`` bounds connection setup so a dead server fails fast;
        ``request_timeout`` (None = no limit) bounds each reply wait — leave it
        unset when the connection also serves blocking reads.
        ``multiplex=False`` sends every call through redis-py's pool instead
        of the shared pipelined connection (for comparison; slower).
        ``durability`` (``fast``, ``strict``, ``replicas:N``) is checked
        against the server here: one that cannot give it raises
        :class:`~flowfabric_worker.errors.DurabilityUnavailable`.
        """
        wanted = Durability.parse(durability)
        if wanted.waits and is_memory_url(url):
            # Refused before connecting: fakeredis has nothing to fsync.
            raise DurabilityUnavailable(
                f"durability {str(wanted)!r} is impossible on memory:// (an in-process "
                f"server without persistence): use 'fast', or a real server")
        redis: aioredis.Redis | ClusterClient
        if is_cluster_url(url):
            topology = ClusterTopology(ClusterUrl.parse(url), connect_timeout=connect_timeout,
                                       request_timeout=request_timeout, multiplex=multiplex)
            redis = ClusterClient(topology)
        else:
            redis = open_redis(
                url, socket_connect_timeout=connect_timeout, socket_timeout=request_timeout)
        backend = cls(
            redis,
            url=url,
            mode=mode,
            retry=retry,
            load_retry=load_retry,
            multiplex=multiplex,
            durability=wanted,
        )
        try:
            if backend._cluster is not None:
                await backend._transport("cluster topology", backend._cluster.start,
                                         idempotent=True)
            await backend.check_durability(wanted)
            await backend.ensure_libraries(force=force_reload)
            counts = await backend._transport(
                "read partition counts",
                lambda: backend.redis.hgetall(CONFIG_PARTITIONS),
                idempotent=True,
            )
            backend.partitions = PartitionConfig.from_hash(counts)
        except BaseException:
            await backend.close()
            raise
        return backend

    @property
    def is_memory(self) -> bool:
        return is_memory_url(self.url)

    @property
    def cluster(self) -> ClusterTopology | None:
        """The cluster's topology and routing (None on a single server)."""
        return self._cluster

    async def close(self) -> None:
        if self._cluster is not None:
            await self._cluster.aclose()
            return
        if self._mux is not None:
            await self._mux.aclose()
        await self.redis.aclose()

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _transport(self, what: str, op: Any, *, idempotent: bool) -> Any:
        return await with_retries(
            op, what=what, url=self.url, idempotent=idempotent, policy=self.retry
        )

    async def check_durability(self, durability: Durability) -> None:
        """Raise :class:`~flowfabric_worker.errors.DurabilityUnavailable`
        unless this server can confirm writes as ``durability`` asks."""
        if not durability.waits:
            return
        if self.is_memory:
            raise DurabilityUnavailable(
                f"durability {str(durability)!r} is impossible on memory://")
        if self._cluster is None:
            await self._transport("durability check",
                                  lambda: durability.check(self.redis, self.url),
                                  idempotent=True)
            return
        # Every primary: a write's WAIT runs on the primary that took it.
        for addr in self._cluster.primaries():
            node = self._cluster.node_client(addr)
            await self._transport(
                f"durability check on {addr}",
                lambda node=node, addr=addr: durability.check(node, f"{self.url} ({addr})"),
                idempotent=True)

    # --- library loading ---------------------------------------------------

    async def _loaded_version(self, spec: LibrarySpec, client: Any) -> str | None:
        try:
            reply = await self._transport(
                spec.version_function,
                lambda: execute(client, "FCALL", spec.version_function, 0),
                idempotent=True,
            )
        except ResponseError as exc:
            if _NOT_LOADED in str(exc).lower():
                return None
            raise LibraryError(f"{spec.version_function}: {exc}") from exc
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def _stale_build(self, spec: LibrarySpec, client: Any) -> bool:
        """True when the server holds ``spec`` as loaded by another build of
        this SDK (our bundler's marks, other text): replace it.

        The version alone is not enough in standalone mode: ``flowfabric``
        must keep answering 0.15's version, so an SDK upgrade that fixes its
        Lua (validation, trims) would otherwise never reach a server where an
        older build loaded the same version. A library someone else loaded
        (FlowFabric's own) has no such marks and is left alone, as before.
        One ``FUNCTION LIST`` at connect.
        """
        reply = await self._transport(
            f"FUNCTION LIST {spec.name}",
            lambda: execute(client, "FUNCTION", "LIST", "LIBRARYNAME", spec.name,
                            "WITHCODE"),
            idempotent=True,
        )
        for entry in reply or []:
            # A flat [name, value, ...] list, or a dict with newer redis-py.
            pairs = entry.items() if isinstance(entry, dict) else zip(
                entry[::2], entry[1::2], strict=False)
            fields = {_text(k): v for k, v in pairs}
            code = fields.get("library_code")
            if _text(fields.get("library_name")) != spec.name or code is None:
                continue
            text = _text(code)
            return text != library_text(spec) and BUNDLE_MARK in text
        return False

    async def _load(self, spec: LibrarySpec, client: Any) -> None:
        """``FUNCTION LOAD REPLACE`` with retries of transient failures; error
        replies (compile errors) are permanent."""
        text = library_text(spec)
        attempt = 0
        while True:
            try:
                await self._transport(
                    f"FUNCTION LOAD {spec.name}",
                    lambda: execute(client, "FUNCTION", "LOAD", "REPLACE", text),
                    idempotent=True,  # REPLACE of the same text is idempotent
                )
                return
            except ResponseError as exc:
                # Transient replies (READONLY, TRYAGAIN, LOADING...) arrive here as
                # TransportError; any other error reply (compile error, bad
                # registration) is permanent.
                raise LibraryError(f"loading library {spec.name!r} failed: {exc}") from exc
            except TransportError:
                attempt += 1
                if attempt >= self.load_retry.attempts:
                    raise
            await asyncio.sleep(self.load_retry.delay(attempt - 1))

    async def ensure_library(self, spec: LibrarySpec, *, force: bool = False,
                             client: Any = None, where: str = "the server") -> None:
        """Detect, load if absent or different, re-check (spec 01 §9). In attached
        mode ``flowfabric`` is only checked, never replaced. ``client``: one
        cluster node (default: ``self.redis``)."""
        client = self.redis if client is None else client
        attached = self.mode == "attached" and spec is FLOWFABRIC
        if not (force and not attached):
            version = await self._loaded_version(spec, client)
            if version == spec.version and (
                    attached or not await self._stale_build(spec, client)):
                return
            if attached:
                if version is None:
                    raise LibraryError(
                        f"attached mode: no 'flowfabric' library is loaded on {where}"
                    )
                raise LibraryError(
                    f"attached mode: the loaded 'flowfabric' library on {where} answers "
                    f"version {version}, this SDK speaks {spec.version}"
                )
        await self._load(spec, client)
        version = await self._loaded_version(spec, client)
        if version != spec.version:
            raise LibraryError(
                f"library {spec.name!r} on {where} reports version {version} after "
                f"loading {spec.version} (another process loaded a different version?)"
            )

    async def _prepare_node(self, client: Any, addr: str, *, force: bool = False) -> None:
        """Both libraries on one cluster primary (loaded or, attached, checked)."""
        where = f"the cluster primary {addr}"
        await self.ensure_library(FLOWFABRIC, force=force, client=client, where=where)
        await self.ensure_library(FFW, force=force, client=client, where=where)

    async def ensure_libraries(self, *, force: bool = False) -> None:
        """Both libraries on the server, or on every primary of a cluster (a
        primary that appears later is prepared before its first call)."""
        cluster = self._cluster
        if cluster is None:
            await self.ensure_library(FLOWFABRIC, force=force)
            await self.ensure_library(FFW, force=force)
            return
        await cluster.refresh()
        for addr in cluster.primaries():
            cluster.forget(addr)
            await self._prepare_node(cluster.node_client(addr), addr, force=force)
            cluster.mark_ready(addr)

    # --- calling functions ---------------------------------------------------

    @staticmethod
    def _command(fn: FCall[Any]) -> tuple[Any, ...]:
        # A tuple: what hiredis packs, so the multiplexer packs it uncopied.
        keys = fn.keys()
        return ("FCALL", fn.NAME, len(keys), *keys, *fn.argv())

    @staticmethod
    def fcall_command(fn: FCall[Any]) -> tuple[Any, ...]:
        """The raw ``FCALL`` command of ``fn``, to ride along in
        :meth:`call_and_send` after another call (its reply is ignored)."""
        return Backend._command(fn)

    async def call(self, fn: FCall[R]) -> R:
        """Run one library function and decode its reply."""
        command = self._command(fn)
        mux = self._mux
        cluster = self._cluster

        async def once() -> Any:
            if cluster is not None:
                (reply,) = await cluster.execute((command,))
                if isinstance(reply, ResponseError):
                    raise reply
                return reply
            if mux is not None and mux.usable():
                (reply,) = await mux.execute((command,))
                if isinstance(reply, ResponseError):
                    raise reply
                return reply
            return await execute(self.redis, *command)

        try:
            reply = await self._transport(fn.NAME, once, idempotent=fn.IDEMPOTENT)
        except ResponseError as exc:
            if _NOT_LOADED not in str(exc).lower():
                raise ScriptError(f"{fn.NAME}: {exc}") from exc
            # Server restart, failover or FUNCTION FLUSH lost the library: the call
            # did not run, so load and send it again.
            await self.ensure_libraries()
            try:
                reply = await self._transport(fn.NAME, once, idempotent=fn.IDEMPOTENT)
            except ResponseError as again:
                raise ScriptError(f"{fn.NAME}: {again}") from again
        return fn.decode(reply)

    async def call_many(self, fns: Sequence[FCall[Any]]) -> list[Any]:
        """Run independent calls in one pipeline (no transaction). Each element of
        the result is the decoded value or the exception that call raised.

        A lost pipeline is resent only when every call in it is idempotent (or it
        failed before sending)."""
        if not fns:
            return []
        commands = [self._command(fn) for fn in fns]
        replies = await self._pipeline(commands, idempotent=all(fn.IDEMPOTENT for fn in fns))
        missing = [
            i for i, r in enumerate(replies)
            if isinstance(r, ResponseError) and _NOT_LOADED in str(r).lower()
        ]
        if missing:
            # Calls answered "function not found" did not run: load, resend those.
            await self.ensure_libraries()
            again = await self._pipeline(
                [commands[i] for i in missing],
                idempotent=all(fns[i].IDEMPOTENT for i in missing),
            )
            for i, r in zip(missing, again, strict=True):
                replies[i] = r
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

    async def call_and_send(self, fn: FCall[R], *commands: Sequence[Any],
                            durable: bool = False,
                            durability: Durability | None = None) -> R:
        """Run ``fn`` followed by plain commands (a ``PUBLISH`` announcing what
        ``fn`` did, say) in one pipeline; the extra commands' replies are
        ignored. Resent on a lost reply only when ``fn`` is idempotent.

        ``durable=True`` (submissions, terminal calls) returns only once the
        write is as durable as ``durability`` (default: the backend's) asks;
        otherwise :class:`~flowfabric_worker.errors.DurabilityNotConfirmed`."""
        wanted = (durability or self.durability) if durable else FAST
        batch = [self._command(fn), *(list(c) for c in commands)]
        if wanted.waits:
            # Last, so it covers the call and what rides along with it.
            batch.append(wanted.wait_command())
        replies = await self._pipeline(batch, idempotent=fn.IDEMPOTENT,
                                       pooled=wanted.waits)
        reply = replies[0]
        if isinstance(reply, ResponseError):
            if _NOT_LOADED not in str(reply).lower():
                raise ScriptError(f"{fn.NAME}: {reply}")
            await self.ensure_libraries()  # the call did not run: load, send again
            replies = await self._pipeline(batch, idempotent=fn.IDEMPOTENT,
                                           pooled=wanted.waits)
            reply = replies[0]
            if isinstance(reply, ResponseError):
                raise ScriptError(f"{fn.NAME}: {reply}")
        # A refusal raises here: nothing was written, nothing to confirm.
        result = fn.decode(reply)
        if wanted.waits:
            wanted.confirm(replies[-1], fn.NAME)
        return result

    async def read_many(self, commands: list[list[Any]]) -> list[Any]:
        """Plain read commands (``HMGET``, ``GET``, ``ZRANGE``...) in one
        round trip, replies as the server sends them: ``HGETALL`` is a flat
        field/value list on either path. An error reply (a wrong type) is
        raised. Resent on a lost reply (reads are idempotent)."""
        if self._cluster is not None:
            sent, parts = split_exists(commands)
            raw = await self._pipeline([list(c) for c in sent], idempotent=True)
            replies = [raw[p[0]] if len(p) == 1 else _sum(raw[i] for i in p) for p in parts]
        else:
            replies = await self._pipeline(commands, idempotent=True)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        # Through the pool (memory://, another event loop) redis-py's reply
        # callbacks made dicts of hashes.
        return [_flat(r) if isinstance(r, dict) else r for r in replies]

    async def _pipeline(self, commands: Sequence[Sequence[Any]], *, idempotent: bool,
                        pooled: bool = False) -> list[Any]:
        """``pooled``: on a pool connection of its own, never the shared one
        (a blocking command such as WAITAOF would hold up every caller)."""
        mux = None if pooled else self._mux
        cluster = self._cluster

        async def once() -> list[Any]:
            if cluster is not None:
                return await cluster.execute(commands, pooled=pooled)
            if mux is not None and mux.usable():
                return await mux.execute(commands)
            pipe = self.redis.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

        result: list[Any] = await self._transport("pipeline", once, idempotent=idempotent)
        return result
