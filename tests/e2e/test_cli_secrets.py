"""``flowfabric-worker secrets init | rotate | list`` as real subprocesses against
the real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis


@pytest.fixture
def real_url(redis_server_url: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server_url)
    client.flushall()
    client.close()
    yield redis_server_url


def cli(*args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowfabric_worker.cli", *args, "--url", url],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )


def stored_secrets(url: str) -> set[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        values = {v for i in range(256)
                  for k, v in client.hgetall(f"ff:sec:{{fp:{i}}}:waitpoint_hmac").items()
                  if k.startswith("secret:")}
    finally:
        client.close()
    return values


def test_secrets_init_rotate_list(real_url: str, tmp_path: Any) -> None:
    listed = cli("secrets", "list", url=real_url)
    assert listed.returncode == 1 and "NOT INITIALISED" in listed.stdout
    assert "secrets init" in listed.stderr

    first = cli("secrets", "init", url=real_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("initialised: kid k1 installed on 256 partitions")
    again = cli("secrets", "init", url=real_url)
    assert again.returncode == 0 and again.stdout.startswith("already initialised")
    (k1_secret,) = stored_secrets(real_url)

    listed = cli("secrets", "list", url=real_url)
    assert listed.returncode == 0, listed.stderr
    assert "partitions 0-255 (256): current k1; no kid in grace" in listed.stdout
    assert k1_secret not in listed.stdout + listed.stderr

    rotated = cli("secrets", "rotate", "--grace", "3600", url=real_url)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("rotated k1 -> k2 on 256 partitions")
    for out in (first, again, rotated):
        assert not (stored_secrets(real_url) & set(out.stdout.split() + out.stderr.split()))

    reuse = cli("secrets", "rotate", "--kid", "k1", url=real_url)
    assert reuse.returncode == 2 and "k1" in reuse.stderr and "already known" in reuse.stderr

    doc = json.loads(cli("secrets", "list", "--json", url=real_url).stdout)
    assert doc["consistent"] is True and doc["partitions"] == 256
    (group,) = doc["groups"]
    assert group["current_kid"] == "k2" and [g["kid"] for g in group["in_grace"]] == ["k1"]
    assert "secrets" not in group

    shown = cli("secrets", "list", "--show-secrets", url=real_url)
    assert shown.returncode == 0
    assert f"secret k1: {k1_secret}" in shown.stdout
    assert len(stored_secrets(real_url)) == 2

    # A secret supplied from a file (never on the command line).
    secret_file = tmp_path / "s.hex"
    secret_file.write_text("cd" * 32 + "\n")
    out = cli("secrets", "rotate", "--grace", "0", "--kid", "blue",
              "--secret-file", str(secret_file), url=real_url)
    assert out.returncode == 0, out.stderr
    assert "cd" * 32 in stored_secrets(real_url)
    assert "cd" * 32 not in out.stdout


def test_init_takes_the_secret_from_the_environment(real_url: str) -> None:
    from flowfabric_worker.settings import Settings

    secret = "5a" * 32
    out = cli("secrets", "init", url=real_url, FLOWFABRIC_WAITPOINT_HMAC_SECRET=secret)
    assert out.returncode == 0, out.stderr
    assert stored_secrets(real_url) == {secret} and secret not in out.stdout + out.stderr
    # A rotation does not re-use it (a fresh random secret instead).
    out = cli("secrets", "rotate", url=real_url, FLOWFABRIC_WAITPOINT_HMAC_SECRET=secret)
    assert out.returncode == 0 and len(stored_secrets(real_url)) == 2
    shown = Settings.load({}, {"FLOWFABRIC_WAITPOINT_HMAC_SECRET": secret})
    assert secret not in repr(shown) and secret not in str(shown)
