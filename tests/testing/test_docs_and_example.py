"""docs/testing.md's snippets and examples/test_approval_workflow.py run as
a user runs them: pytest in a fresh process (the plugin loaded from its
entry point), on memory:// and with --ffw-redis-url on a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "testing.md").read_text(),
                      re.DOTALL)


def _pytest(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path), *args],
        capture_output=True, text=True, timeout=300, cwd=path.parent, env=dict(os.environ))


def _flushed(url: str) -> str:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    return url


def test_the_guide_has_its_snippets() -> None:
    assert len(SNIPPETS) == 4


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_each_snippet_of_the_guide_runs(index: int, tmp_path: Path) -> None:
    path = tmp_path / f"test_snippet_{index}.py"
    path.write_text(SNIPPETS[index])
    if "def test_" in SNIPPETS[index]:
        proc = _pytest(path)
    else:
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                              timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize(("marker", "expected"), [
    ("def test_approval_times_out_after_a_day", "1 passed, 2 skipped"),
    ("def test_a_mistyped_approval_is_refused_when_sent", "2 passed")])
def test_the_ffw_env_snippets_on_a_real_server(tmp_path: Path, redis_server_url: str,
                                               marker: str, expected: str) -> None:
    (snippet,) = [s for s in SNIPPETS if marker in s]
    path = tmp_path / "test_workflow.py"
    path.write_text(snippet)
    proc = _pytest(path, "--ffw-redis-url", _flushed(redis_server_url), "-rs")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert expected in proc.stdout


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_the_example_test_file(backend: str, request: pytest.FixtureRequest) -> None:
    args = ([] if backend == "memory"
            else ["--ffw-redis-url", _flushed(request.getfixturevalue("redis_server_url"))])
    proc = _pytest(ROOT / "examples" / "test_approval_workflow.py", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ("4 passed" if backend == "memory" else "2 passed, 2 skipped") in proc.stdout
