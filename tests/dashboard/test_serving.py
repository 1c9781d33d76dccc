"""Serving: mounted under a prefix in someone else's app, and the standalone
``flowfabric-worker dashboard`` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest
from conftest import BASE, Dash, path_of
from dash_tasks import deploy
from starlette.applications import Starlette
from starlette.routing import Mount

from flowfabric_worker.dashboard import app

pytestmark = pytest.mark.anyio


async def test_mounted_under_a_prefix_every_link_keeps_it(dash: Dash) -> None:
    run = await deploy.submit(dash.client, "api", "1.0", 60.0)
    await run.wait_for("suspended", timeout=20)
    outer = Starlette(routes=[Mount("/ops/ffw", app=app(dash.client))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer),
                                 base_url=BASE) as http:
        page = await http.get("/ops/ffw" + path_of(run.id))
        assert page.status_code == 200
        assert 'href="/ops/ffw/static/dashboard.css"' in page.text
        assert f'action="/ops/ffw{path_of(run.id)}/signal"' in page.text
        assert (await http.get("/ops/ffw/static/dashboard.js")).status_code == 200
        assert "path=/ops/ffw/" in page.headers["set-cookie"].lower()
        csrf = http.cookies["ffw_csrf"]
        sent = await http.post("/ops/ffw" + path_of(run.id) + "/signal",
                               data={"csrf": csrf, "name": "approve",
                                     "payload": '{"approved": true}'})
        assert sent.headers["location"] == "/ops/ffw" + path_of(run.id)
    assert "deployed" in await run.result(timeout=20)


@pytest.mark.redis_only
def test_the_dashboard_command_serves_until_sigterm(redis_server_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowfabric_worker", "dashboard", "--url", redis_server_url,
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "FLOWFABRIC_DASHBOARD_AUTH_TOKEN": "tok"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "dashboard on http://127.0.0.1:PORT/"
        assert line.startswith("dashboard on http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else "")
        url = line.split()[-1]
        with httpx.Client() as http:
            assert http.get(url).status_code == 401  # the token from the environment
            assert http.get(url, headers={"Authorization": "Bearer tok"}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
