"""The test run's own server choice (``tests/servers.py``, ``tests/conftest.py``):
the session server is the kind ``FLOWFABRIC_TEST_SERVER`` names, a missing
binary fails under CI instead of skipping, and ``--server-only`` keeps exactly
the tests that reach a real server (the Valkey pass of ``scripts/test``)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from servers import kind_of, require, server_kind

ROOT = Path(__file__).resolve().parents[1]


def test_session_server_is_the_requested_kind(redis_server_url: str) -> None:
    client = redis.Redis.from_url(redis_server_url)
    try:
        info = client.info("server")
    finally:
        client.close()
    assert kind_of(info) == server_kind()


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_server_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="valkey-server is not installed"):
        require(None, "valkey-server")


@pytest.mark.parametrize("ci", [None, "false"])
def test_a_missing_server_skips_outside_ci(monkeypatch: pytest.MonkeyPatch,
                                           ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception):
        require(None, "redis-server")


def _collected(*args: str) -> set[str]:
    files = ["tests/backend/test_multiplex.py", "tests/backend/test_cli_library_load.py",
             "tests/lua/test_library_loads.py"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *args, *files], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return {line.split("::", 1)[1] for line in done.stdout.splitlines() if "::" in line}


def test_server_only_keeps_the_tests_that_reach_a_server() -> None:
    # Two collections side by side: each is mostly interpreter and plugin start-up.
    with ThreadPoolExecutor(max_workers=2) as pool:
        everything_f, kept_f = pool.submit(_collected), pool.submit(_collected, "--server-only")
        everything, kept = everything_f.result(), kept_f.result()
    assert kept < everything
    dropped = everything - kept
    # memory:// variants and tests that talk to no server ran in the first pass
    assert "test_version_answers_34[memory]" in dropped
    assert "test_no_server_fails_as_not_sent" in dropped
    assert "test_library_text_starts_with_shebang" in dropped
    # the session server (as the url parameter or the fixture) and own servers stay
    assert "test_version_answers_34[redis]" in kept
    assert "test_shares_one_connection" in kept
    assert "test_printed_library_loads_with_redis_cli" in kept
