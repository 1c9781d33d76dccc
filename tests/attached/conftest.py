"""A stand-in FlowFabric deployment for the attached-mode tests.

A FlowFabric server owns the ``flowfabric`` library (it loads it; an attached
SDK only checks its version) and runs the engine scanners itself. Here the
library is loaded the way that server does (``FUNCTION LOAD``, the 0.15 text
this SDK bundles) and the engine roles run in a task of their own
(``attached_support.server_roles``), so every worker of a test runs ``--no-scanners``, as
docs/operations.md tells attached workers to.

The real server only: attached mode means a server someone else loaded. The
Valkey pass of ``scripts/test`` runs this folder too (FlowFabric deployments
run Valkey).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.library import FLOWFABRIC, library_text
from flowfabric_worker.client.keystore import init_secrets


@pytest.fixture
def deployment_url(redis_server_url: str) -> str:
    """The session server, emptied, with ``flowfabric`` loaded as a
    FlowFabric server loads it (and no ``ffw``: the attached SDK adds it)."""
    client = redis.Redis.from_url(redis_server_url)
    try:
        client.flushall()
        client.execute_command("FUNCTION", "FLUSH")
        client.execute_command("FUNCTION", "LOAD", library_text(FLOWFABRIC))
    finally:
        client.close()
    return redis_server_url


@pytest.fixture
async def attached(deployment_url: str) -> AsyncIterator[Backend]:
    """A backend attached to the deployment, whose keystore is seeded (the
    FlowFabric server seeds ``k1`` at boot)."""
    b = await Backend.open(deployment_url, mode="attached")
    await init_secrets(b, kid="k1")
    try:
        yield b
    finally:
        await b.close()
