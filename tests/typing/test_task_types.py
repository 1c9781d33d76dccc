"""The public types catch mistakes: mypy --strict over task_types.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

HERE = Path(__file__).parent


@pytest.mark.slow
def test_task_types_hold_under_mypy_strict() -> None:
    stdout, stderr, status = api.run([
        "--strict", "--warn-unused-ignores", "--show-error-codes", "--no-error-summary",
        "--cache-dir", str(HERE.parents[1] / ".mypy_cache"), str(HERE / "task_types.py")])
    assert status == 0, stdout + stderr
