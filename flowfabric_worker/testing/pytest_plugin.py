"""The pytest plugin (entry point ``pytest11``: loaded by pytest wherever
flowfabric-worker is installed).

Fixtures (async: run the test with anyio's plugin, ``@pytest.mark.anyio``):

* ``ffw_env`` — a :class:`~flowfabric_worker.testing.TestEnvironment` with
  time skipping on ``memory://``, running the tasks the test names with
  ``@pytest.mark.ffw(tasks=[...])`` (or a module's / conftest's
  ``ffw_tasks`` fixture). ``@pytest.mark.ffw(time_skipping=False)`` runs it
  on real time.
* ``ffw_client`` — ``ffw_env.client``.

``--ffw-redis-url redis://…`` runs every ``ffw_env`` test against that
server instead, on real time: tests that rely on skipping a day should be
marked ``@pytest.mark.ffw(memory_only=True)``, which skips them there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from flowfabric_worker.client.client import Client
from flowfabric_worker.tasks.spec import TaskLike
from flowfabric_worker.testing.environment import TestEnvironment

_OPTION = "--ffw-redis-url"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowfabric_worker")
    group.addoption(
        _OPTION, default=None, metavar="URL",
        help="run the ffw_env fixture's tests against this real server (real time) "
             "instead of memory:// with time skipping")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ffw(tasks=[...], time_skipping=True, memory_only=False, **env_options): "
        "how the ffw_env fixture starts its TestEnvironment")


@pytest.fixture
def ffw_tasks() -> list[TaskLike]:
    """The tasks ``ffw_env`` runs besides the marker's: override it in a
    module or a conftest to give every test there the same tasks."""
    return []


@pytest.fixture
async def ffw_env(request: pytest.FixtureRequest,
                  ffw_tasks: list[TaskLike]) -> AsyncIterator[TestEnvironment]:
    """A running :class:`TestEnvironment` (see the module docstring)."""
    # Every ffw marker applies (module, class, function), the closest one's
    # options winning; their tasks add up.
    options: dict[str, Any] = {}
    tasks = list(ffw_tasks)
    for marker in reversed(list(request.node.iter_markers("ffw"))):
        given = dict(marker.kwargs)
        tasks += [t for t in given.pop("tasks", ()) if t not in tasks]
        options.update(given)
    memory_only = bool(options.pop("memory_only", False))
    url = request.config.getoption(_OPTION)
    if url:
        if memory_only:
            pytest.skip("needs memory:// time skipping (marked memory_only)")
        options["url"] = url
        options["time_skipping"] = False
    async with TestEnvironment.start(tasks, **options) as env:
        yield env


@pytest.fixture
def ffw_client(ffw_env: TestEnvironment) -> Client:
    """The client of ``ffw_env``."""
    return ffw_env.client
