"""Fixtures shared by the runtime tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from signal_support import seed_keystore

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client


@pytest.fixture
async def backend(url: str) -> AsyncIterator[Backend]:
    """A backend on ``url`` (the real server, flushed, or a new memory://)."""
    b = await Backend.open(url)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def keyed_backend(url: str) -> AsyncIterator[Backend]:
    """A backend on ``url`` whose waitpoint keystore is installed, so tasks
    can suspend (the signal and durable-step tests)."""
    b = await Backend.open(url)
    await seed_keystore(b)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def keyed_client(url: str) -> AsyncIterator[Client]:
    """A client on ``url`` whose waitpoint keystore is installed."""
    async with Client.connect(url) as c:
        await seed_keystore(c.backend)
        yield c
