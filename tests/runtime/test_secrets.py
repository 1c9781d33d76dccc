"""The waitpoint HMAC keystore tooling (flowfabric_worker.secrets) against the Lua."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.keystore import (
    ensure_secrets,
    init_secrets,
    keystore_ready,
    list_secrets,
    read_keystores,
    rotate_secrets,
)
from flowfabric_worker.errors import (
    InvalidInput,
    KeystoreInconsistent,
    KeystoreNotInitialized,
    KidInUse,
)
from flowfabric_worker.protocol.keys import PartitionKeys
from flowfabric_worker.protocol.partitions import tag
from flowfabric_worker.protocol.signals import RotateHmacSecret

pytestmark = pytest.mark.anyio

OTHER = "ab" * 32


@pytest.fixture
async def b(url: str) -> AsyncIterator[Backend]:
    backend = await Backend.open(url)
    try:
        yield backend
    finally:
        await backend.close()


async def test_init_installs_k1_everywhere_and_is_idempotent(b: Backend) -> None:
    assert not any(s.initialised for s in await read_keystores(b))
    out = await init_secrets(b)
    assert (out.status, out.kid, out.written) == ("initialised", "k1", 256)
    stores = await read_keystores(b)
    assert len(stores) == b.partitions.num_flow_partitions == 256
    secrets = {s.secrets["k1"].reveal() for s in stores}
    assert len(secrets) == 1 and all(s.current_kid == "k1" for s in stores)
    (secret,) = secrets
    assert len(secret) == 64 and int(secret, 16) >= 0
    again = await init_secrets(b, secret_hex=OTHER)
    assert (again.status, again.written) == ("already_initialised", 0)
    assert "differs" in again.note
    assert {s.secrets["k1"].reveal() for s in await read_keystores(b)} == {secret}


async def test_init_fills_missing_partitions_with_the_same_secret(b: Backend) -> None:
    await init_secrets(b)
    await b.redis.delete(PartitionKeys(tag("fp", 3)).hmac_keystore)
    await b.redis.hdel(PartitionKeys(tag("fp", 9)).hmac_keystore, "secret:k1")  # torn write
    if not b.is_memory:  # (memory:// would repair itself on this check)
        assert not await keystore_ready(b)
    out = await init_secrets(b)
    assert (out.status, out.written, out.kid) == ("repaired", 2, "k1")
    stores = await read_keystores(b)
    assert all(s.initialised for s in stores)
    assert len({s.secrets["k1"].reveal() for s in stores}) == 1


async def test_interrupted_rotation_is_refused_then_finished_by_init(b: Backend) -> None:
    await init_secrets(b)
    # A rotation that reached only partitions 0..9 (grace 60 s).
    await b.call_many([RotateHmacSecret(tag=tag("fp", i), new_kid="k2", new_secret_hex=OTHER,
                                        grace_ms=60_000) for i in range(10)])
    with pytest.raises(KeystoreInconsistent):
        await rotate_secrets(b, grace_ms=0)
    status = await list_secrets(b)
    assert not status.consistent and len(status.groups) == 2
    out = await init_secrets(b)
    assert (out.status, out.kid, out.written) == ("repaired", "k2", 246)
    status = await list_secrets(b)
    assert status.consistent
    (group,) = status.groups
    assert group.current_kid == "k2" and [k for k, _ in group.in_grace] == ["k1"]
    # The finished partitions' grace was carried over, not restarted.
    assert group.in_grace[0][1] <= status.now_ms + 60_000


async def test_rotate_picks_a_fresh_kid_and_refuses_reuse(b: Backend) -> None:
    with pytest.raises(KeystoreNotInitialized):
        await rotate_secrets(b)
    await init_secrets(b)
    out = await rotate_secrets(b, grace_ms=3_600_000)
    assert (out.previous_kid, out.kid, out.partitions) == ("k1", "k2", 256)
    with pytest.raises(KidInUse):
        await rotate_secrets(b, kid="k1")  # in grace
    with pytest.raises(KidInUse):
        await rotate_secrets(b, kid="k2")  # current
    with pytest.raises(InvalidInput):
        await rotate_secrets(b, kid="a:b")
    with pytest.raises(InvalidInput):
        await rotate_secrets(b, grace_ms=-1)
    out = await rotate_secrets(b, grace_ms=0, kid="blue")
    assert (out.previous_kid, out.kid) == ("k2", "blue")
    status = await list_secrets(b)
    (group,) = status.groups
    assert group.current_kid == "blue" and "k1" in dict(group.in_grace)
    # The automatic kid continues the k<n> numbering past every kid still known.
    out = await rotate_secrets(b, grace_ms=0)
    assert out.kid == "k3"


async def test_list_summarises_and_never_shows_secrets(b: Backend) -> None:
    status = await list_secrets(b)
    assert not status.initialised and status.groups[0].current_kid == ""
    await init_secrets(b)
    status = await list_secrets(b)
    (group,) = status.groups
    assert group.partition_ranges() == "0-255" and group.current_kid == "k1"
    secret = group.secrets["k1"].reveal()
    assert len(secret) == 64
    for text in (repr(status), str(status), repr(await read_keystores(b)), f"{group.secrets}"):
        assert secret not in text
    call = RotateHmacSecret(tag="{fp:0}", new_kid="k9", new_secret_hex=OTHER)
    assert OTHER not in repr(call) and OTHER not in repr(call.__rich_repr__())


async def test_keystore_ready_and_ensure(b: Backend) -> None:
    if b.is_memory:
        # memory:// is private and ephemeral: the first check initialises it.
        assert await keystore_ready(b)
        assert all(s.initialised for s in await read_keystores(b))
        await ensure_secrets(b)
        return
    assert not await keystore_ready(b)
    with pytest.raises(KeystoreNotInitialized, match="secrets init"):
        await ensure_secrets(b)
    await init_secrets(b)
    assert await keystore_ready(b)
    await ensure_secrets(b)
