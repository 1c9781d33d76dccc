"""Shared fixtures: a real server started for the session, and a ``url``
fixture parametrised over that server and ``memory://``.

The session server is ``redis-server`` or ``valkey-server``, as
``FLOWFABRIC_TEST_SERVER=redis|valkey`` says (default ``redis``; see
``tests/servers.py``); ``FLOWFABRIC_TEST_REDIS_URL`` names a running one
instead. A missing binary is a failure in CI (``CI=true``) and a skip of the
real-server half elsewhere.

``--server-only`` keeps only the tests that reach a real server: the second
pass of ``scripts/test`` runs the server-facing parts again on Valkey, and
the ``memory://`` variants and pure tests already ran in the first.
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
from servers import (
    URL_ENV,
    binary_of,
    describe,
    kind_of,
    kind_requested,
    server_binary,
    server_kind,
)

from flowfabric_worker.backend.connection import open_redis


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--server-only", action="store_true",
        help="run only tests that reach a real server (drop memory:// variants "
             "and tests that talk to no server)")


def pytest_configure(config: pytest.Config) -> None:
    server_kind()  # a misspelt FLOWFABRIC_TEST_SERVER is a usage error up front


def pytest_report_header(config: pytest.Config) -> str:
    given = os.environ.get(URL_ENV)
    if given:
        return f"test server: {URL_ENV} (a running server; {server_kind()} expected)"
    kind = server_kind()
    binary = binary_of(kind)
    if binary is None:
        return f"test server: {kind}-server NOT INSTALLED"
    version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    return f"test server: {version} ({binary})"


def _reaches_server(item: pytest.Item) -> bool:
    if item.get_closest_marker("own_server") is not None:
        return True
    params = getattr(item, "callspec", None)
    values = {v for v in params.params.values() if isinstance(v, str)} if params else set()
    if "memory" in values:
        return False
    # "redis" is the parameter of the real server (whatever its kind).
    return "redis_server_url" in getattr(item, "fixturenames", ()) or "redis" in values


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--server-only"):
        return
    keep = [item for item in items if _reaches_server(item)]
    dropped = [item for item in items if not _reaches_server(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_kind(url: str) -> None:
    """The server must be of the kind the run asked for: a Valkey pass that
    silently ran on the CI's redis-server (or a valkey-server on PATH named
    redis-server) would prove nothing."""
    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
    finally:
        client.close()
    if kind_of(info) != server_kind():
        pytest.fail(f"{URL_ENV} is {describe(info)}, but FLOWFABRIC_TEST_SERVER="
                    f"{server_kind()}: unset the URL to start a {server_kind()}-server")


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL of a server (redis-server or valkey-server) private to this session."""
    given = os.environ.get(URL_ENV)
    if given:
        if kind_requested():
            _check_kind(given)
        yield given
        return
    binary = server_binary()
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
        _check_kind(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["redis", "memory"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database: the real server (flushed) or a new memory:// server.

    The real server's parameter is ``"redis"`` whatever its kind (Valkey in
    the second pass), so tests can ask for it with
    ``@pytest.mark.parametrize("url", ["redis"], indirect=True)``."""
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
