"""Routing commands on a Redis/Valkey Cluster.

redis-py's :class:`~redis.asyncio.cluster.RedisCluster` discovers the
topology (``CLUSTER SLOTS``), keeps the slot map, and serves the plain
commands and read pipelines of the layers above (it routes each by its key
and follows ``MOVED``). It does not carry the hot path: its
``execute_command`` costs several times the shared pipelined connection's
per-call CPU, it has no transactions or ``PUBLISH`` in redis-py 5, and it
cannot pipeline a ``WAIT`` after the call it confirms. So library calls and
``read_many`` go through :meth:`ClusterTopology.execute`: each command is
routed by the slot of its keys (every key of one FCALL shares one hash tag;
keys in two slots are refused before anything is sent), commands without
keys (``PUBLISH``, ``WAIT``) ride with the keyed command before them, and
each primary has its own :class:`~.multiplex.Multiplexer` — the shared
pipelined connection that makes the single-server backend fast, one per
primary.

Redirections: ``MOVED`` refreshes the slot map and resends what was
redirected (a redirected command did not run); ``ASK`` resends it to the
importing node behind ``ASKING``; ``CLUSTERDOWN`` and ``TRYAGAIN`` (nothing
ran) resend it after a pause, for about as long as a failover takes. When
that runs out, a batch of which some part ran is reported as sent, so the
retry loop does not run that part twice. A connection failure refreshes the map
before the backend's retry loop (:mod:`.transport`) decides whether the
call may be resent, so a failover is ridden out by retries that find the
promoted replica. Before the first command goes to a primary not seen
before (a promoted replica, a new node), ``prepare_node`` runs on it: the
backend loads or checks its function libraries there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from binascii import crc_hqx
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowfabric_worker.backend.cluster_url import ClusterUrl
from flowfabric_worker.backend.multiplex import Multiplexer
from flowfabric_worker.backend.transport import RetryPolicy
from flowfabric_worker.errors import InvalidInput

__all__ = ["ClusterTopology", "command_slot", "key_slot", "split_exists"]

log = logging.getLogger("flowfabric_worker.backend")

SLOTS = 16384
#: Redirections followed for one batch before giving up (a slot moving
#: while we follow it; TRYAGAIN-like, so the retry loop tries again later).
_MAX_REDIRECTS = 5
#: Pauses before resending what a node refused unrun (CLUSTERDOWN, TRYAGAIN):
#: ~3 s in all, about the time a replica takes to be promoted.
_DOWN_RETRY = RetryPolicy(attempts=10, base_delay=0.05, max_delay=0.5)
#: A failure refreshes the slot map at most this often (seconds): many
#: callers failing at once share one ``CLUSTER SLOTS``.
_REFRESH_INTERVAL = 0.1

#: Commands without keys: they go with the keyed command before them.
_KEYLESS = frozenset({"TIME", "PUBLISH", "WAIT", "WAITAOF", "PING", "ECHO", "INFO",
                      "ASKING", "FUNCTION", "ROLE", "CLUSTER", "MULTI", "EXEC"})
#: Commands whose every argument is a key.
_ALL_KEYS = frozenset({"EXISTS", "DEL", "UNLINK", "MGET", "TOUCH", "WATCH"})
#: Commands with ``numkeys`` as their second argument.
_NUMKEYS = frozenset({"FCALL", "FCALL_RO", "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO"})

PrepareNode = Callable[[aioredis.Redis, str], Awaitable[None]]


@lru_cache(maxsize=8192)
def _tag_slot(tag: bytes) -> int:
    return crc_hqx(tag, 0) % SLOTS


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key``: CRC16 of its ``{hash tag}`` when it has
    one (cached per tag: every key of a partition shares it)."""
    k = key.encode() if isinstance(key, str) else bytes(key)
    start = k.find(b"{")
    if start >= 0:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            k = k[start + 1:end]
    return _tag_slot(k)


def _name(command: Sequence[Any]) -> str:
    head = command[0]
    return (head.decode() if isinstance(head, bytes) else str(head)).upper()


def command_slot(command: Sequence[Any]) -> int | None:
    """The slot every key of ``command`` lives in; None for a command without
    keys. Keys in two slots raise :class:`~flowfabric_worker.errors.InvalidInput`
    (a cluster would refuse the command with CROSSSLOT; nothing is sent)."""
    name = _name(command)
    if name in _KEYLESS or len(command) < 2:
        return None
    if name in _NUMKEYS:
        keys = command[3:3 + int(command[2])]
    elif name in _ALL_KEYS:
        keys = command[1:]
    else:
        keys = command[1:2]
    slot: int | None = None
    for key in keys:
        s = key_slot(key)
        if slot is None:
            slot = s
        elif s != slot:
            fn = f"{name} {command[1]}" if name in _NUMKEYS else name
            raise InvalidInput(
                f"{fn}: its keys live in two cluster slots ({keys[0]!r} in {slot}, "
                f"{key!r} in {s}); every key of one call must share a hash tag")
    return slot


def split_exists(commands: Sequence[Sequence[Any]]
                 ) -> tuple[list[Sequence[Any]], list[list[int]]]:
    """Reads with an ``EXISTS`` over keys of several slots (the scanner
    runner asks whether any partition of a slice has work) split into one
    ``EXISTS`` per slot: ``(commands to send, positions to sum for each
    original)``. Other commands pass unchanged."""
    out: list[Sequence[Any]] = []
    parts: list[list[int]] = []
    for command in commands:
        if _name(command) != "EXISTS" or len(command) < 3:
            parts.append([len(out)])
            out.append(command)
            continue
        by_slot: dict[int, list[Any]] = {}
        for key in command[1:]:
            by_slot.setdefault(key_slot(key), []).append(key)
        positions = []
        for keys in by_slot.values():
            positions.append(len(out))
            out.append(["EXISTS", *keys])
        parts.append(positions)
    return out, parts


def _not_run(reply: Any) -> bool:
    """Whether ``reply`` says the node ran nothing and the command may go
    again later: the cluster or the slot is down (a failover under way), or
    TRYAGAIN. redis-py's parser strips the prefix from the text of the
    exceptions it makes of them."""
    if isinstance(reply, ClusterDownError | TryAgainError):
        return True
    return isinstance(reply, ResponseError) and str(reply).startswith(("CLUSTERDOWN", "TRYAGAIN"))


def _redirect(reply: Any) -> tuple[str, str] | None:
    """``("MOVED" | "ASK", "host:port")`` for a redirection reply."""
    if isinstance(reply, AskError):  # redis-py's cluster parser (MovedError too)
        return ("MOVED" if isinstance(reply, MovedError) else "ASK",
                f"{reply.host}:{reply.port}")
    if isinstance(reply, ResponseError):
        text = str(reply)
        if text.startswith(("MOVED ", "ASK ")):
            kind, _slot, addr = text.split(" ", 2)
            return kind, addr.strip()
    return None


class ClusterTopology:
    """The slot map, one client and one multiplexer per node, and routing."""

    def __init__(self, url: ClusterUrl, *, connect_timeout: float | None,
                 request_timeout: float | None, multiplex: bool = True) -> None:
        common = url.connection_kwargs()
        #: Each node's own client: library loads, WAIT pipelines, pub/sub.
        self._node_kwargs: dict[str, Any] = dict(
            common, socket_connect_timeout=connect_timeout, socket_timeout=request_timeout)
        #: Full coverage off: while one shard fails over, the others serve.
        self.rc = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in url.seeds],
            require_full_coverage=False, **self._node_kwargs)
        self._multiplex = multiplex
        self._clients: dict[str, aioredis.Redis] = {}
        self._muxes: dict[str, Multiplexer] = {}
        #: Primaries whose libraries were loaded or checked by ``prepare_node``.
        self._ready: set[str] = set()
        self._ready_locks: dict[str, asyncio.Lock] = {}
        self.prepare_node: PrepareNode | None = None
        self._refresh_lock: asyncio.Lock | None = None
        self._refreshed_at = 0.0
        #: Bumped by every refresh (tests and logs read it).
        self.refreshes = 0

    async def start(self) -> None:
        await self.rc.initialize()

    # --- the map -------------------------------------------------------------

    def primaries(self) -> list[str]:
        """``host:port`` of every primary in the current map."""
        return sorted({nodes[0].name for nodes in self.rc.nodes_manager.slots_cache.values()
                       if nodes})

    def nodes(self) -> list[str]:
        """Every known node, primaries first."""
        primaries = self.primaries()
        others = sorted(n for n in self.rc.nodes_manager.nodes_cache if n not in primaries)
        return primaries + others

    def addr_for_slot(self, slot: int) -> str:
        nodes = self.rc.nodes_manager.slots_cache.get(slot)
        if not nodes:
            # Transient for the retry loop: the map is refreshed meanwhile.
            raise ResponseError(f"CLUSTERDOWN Hash slot {slot} is not served")
        name: str = nodes[0].name
        return name

    def default_addr(self) -> str:
        primaries = self.primaries()
        if not primaries:
            raise ResponseError("CLUSTERDOWN no primary is serving")
        return primaries[0]

    def is_ready(self, addr: str) -> bool:
        return addr in self._ready

    def mark_ready(self, addr: str) -> None:
        self._ready.add(addr)

    def forget(self, addr: str) -> None:
        """Check ``addr``'s libraries again before its next command."""
        self._ready.discard(addr)

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the slot map (after MOVED, a failure, a failover); calls
        close together share one refresh."""
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        seen = self.refreshes
        async with self._refresh_lock:
            if self.refreshes != seen:
                return  # somebody refreshed while we waited
            if not force and time.monotonic() - self._refreshed_at < _REFRESH_INTERVAL:
                return
            before = set(self.primaries())
            try:
                await self.rc.nodes_manager.initialize()
            except Exception as exc:  # every node unreachable: the next failure retries
                log.info("cluster topology refresh failed: %s", exc)
            self._refreshed_at = time.monotonic()
            self.refreshes += 1
            after = set(self.primaries())
            if after != before:
                log.info("cluster primaries now %s (were %s)",
                         ", ".join(sorted(after)), ", ".join(sorted(before)))

    # --- nodes ---------------------------------------------------------------

    def node_client(self, addr: str) -> aioredis.Redis:
        client = self._clients.get(addr)
        if client is None:
            host, _, port = addr.rpartition(":")
            client = aioredis.Redis(host=host, port=int(port), **self._node_kwargs)
            self._clients[addr] = client
        return client

    def _mux(self, addr: str) -> Multiplexer | None:
        if not self._multiplex:
            return None
        mux = self._muxes.get(addr)
        if mux is None:
            mux = self._muxes[addr] = Multiplexer(self.node_client(addr).connection_pool)
        return mux if mux.usable() else None

    async def ensure_ready(self, addr: str) -> None:
        """Run ``prepare_node`` once on a primary before its first command. A
        failure (attached mode: the library is missing there) is raised to
        the caller every time until it succeeds — never skipped."""
        if addr in self._ready or self.prepare_node is None:
            return
        lock = self._ready_locks.setdefault(addr, asyncio.Lock())
        async with lock:
            if addr in self._ready:
                return
            await self.prepare_node(self.node_client(addr), addr)
            self._ready.add(addr)

    # --- sending -------------------------------------------------------------

    async def execute(self, commands: Sequence[Sequence[Any]], *,
                      pooled: bool = False) -> list[Any]:
        """Replies of ``commands`` in order, error replies as values, as
        :meth:`.multiplex.Multiplexer.execute`; each command goes to the
        primary of its slot (commands for several primaries in parallel).
        ``pooled``: on the node client's pool, not the shared connection (a
        blocking ``WAIT`` rides along)."""
        n = len(commands)
        slots: list[int | None] = [None] * n
        anchor = list(range(n))  # a keyless command goes where its anchor goes
        last: int | None = None
        for i, command in enumerate(commands):
            slots[i] = command_slot(command)
            if slots[i] is not None:
                last = i
            elif last is not None:
                anchor[i] = last
        first_keyed = next((i for i in range(n) if slots[i] is not None), None)
        if first_keyed is not None:
            for i in range(first_keyed):
                anchor[i] = first_keyed  # keyless before any key: with the first
        replies: list[Any] = [None] * n
        todo = list(range(n))
        asking: dict[int, str] = {}
        hops = downs = 0
        while True:
            groups: dict[str, list[int]] = {}
            for i in todo:
                a = anchor[i]
                slot = slots[a]
                addr = asking.get(a) or (self.addr_for_slot(slot) if slot is not None
                                         else self.default_addr())
                groups.setdefault(addr, []).append(i)
            for addr in groups:
                await self.ensure_ready(addr)
            results = await asyncio.gather(
                *(self._send(addr, [commands[i] for i in idx],
                             [i in asking and anchor[i] == i for i in idx], pooled)
                  for addr, idx in groups.items()),
                return_exceptions=True)
            await self._raise_failures(results)
            redirected: set[int] = set()
            moved = down = False
            for idx, result in zip(groups.values(), results, strict=True):
                assert isinstance(result, list)
                for i, reply in zip(idx, result, strict=True):
                    target = _redirect(reply)
                    if target is None and not _not_run(reply):
                        replies[i] = reply
                        continue
                    redirected.add(i)
                    if target is None:
                        down = True
                    elif target[0] == "ASK":
                        asking[i] = target[1]
                    else:
                        asking.pop(i, None)
                        moved = True
            if not redirected:
                return replies
            # What rode along with a redirected command goes again with it.
            todo = [i for i in range(n) if i in redirected or anchor[i] in redirected]
            if down:
                downs += 1
                if downs >= _DOWN_RETRY.attempts:
                    break
                await asyncio.sleep(_DOWN_RETRY.delay(downs - 1))
            else:
                hops += 1
                if hops >= _MAX_REDIRECTS:
                    break
            if moved or down:
                await self.refresh(force=moved)
        if len(todo) < n:
            # The rest ran: resending the batch whole would run it twice, so
            # the retry loop must treat it as sent (as for a failed node).
            raise RedisConnectionError(
                "Error while talking to the cluster (part of a batch ran; the rest was "
                "redirected or refused too often)")
        raise ResponseError("TRYAGAIN too many cluster redirections or refusals")

    async def _raise_failures(self, results: list[Any]) -> None:
        failures = [r for r in results if isinstance(r, BaseException)]
        if not failures:
            return
        await self.refresh()
        first = failures[0]
        if not isinstance(first, RedisConnectionError | RedisTimeoutError | ResponseError):
            raise first
        if len(failures) < len(results) and isinstance(
                first, RedisConnectionError | RedisTimeoutError):
            # Another node ran its part: resending the batch whole would run
            # that part twice, so the retry loop must treat it as sent.
            raise RedisConnectionError(
                f"Error while talking to the cluster (part of a batch ran): {first}"
            ) from first
        raise first

    async def _send(self, addr: str, commands: list[Sequence[Any]], asking: list[bool],
                    pooled: bool) -> list[Any]:
        wire: list[Sequence[Any]] = []
        positions: list[int] = []
        for command, ask in zip(commands, asking, strict=True):
            if ask:
                wire.append(("ASKING",))
            wire.append(command)
            positions.append(len(wire) - 1)
        mux = None if pooled else self._mux(addr)
        if mux is not None:
            out = await mux.execute(wire)
        else:
            pipe = self.node_client(addr).pipeline(transaction=False)
            for command in wire:
                pipe.execute_command(*command)
            out = await pipe.execute(raise_on_error=False)
        return [out[p] for p in positions]

    async def aclose(self) -> None:
        for mux in self._muxes.values():
            await mux.aclose()
        for client in self._clients.values():
            try:
                await client.aclose()
            except Exception:
                pass
        await self.rc.aclose()
