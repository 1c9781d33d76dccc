"""``redis+cluster://`` and ``rediss+cluster://`` URLs.

``redis+cluster://[user:password@]host:port[,host:port...][/?options]``: any
reachable node is enough to discover the rest (the others are tried when the
first is down). The database is always 0 (a cluster has no other).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from flowfabric_worker.backend.connection import resp2_kwargs
from flowfabric_worker.errors import ConfigurationError

__all__ = ["CLUSTER_SCHEMES", "ClusterUrl", "is_cluster_url"]

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


@dataclass(frozen=True)
class ClusterUrl:
    """A parsed cluster URL: the seed nodes and the connection options every
    node shares."""

    seeds: tuple[tuple[str, int], ...]
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    #: Query options passed through to the connections (e.g. ``ssl_cert_reqs``).
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> ClusterUrl:
        if not is_cluster_url(url):
            raise ConfigurationError(f"not a cluster URL: {url!r}")
        ssl = url.startswith("rediss+")
        rest = url.split("://", 1)[1]
        rest, _, query = rest.partition("?")
        rest, _, db = rest.partition("/")
        if db not in ("", "0"):
            raise ConfigurationError(
                f"cluster URL: a cluster has only database 0, not {db!r}")
        username = password = None
        if "@" in rest:
            creds, rest = rest.rsplit("@", 1)
            user, sep, secret = creds.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if sep else None
        seeds: list[tuple[str, int]] = []
        for part in rest.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ConfigurationError(
                    f"cluster URL: {part!r} is not host:port "
                    f"(use redis+cluster://host:port[,host:port...])")
            seeds.append((host.strip("[]"), int(port)))
        return cls(tuple(seeds), ssl, username, password, dict(parse_qsl(query)))

    def connection_kwargs(self) -> dict[str, object]:
        """What each node connection (and the topology client) is opened with."""
        # RESP2 whatever redis-py's default (connection.RESP_VERSION).
        out: dict[str, object] = resp2_kwargs(dict(self.options))
        if self.username is not None:
            out["username"] = self.username
        if self.password is not None:
            out["password"] = self.password
        if self.ssl:
            out["ssl"] = True
        return out
