"""Opening a Redis connection from a URL: ``redis://``, ``rediss://``,
``unix://`` (a real server) or ``memory://[name]`` (in-process fakeredis).

``memory://`` connections with the same name share one in-process server, so a
client and a worker in one process see the same data. They take the embedded
fast paths (``embedded_transport``: commands handed over without RESP,
``embedded_socket``: cached dispatch inside fakeredis) when the installed
fakeredis is one those were written for, stock fakeredis otherwise.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis.asyncio as aioredis

from flowfabric_worker.errors import ConfigurationError

__all__ = ["RESP_VERSION", "is_embedded", "is_memory_url", "open_redis", "resp2_kwargs"]

#: The protocol every connection speaks. The contract's replies (spec 02) and
#: every decoder here are RESP2's: a hash is a flat array, Lua's false is a
#: nil. redis-py 8 opens RESP3 connections unless told otherwise (maps, sets,
#: booleans and doubles arrive as other Python types), so it is told.
RESP_VERSION = 2

#: Whether ``memory://`` connections opened from now on take the embedded fast
#: paths (when available). Only for measuring them against stock fakeredis
#: (``bench/embedded.py --stock``); the two behave the same.
EMBEDDED_FAST_PATHS = True

_memory_servers: dict[str, Any] = {}
_memory_lock = threading.Lock()


def is_memory_url(url: str) -> bool:
    return url.startswith("memory://")


def is_embedded(client: Any) -> bool:
    """Whether ``client`` (from :func:`open_redis`) is a ``memory://`` client
    on the embedded fast paths, whose connections can be driven directly
    (:mod:`.embedded_mux`)."""
    pool = getattr(client, "connection_pool", None)
    cls = getattr(pool, "connection_class", None)
    if cls is None:
        return False
    from flowfabric_worker.backend.embedded_transport import EmbeddedConnection

    return isinstance(cls, type) and issubclass(cls, EmbeddedConnection)


def _memory_server(name: str) -> Any:
    import fakeredis

    with _memory_lock:
        server = _memory_servers.get(name)
        if server is None:
            server = fakeredis.FakeServer(version=(7, 2))
            _memory_servers[name] = server
        return server


def resp2_kwargs(kwargs: dict[str, Any], url: str = "") -> dict[str, Any]:
    """``kwargs`` with ``protocol=2``; a ``protocol`` other than 2 in them or in
    ``url``'s query is refused (:class:`ConfigurationError`)."""
    asked = [kwargs.get("protocol")]
    asked += [v for k, v in parse_qsl(urlsplit(url).query) if k == "protocol"]
    for value in asked:
        if value is not None and str(value) != str(RESP_VERSION):
            raise ConfigurationError(
                f"protocol={value!r}: flowfabric_worker speaks RESP{RESP_VERSION} only "
                f"(drop the protocol option)")
    return dict(kwargs, protocol=RESP_VERSION)


def open_redis(url: str, **kwargs: Any) -> aioredis.Redis:
    """A ``redis.asyncio.Redis`` for ``url`` (replies are bytes). ``kwargs`` go to
    the client (e.g. ``socket_connect_timeout``). Cluster URLs
    (``redis+cluster://``) are opened by ``Backend.open``, which routes by
    slot (cluster.py); a plain client of one node cannot serve them."""
    kwargs = resp2_kwargs(kwargs, url)
    if is_memory_url(url):
        import fakeredis

        from flowfabric_worker.backend import embedded_socket

        server = _memory_server(url[len("memory://"):] or "default")
        if EMBEDDED_FAST_PATHS and embedded_socket.available():
            from flowfabric_worker.backend.embedded_transport import open_embedded

            embedded: aioredis.Redis = open_embedded(server, **kwargs)
            return embedded
        return fakeredis.FakeAsyncRedis(server=server, **kwargs)
    if url.startswith(("redis://", "rediss://", "unix://")):
        client: aioredis.Redis = aioredis.Redis.from_url(url, **kwargs)
        return client
    if url.startswith(("redis+cluster://", "rediss+cluster://")):
        raise ConfigurationError(
            f"{url!r} is a cluster URL: open it with Backend.open or Client.connect")
    raise ConfigurationError(
        f"unsupported URL {url!r}: use redis://, rediss://, unix://, "
        f"redis+cluster://, rediss+cluster:// or memory://"
    )
