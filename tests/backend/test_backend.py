"""Backend robustness: library loading (spec 01 §9), attached mode, reload after a
lost library, transport failures, pipelining."""

from __future__ import annotations

import socket
import time
from typing import Any, ClassVar

import pytest

from flowfabric_worker.backend.backend import Backend, execute
from flowfabric_worker.backend.connection import open_redis
from flowfabric_worker.backend.library import FFW, FLOWFABRIC
from flowfabric_worker.backend.transport import RetryPolicy
from flowfabric_worker.errors import LibraryError, ScriptError, TransportError
from flowfabric_worker.protocol.function import FCall

pytestmark = pytest.mark.anyio


class Version(FCall[str], frozen=True, kw_only=True):
    NAME: ClassVar[str] = "ff_version"
    IDEMPOTENT: ClassVar[bool] = True

    def keys(self) -> list[str]:
        return []

    def argv(self) -> list[str]:
        return []

    def decode(self, reply: Any) -> str:
        return reply.decode() if isinstance(reply, bytes) else str(reply)


class Missing(Version, frozen=True, kw_only=True):
    NAME: ClassVar[str] = "ff_no_such_function_anywhere"


def _fake_flowfabric(version: str) -> str:
    return (
        "#!lua name=flowfabric\n"
        f"redis.register_function('ff_version', function() return '{version}' end)\n"
    )


async def _version(client: Any, fn: str = "ff_version") -> str:
    reply = await execute(client, "FCALL", fn, 0)
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def _function_count(client: Any, library: str) -> int:
    reply = await execute(client, "FUNCTION", "LIST", "LIBRARYNAME", library)
    for entry in reply:
        # redis-py 5 hands back a flat list, newer versions already a dict
        if isinstance(entry, dict):
            fields = {_b(k): v for k, v in entry.items()}
        else:
            fields = {_b(k): v for k, v in zip(entry[::2], entry[1::2], strict=True)}
        if _b(fields[b"library_name"]) == library.encode():
            return len(fields[b"functions"])
    return 0


async def _empty(url: str) -> Any:
    """A client on ``url`` with no function library loaded (FUNCTION is server-wide:
    the real server keeps libraries across the per-test FLUSHALL)."""
    client = open_redis(url)
    await execute(client, "FUNCTION", "FLUSH")
    return client


async def test_loads_both_libraries_when_absent(url: str) -> None:
    await (await _empty(url)).aclose()
    async with await Backend.open(url) as b:
        assert await _version(b.redis) == FLOWFABRIC.version == "34"
        assert await _version(b.redis, "ffw_version") == FFW.version == "9"
        assert await b.call(Version()) == "34"


async def test_replaces_an_older_library(url: str) -> None:
    client = await _empty(url)
    await execute(client, "FUNCTION", "LOAD", "REPLACE", _fake_flowfabric("33"))
    async with await Backend.open(url) as b:
        assert await _version(b.redis) == "34"
        assert await _function_count(b.redis, "flowfabric") > 1
    await client.aclose()


async def test_same_version_is_kept_unless_forced(url: str) -> None:
    client = await _empty(url)
    await execute(client, "FUNCTION", "LOAD", "REPLACE", _fake_flowfabric("34"))
    async with await Backend.open(url):
        assert await _function_count(client, "flowfabric") == 1
    async with await Backend.open(url, force_reload=True):
        assert await _function_count(client, "flowfabric") > 1
    await client.aclose()


@pytest.mark.parametrize("force", [False, True])
async def test_attached_mode_refuses_wrong_version_and_never_replaces(
    url: str, force: bool
) -> None:
    client = await _empty(url)
    with pytest.raises(LibraryError, match="no 'flowfabric' library"):
        await Backend.open(url, mode="attached", force_reload=force)
    await execute(client, "FUNCTION", "LOAD", "REPLACE", _fake_flowfabric("33"))
    with pytest.raises(LibraryError, match="version 33"):
        await Backend.open(url, mode="attached", force_reload=force)
    assert await _version(client) == "33"
    assert await _function_count(client, "flowfabric") == 1
    await client.aclose()


async def test_attached_mode_with_the_right_version_still_loads_ffw(url: str) -> None:
    client = await _empty(url)
    await execute(client, "FUNCTION", "LOAD", "REPLACE", _fake_flowfabric("34"))
    async with await Backend.open(url, mode="attached", force_reload=True) as b:
        assert await _function_count(client, "flowfabric") == 1
        assert await _version(b.redis, "ffw_version") == FFW.version == "9"
    await client.aclose()


async def test_reloads_after_function_flush(url: str) -> None:
    async with await Backend.open(url) as b:
        await execute(b.redis, "FUNCTION", "FLUSH")
        assert await b.call(Version()) == "34"
        await execute(b.redis, "FUNCTION", "FLUSH")
        out = await b.call_many([Version(), Version()])
        assert out == ["34", "34"]
        assert await _version(b.redis, "ffw_version") == FFW.version == "9"


async def test_call_many_pipelines_values_and_errors(url: str) -> None:
    async with await Backend.open(url) as b:
        assert await b.call_many([]) == []
        out = await b.call_many([Version(), Missing(), Version()])
        assert out[0] == "34" and out[2] == "34"
        assert isinstance(out[1], ScriptError)
        with pytest.raises(ScriptError):
            await b.call(Missing())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_dead_server_is_a_quick_transport_error() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    start = time.monotonic()
    with pytest.raises(TransportError) as info:
        await Backend.open(url, retry=RetryPolicy(attempts=3, base_delay=0.01))
    assert time.monotonic() - start < 3
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in str(info.value)
    assert info.value.sent is False
    assert info.value.retryable


async def test_a_server_that_is_not_redis_is_a_transport_error() -> None:
    # A listener that answers garbage: a protocol error, not retried, not a hang.
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TransportError) as info:
            await Backend.open(f"redis://127.0.0.1:{port}/0", retry=RetryPolicy(attempts=3))
        assert info.value.sent is True
    finally:
        server.close()
        await server.wait_closed()


async def test_request_timeout_bounds_a_silent_server() -> None:
    # Accepts the connection, never answers: the request timeout must fire.
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    start = time.monotonic()
    try:
        with pytest.raises(TransportError) as info:
            await Backend.open(
                f"redis://127.0.0.1:{port}/0",
                request_timeout=0.2,
                retry=RetryPolicy(attempts=2, base_delay=0.01),
            )
        assert info.value.sent is True
        assert time.monotonic() - start < 3
    finally:
        server.close()


async def test_password_is_not_echoed() -> None:
    url = f"redis://user:s3cret@127.0.0.1:{_closed_port()}/0"
    with pytest.raises(TransportError) as info:
        await Backend.open(url, retry=RetryPolicy(attempts=1))
    assert "s3cret" not in str(info.value)


async def test_an_older_build_of_the_same_version_is_replaced(url: str) -> None:
    # flowfabric must keep answering 0.15's version, so a Lua fix of a newer
    # SDK would never reach a server an older build loaded: the text decides.
    from flowfabric_worker.backend.library import library_text

    client = await _empty(url)
    older = library_text(FLOWFABRIC).replace(
        "\n-- >>> shared/", "\n-- an older build\n-- >>> shared/", 1)
    await execute(client, "FUNCTION", "LOAD", "REPLACE", older)
    async with await Backend.open(url):
        reply = await execute(client, "FUNCTION", "LIST", "LIBRARYNAME", "flowfabric",
                              "WITHCODE")
        entry = reply[0]
        fields = ({_b(k): v for k, v in entry.items()} if isinstance(entry, dict)
                  else {_b(k): v for k, v in zip(entry[::2], entry[1::2], strict=True)})
        assert _b(fields[b"library_code"]).decode() == library_text(FLOWFABRIC)
    await client.aclose()
