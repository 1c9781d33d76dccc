"""A redis-server private to one test, which the test may stop and restart
on the same port and directory (its AOF brings the data back)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import redis
from servers import redis_binary, server_binary, valkey_binary

__all__ = ["PrivateRedis", "command_calls", "private_redis", "redis_binary", "valkey_binary"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """One redis-server process with AOF in a temporary directory."""

    def __init__(self, binary: str, extra: Sequence[str] = ()) -> None:
        self.binary = binary
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="ffw-private-redis-")
        self.extra = list(extra)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--save", "", "--appendonly", "yes", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: the AOF is flushed and fsynced)."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def cleanup(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_redis(extra: Sequence[str] = (), binary: str | None = None
                  ) -> Iterator[PrivateRedis]:
    """A started :class:`PrivateRedis`: ``binary``, else the run's server kind
    (``FLOWFABRIC_TEST_SERVER``; skipped without it, failed in CI)."""
    server = PrivateRedis(binary or server_binary(), extra)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def command_calls(url: str, command: str) -> int:
    """How many times the server ran ``command`` (``INFO commandstats``)."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    entry = stats.get(f"cmdstat_{command.lower()}")
    return int(entry["calls"]) if entry else 0
