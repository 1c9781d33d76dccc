"""Testing tools for task authors (docs/testing.md).

* :class:`TestEnvironment` — an embedded backend, a client and an
  in-process worker, with a virtual clock that skips ahead whenever nothing
  can run (``async with TestEnvironment.start(tasks=[...]) as env``).
* :func:`run_inline` — call a task body directly with a :class:`FakeContext`.
* A pytest plugin (registered as ``flowfabric_worker``): fixtures
  ``ffw_env`` and ``ffw_client``, ``--ffw-redis-url`` to run the same tests
  on a real server.
"""

from flowfabric_worker.testing.clock import VirtualClock
from flowfabric_worker.testing.environment import TestEnvironment
from flowfabric_worker.testing.inline import FakeContext, run_inline

__all__ = ["FakeContext", "TestEnvironment", "VirtualClock", "run_inline"]
