"""``flowfabric-worker library print | redis-cli -x FUNCTION LOAD REPLACE`` into a
fresh, private server (FUNCTION is server-wide, so not the shared one): a
redis-server, or valkey-server with valkey-cli under FLOWFABRIC_TEST_SERVER=valkey."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import server_binary, server_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_server() -> Iterator[int]:
    binary = server_binary()
    server_cli()  # fails (CI) or skips here, not in the middle of the test
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="ffw-cli-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while _cli(port, "PING") != "PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _cli(port: int, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        [server_cli(), "-p", str(port), *args], input=stdin, capture_output=True, check=False
    )
    return done.stdout.decode().strip()


def _printed(library: str) -> bytes:
    exe = Path(sys.executable).with_name("flowfabric-worker")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "flowfabric_worker.cli"]
    return subprocess.run(
        [*command, "library", "print", *([] if library == "flowfabric" else [library])],
        capture_output=True, check=True,
    ).stdout


@pytest.mark.own_server
def test_printed_library_loads_with_redis_cli(private_server: int) -> None:
    port = private_server
    assert _cli(port, "FCALL", "ff_version", "0") != "34"
    reply = _cli(port, "-x", "FUNCTION", "LOAD", "REPLACE", stdin=_printed("flowfabric"))
    assert reply == "flowfabric", reply
    assert _cli(port, "FCALL", "ff_version", "0") == "34"
