"""Fixtures of the dashboard tests: a client with an in-process worker for
the tasks of ``dash_tasks`` and the dashboard app behind an httpx client
(ASGI transport: the same event loop, no socket)."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

HERE = Path(__file__).parent
EXAMPLES = HERE.parent.parent / "examples"
for p in (str(HERE), str(EXAMPLES)):
    if p not in sys.path:
        sys.path.insert(0, p)

from flowfabric_worker.client.client import Client  # noqa: E402
from flowfabric_worker.dashboard import app  # noqa: E402
from flowfabric_worker.worker.worker import Worker  # noqa: E402

BASE = "http://127.0.0.1"


@dataclass
class Dash:
    client: Client
    http: httpx.AsyncClient
    worker: Worker

    async def csrf(self, path: str = "/") -> str:
        page = await self.http.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if found is None:  # a page without a form still sets the cookie
            return str(self.http.cookies.get("ffw_csrf"))
        return found.group(1)


async def _dash(url: str, token: str | None) -> AsyncIterator[Dash]:
    import dash_tasks

    async with Client.connect(url, init_secrets=True) as client:
        worker = Worker(client, tasks=[dash_tasks.deploy, dash_tasks.announce, dash_tasks.nap,
                                       dash_tasks.fan, dash_tasks.release],
                        lanes=[dash_tasks.LANE], concurrency=8, lease_ttl=5, grace_period=1,
                        scanner_interval_scale=0.05)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            transport = httpx.ASGITransport(app=app(client, auth_token=token))
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
                yield Dash(client, http, worker)
            worker.stop()


@pytest.fixture
async def dash(url: str) -> AsyncIterator[Dash]:
    async for d in _dash(url, None):
        yield d


@pytest.fixture
async def dash_auth(redis_server_url: str) -> AsyncIterator[Dash]:
    import redis

    r = redis.Redis.from_url(redis_server_url)
    r.flushall()
    r.close()
    async for d in _dash(redis_server_url, "s3cret-token"):
        yield d


def path_of(eid: str) -> str:
    from urllib.parse import quote

    return "/executions/" + quote(eid, safe="")


def flash(html: str) -> str:
    found = re.search(r'class="flash[^"]*"[^>]*>([^<]*)<', html)
    return found.group(1) if found else ""
