"""Routing on a cluster: URLs, the one-slot rule, MOVED after resharding,
and the function libraries on every primary (repaired or reported)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import anyio
import pytest
import redis
from cluster_support import LocalCluster

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.cluster import key_slot
from flowfabric_worker.backend.cluster_url import ClusterUrl
from flowfabric_worker.backend.library import FFW, FLOWFABRIC
from flowfabric_worker.errors import ConfigurationError, InvalidInput, LibraryError
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.partitions import tag
from flowfabric_worker.protocol.signals import RotateHmacSecret

pytestmark = pytest.mark.anyio

SECRET = "5f0e1d2c3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"


class _TwoSlots(FCall[Any], frozen=True, kw_only=True):
    """A call whose keys live in two partitions (a bug the router must stop)."""

    NAME: ClassVar[str] = "ff_create_execution"
    IDEMPOTENT: ClassVar[bool] = False

    def keys(self) -> list[str]:
        return ["ff:exec:{fp:0}:x:core", "ff:exec:{fp:1}:x:core"]

    def argv(self) -> list[str]:
        return []

    def decode(self, reply: Any) -> Any:
        return reply


def test_cluster_url_parsing() -> None:
    u = ClusterUrl.parse("rediss+cluster://me:s%40cret@h1:7000,h2:7001/0?ssl_cert_reqs=none")
    assert u.seeds == (("h1", 7000), ("h2", 7001)) and u.ssl
    assert u.username == "me" and u.password == "s@cret"
    assert u.connection_kwargs()["ssl_cert_reqs"] == "none"
    with pytest.raises(ConfigurationError):
        ClusterUrl.parse("redis+cluster://h1")
    with pytest.raises(ConfigurationError):
        ClusterUrl.parse("redis+cluster://h1:7000/3")


def _rotate(partition: int) -> RotateHmacSecret:
    return RotateHmacSecret(tag=tag("fp", partition), new_kid="k1", new_secret_hex=SECRET)


async def _total_keys(b: Backend) -> int:
    assert b.cluster is not None
    return sum([int(await b.cluster.node_client(a).dbsize()) for a in b.cluster.primaries()])


async def test_keys_in_two_slots_are_refused_before_sending(cluster_url: str) -> None:
    async with await Backend.open(cluster_url) as b:
        with pytest.raises(InvalidInput, match="two cluster slots"):
            await b.call(_TwoSlots())
        with pytest.raises(InvalidInput, match="two cluster slots"):
            await b.call_many([_rotate(0), _TwoSlots()])
        assert await _total_keys(b) == 0  # nothing of either batch was written


def _owner(cluster: LocalCluster, slot: int) -> tuple[int, str]:
    with cluster.node(cluster.base) as r:
        for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                port = int(primary[1])
                return port, _node_id(cluster, port)
    raise AssertionError(f"slot {slot} unserved")


def _node_id(cluster: LocalCluster, port: int) -> str:
    with cluster.node(port) as r:
        return str(r.execute_command("CLUSTER", "MYID").decode())


def _move_empty_slot(cluster: LocalCluster, slot: int, from_port: int, to_port: int) -> None:
    """Hand an empty ``slot`` over the way ``redis-cli --cluster reshard``
    does. The target must take it while importing: that bumps its config
    epoch, so its claim outranks the old owner's. A bare ``SETSLOT NODE``
    on every primary keeps the old epoch, and a heartbeat the old owner sent
    just before can hand the slot back to it on the target: each then
    answers MOVED to the other, for good (seen on a busy box)."""
    to_id, from_id = _node_id(cluster, to_port), _node_id(cluster, from_port)
    with cluster.node(to_port) as r:
        r.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", from_id)
    with cluster.node(from_port) as r:
        r.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", to_id)
    for port in [to_port, from_port] + [p for p in cluster.primaries()
                                        if p not in (to_port, from_port)]:
        with cluster.node(port) as r:
            r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", to_id)
    _wait_agreed(cluster, slot, to_port)


def _wait_agreed(cluster: LocalCluster, slot: int, port: int) -> None:
    """Until every node says ``port`` serves ``slot`` (gossip reaches the
    replicas): the session's later tests share this cluster."""
    deadline = time.monotonic() + 30
    while True:
        views = set()
        for p in cluster.ports():
            with cluster.node(p) as r:
                views |= {int(primary[1]) for start, end, primary, *_
                          in r.execute_command("CLUSTER", "SLOTS") if start <= slot <= end}
        if views == {port}:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"slot {slot}: nodes still disagree ({views})")
        time.sleep(0.05)


async def test_moved_after_resharding_is_followed(
        cluster_url: str, local_cluster: LocalCluster) -> None:
    slot = key_slot("{fp:5}")
    async with await Backend.open(cluster_url) as b:
        await b.call(_rotate(5))
        old_port, _ = _owner(local_cluster, slot)
        other = next(p for p in local_cluster.primaries() if p != old_port)
        with local_cluster.node(old_port) as r:
            r.flushall()  # an empty slot can be reassigned without MIGRATE
        _move_empty_slot(local_cluster, slot, old_port, other)
        try:
            before = b.cluster.refreshes if b.cluster else 0
            await b.call(_rotate(5))  # MOVED -> new map -> sent to the new owner
            assert b.cluster is not None and b.cluster.refreshes > before
            with local_cluster.node(other) as r:
                assert r.exists("ff:sec:{fp:5}:waitpoint_hmac") or r.dbsize() > 0
        finally:
            with local_cluster.node(other) as r:
                r.flushall()
            _move_empty_slot(local_cluster, slot, other, old_port)


async def test_a_slot_that_is_down_for_a_moment_is_waited_for(
        cluster_url: str, local_cluster: LocalCluster) -> None:
    """CLUSTERDOWN means the node ran nothing (a failover under way, a slot
    not served yet): the call is sent again after a pause, not failed. Seen
    in CI as a producer's ScriptError "The cluster is down" while a killed
    primary's replica was being promoted."""
    slot = key_slot("{fp:11}")
    async with await Backend.open(cluster_url) as b:
        await b.call(_rotate(11))
        port, _ = _owner(local_cluster, slot)
        with local_cluster.node(port) as r:
            r.execute_command("CLUSTER", "DELSLOTS", slot)  # its owner: "not served"

        async def serve_again() -> None:
            await anyio.sleep(0.5)
            with local_cluster.node(port) as r:
                r.execute_command("CLUSTER", "ADDSLOTS", slot)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve_again)
                with anyio.fail_after(30):
                    await b.call(_rotate(11))
        finally:
            with local_cluster.node(port) as r:
                owned = [s for s, e, *_ in r.execute_command("CLUSTER", "SLOTS") if s <= slot <= e]
                if not owned:
                    r.execute_command("CLUSTER", "ADDSLOTS", slot)
            _wait_agreed(local_cluster, slot, port)
        with local_cluster.node(port) as r:
            assert r.exists("ff:sec:{fp:11}:waitpoint_hmac")


async def test_a_primary_that_lost_its_libraries_is_repaired(
        cluster_url: str, local_cluster: LocalCluster) -> None:
    slot = key_slot("{fp:7}")
    async with await Backend.open(cluster_url) as b:
        port, _ = _owner(local_cluster, slot)
        with local_cluster.node(port) as r:
            r.execute_command("FUNCTION", "FLUSH")
        await b.call(_rotate(7))  # "function not found": loaded there, resent
        with local_cluster.node(port) as r:
            assert r.fcall(FLOWFABRIC.version_function, 0).decode() == FLOWFABRIC.version
            assert r.fcall(FFW.version_function, 0).decode() == FFW.version


async def test_attached_mode_reports_a_primary_without_the_library(
        cluster_url: str, local_cluster: LocalCluster) -> None:
    slot = key_slot("{fp:9}")
    port, _ = _owner(local_cluster, slot)
    try:
        with local_cluster.node(port) as r:
            r.execute_command("FUNCTION", "DELETE", "flowfabric")
        with pytest.raises(LibraryError, match=f"127.0.0.1:{port}"):
            await Backend.open(cluster_url, mode="attached")
    finally:
        async with await Backend.open(cluster_url):
            pass  # standalone open loads it back on every primary
    with local_cluster.node(port) as r:
        assert r.fcall("ff_version", 0)


def test_redis_py_cluster_client_sees_our_writes(local_cluster: LocalCluster) -> None:
    # The session cluster is healthy: every slot served.
    with local_cluster.node(local_cluster.base) as r:
        info = r.execute_command("CLUSTER", "INFO").decode()
    assert "cluster_state:ok" in info
    assert isinstance(redis.__version__, str)
