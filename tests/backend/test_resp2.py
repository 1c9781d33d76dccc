"""Every connection speaks RESP2, whatever redis-py's default: the contract's
replies and every decoder here are RESP2's, and redis-py 8 opens RESP3
connections unless told (a hash would arrive as a dict, Lua's false as
False). A protocol other than 2, asked for in a URL or a keyword, is refused
before anything is opened."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from flowfabric_worker.backend.cluster_url import ClusterUrl
from flowfabric_worker.backend.connection import open_redis
from flowfabric_worker.backend.multiplex import Multiplexer
from flowfabric_worker.errors import ConfigurationError

pytestmark = pytest.mark.anyio

#: Commands whose RESP3 replies differ from their RESP2 ones.
SHAPES = [("HSET", "h", "a", "1"), ("HGETALL", "h"), ("EVAL", "return false", 0),
          ("ZADD", "z", "1.5", "m"), ("ZSCORE", "z", "m")]
RESP2 = [1, [b"a", b"1"], None, 1, b"1.5"]


@pytest.mark.parametrize("url", ["redis://h/0?protocol=3", "memory://p?protocol=3"])
def test_a_url_asking_for_resp3_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="RESP2"):
        open_redis(url)


def test_a_keyword_asking_for_resp3_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="RESP2"):
        open_redis("memory://p", protocol=3)
    assert open_redis("memory://p", protocol=2).connection_pool.connection_kwargs["protocol"] == 2


def test_cluster_nodes_are_opened_with_resp2() -> None:
    assert ClusterUrl.parse("redis+cluster://h1:7000").connection_kwargs()["protocol"] == 2
    with pytest.raises(ConfigurationError, match="RESP2"):
        ClusterUrl.parse("redis+cluster://h1:7000/0?protocol=3").connection_kwargs()


async def test_open_redis_clients_get_resp2_replies(redis_server_url: str) -> None:
    client = open_redis(redis_server_url)
    try:
        # What the server says this connection speaks (redis-py's reply
        # callbacks would hide the difference in most replies).
        info = await client.execute_command("CLIENT", "INFO")
        fields = dict(f.split(b"=", 1) for f in info.split() if b"=" in f)
        assert fields[b"resp"] == b"2"
        assert await client.execute_command("EVAL", "return false", 0) is None
    finally:
        await client.aclose()


async def test_the_multiplexer_speaks_resp2_over_a_default_pool(redis_server_url: str) -> None:
    # A pool opened with redis-py's defaults (RESP3 from redis-py 8 on): the
    # multiplexer's own connection is RESP2 all the same.
    client = aioredis.Redis.from_url(redis_server_url)
    mux = Multiplexer(client.connection_pool)
    try:
        assert mux.usable()
        await mux.execute([("FLUSHALL",)])
        assert await mux.execute(SHAPES) == RESP2
    finally:
        await mux.aclose()
        await client.aclose()
