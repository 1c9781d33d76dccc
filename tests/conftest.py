"""Shared fixtures: a real redis-server started for the session, and a
``url`` fixture parametrised over the real server and ``memory://``.

A missing ``redis-server`` binary is a failure in CI (``CI=true``) and a skip
of the real-server half elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from flowfabric_worker.backend.connection import open_redis


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL of a redis-server private to this test session."""
    given = os.environ.get("FLOWFABRIC_TEST_REDIS_URL")
    if given:
        yield given
        return
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (required in CI)")
        pytest.skip("redis-server not installed")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="ffw-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    client.close()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["redis", "memory"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database: the real server (flushed) or a new memory:// server."""
    if request.param == "redis":
        real: str = request.getfixturevalue("redis_server_url")
        client = redis.Redis.from_url(real)
        client.flushall()
        client.close()
        yield real
    else:
        yield f"memory://test-{uuid.uuid4().hex}"


@pytest.fixture
async def raw(url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A raw async client on ``url`` with both function libraries loaded."""
    from flowfabric_worker.backend.library import FFW, FLOWFABRIC, library_text

    client = open_redis(url)
    await client.execute_command("FUNCTION", "LOAD", "REPLACE", library_text(FLOWFABRIC))
    await client.execute_command("FUNCTION", "LOAD", "REPLACE", library_text(FFW))
    try:
        yield client
    finally:
        await client.aclose()
