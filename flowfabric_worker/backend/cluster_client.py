"""``backend.redis`` on a cluster: redis-py's ``RedisCluster`` plus what it
lacks for us.

Plain commands and non-transactional pipelines are redis-py's (routed by
key, grouped by node, ``MOVED`` followed). Added here, working alike with
redis-py 5 and 8:

- ``publish``: classic ``PUBLISH``, sent to the primary of the channel's slot
  (any node would do: a cluster forwards classic messages to every node).
- ``pubsub()``: a subscription on one node, moving to another when its node
  fails (classic pub/sub is cluster-wide, so any node hears every message).
- ``pipeline(transaction=True)``: ``MULTI``/``EXEC`` on the node of the one
  slot every queued command shares.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import AskError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowfabric_worker.backend.cluster import ClusterTopology, command_slot, key_slot
from flowfabric_worker.errors import InvalidInput

__all__ = ["ClusterClient", "ClusterPubSub"]

log = logging.getLogger("flowfabric_worker.backend")

_TX_ATTEMPTS = 3


class ClusterClient:
    """What the backend and the layers above use as ``backend.redis``."""

    def __init__(self, topology: ClusterTopology) -> None:
        self.topology = topology

    def __getattr__(self, name: str) -> Any:
        return getattr(self.topology.rc, name)

    async def publish(self, channel: str, message: Any) -> int:
        addr = self.topology.addr_for_slot(key_slot(channel))
        return int(await self.topology.node_client(addr).publish(channel, message))

    def pubsub(self) -> ClusterPubSub:
        return ClusterPubSub(self.topology)

    def pipeline(self, transaction: bool | None = None, shard_hint: Any = None) -> Any:
        if transaction:
            return SlotTransaction(self.topology)
        return self.topology.rc.pipeline()

    async def aclose(self) -> None:
        await self.topology.aclose()


class ClusterPubSub:
    """The subset of redis-py's ``PubSub`` the SDK uses (``subscribe``,
    ``unsubscribe``, ``get_message``, ``aclose``) on a node that answers.

    A connection failure closes this node's subscription and is raised, as
    with a single server (callers subscribe again, and poll meanwhile);
    subscribing tries every known node before it gives up.
    """

    def __init__(self, topology: ClusterTopology) -> None:
        self._topology = topology
        self._pubsub: Any = None
        self._channels: set[str] = set()

    async def _open(self) -> Any:
        last: BaseException | None = None
        for addr in self._topology.nodes():
            pubsub = self._topology.node_client(addr).pubsub()
            try:
                if self._channels:
                    await pubsub.subscribe(*sorted(self._channels))
                else:
                    connect: Any = pubsub.connect  # untyped in redis-py
                    await connect()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                last = exc
                await _close(pubsub)
                continue
            self._pubsub = pubsub
            return pubsub
        await self._topology.refresh()
        raise RedisConnectionError(f"Error connecting to every cluster node: {last}")

    async def subscribe(self, *channels: str) -> None:
        new = set(channels) - self._channels
        self._channels |= set(channels)
        if self._pubsub is None:
            await self._open()  # subscribes to every channel, these included
            return
        try:
            await self._pubsub.subscribe(*channels)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await self._drop()
            self._channels -= new
            raise

    async def unsubscribe(self, *channels: str) -> None:
        self._channels -= set(channels)
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(*channels)

    async def get_message(self, **kwargs: Any) -> Any:
        if self._pubsub is None:
            await self._open()
        try:
            return await self._pubsub.get_message(**kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await self._drop()
            raise

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _close(pubsub)
        await self._topology.refresh()

    async def aclose(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _close(pubsub)


async def _close(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except Exception:
        pass


class SlotTransaction:
    """Records commands, then runs them in ``MULTI``/``EXEC`` on the primary
    of their one slot. Commands in two slots are refused before sending."""

    def __init__(self, topology: ClusterTopology) -> None:
        self._topology = topology
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> SlotTransaction:
            self._calls.append((name, args, kwargs))
            return self

        return record

    def _slot(self) -> int:
        slot: int | None = None
        for name, args, _ in self._calls:
            command = list(args) if name == "execute_command" else [name, *args]
            s = command_slot(command)
            if s is None:
                continue
            if slot is not None and s != slot:
                raise InvalidInput(
                    f"a cluster transaction spans slots {slot} and {s}: every command "
                    f"of one MULTI must share a hash tag")
            slot = s
        return 0 if slot is None else slot

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        slot = self._slot()
        for attempt in range(_TX_ATTEMPTS):
            addr = self._topology.addr_for_slot(slot)
            await self._topology.ensure_ready(addr)
            pipe = self._topology.node_client(addr).pipeline(transaction=True)
            for name, args, kwargs in self._calls:
                getattr(pipe, name)(*args, **kwargs)
            try:
                replies: list[Any] = await pipe.execute(raise_on_error=raise_on_error)
            except ResponseError as exc:
                # Queued on a node that no longer owns the slot: EXEC aborted,
                # nothing ran; follow the new map.
                text = str(exc)
                if attempt + 1 < _TX_ATTEMPTS and (
                        isinstance(exc, AskError) or "MOVED" in text or "EXECABORT" in text):
                    await self._topology.refresh(force=True)
                    continue
                raise
            return replies
        raise AssertionError("unreachable")
