"""Fixtures of the flow-control tests (docs/flow-control.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flowfabric_worker.client.client import Client


@pytest.fixture
async def client(url: str) -> AsyncIterator[Client]:
    """A client on ``url``: the real server (flushed) or a new memory://."""
    async with Client.connect(url) as c:
        yield c
