"""The operator's story in a real browser: headless Chromium (Debian's
``chromium``, driven by Playwright; never a downloaded browser) against a
``flowfabric-worker run --dashboard-port`` process on the test server.

A missing browser fails in CI (``CI=true``) and skips elsewhere. Screenshots
of each page land in ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from conftest import EXAMPLES, HERE
from dash_tasks import deploy, fan, nap, release

from flowfabric_worker.client.client import Client

pytestmark = [pytest.mark.anyio, pytest.mark.redis_only]

CHROMIUM = os.environ.get("FLOWFABRIC_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = HERE.parent.parent / "test-artifacts" / "dashboard"
TOKEN = "browser-test-token"
#: Generous: seven helpers share two cores. Conditions are awaited, never slept on.
WAIT_MS = 30_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _unavailable(why: str) -> None:
    if _in_ci():
        pytest.fail(f"{why}: CI must run the browser tests (scripts/_setup.sh ensure_chromium)")
    pytest.skip(why)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed (the dev extra)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def worker_process(redis_server_url: str, tmp_path: Path) -> Iterator[str]:
    """A worker for dash_tasks serving the dashboard; yields its base URL."""
    import redis

    r = redis.Redis.from_url(redis_server_url)
    r.flushall()
    r.close()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(EXAMPLES)]),
           "FLOWFABRIC_DASHBOARD_AUTH_TOKEN": TOKEN}
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowfabric_worker", "run", "dash_tasks", "--url",
             redis_server_url, "--concurrency", "32", "--lease-ttl", "5",
             "--scanner-interval-scale", "0.05", "--grace-period", "5",
             "--dashboard-port", str(port)],
            cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with httpx.Client() as http:
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the worker's dashboard never answered:\n"
                                         + log.read_text()[-3000:])
                try:
                    http.get(base + "/login", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # a graceful drain stops the dashboard too
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the worker did not stop on SIGTERM:\n"
                                 + log.read_text()[-3000:]) from None


async def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _token_index(page: Any) -> int:
    found = re.findall(r"token-(\d+)", await page.locator("#output").inner_text())
    return max((int(x) for x in found), default=-1)


async def test_an_operator_approves_watches_and_cancels(
        browser: Any, worker_process: str, redis_server_url: str) -> None:
    from playwright.async_api import expect

    base = worker_process
    expect.set_options(timeout=WAIT_MS)
    async with Client.connect(redis_server_url, init_secrets=True) as client:
        flow_run = await release.submit(client, "api", "1.4.0")
        other = await deploy.submit(client, "web", "2.0.1", 120.0)
        await other.wait_for("suspended", timeout=30)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))  # a script error fails the test

        # Log in (the worker's dashboard has an auth token).
        await page.goto(base + "/")
        await expect(page).to_have_url(re.compile(r"/login\?next=/$"))
        await _shot(page, "login")
        await page.fill("input[name=token]", TOKEN)
        await page.click("button:has-text('Log in')")
        await expect(page.locator("h1")).to_contain_text("Overview")

        # The overview counts the two waiting deploys (live).
        lanes = page.locator("#lanes tbody tr", has_text="deploys")
        await expect(lanes.locator("td").nth(4)).to_have_text("2")
        await expect(page.locator("#workers tbody")).to_contain_text("deploys")
        await _shot(page, "overview")

        # Find the flow's waiting deploy and approve it from its page.
        await page.click("nav >> text=Executions")
        await page.select_option("select[name=state]", "suspended")
        await page.click("text=Filter")
        row = page.locator("#executions tbody tr", has=page.locator("a", has_text="flow"))
        await expect(row).to_have_count(1)
        await _shot(page, "executions")
        await row.locator("td a").first.click()
        await expect(page.locator("#state")).to_have_text("suspended")
        await expect(page.locator("#output")).to_contain_text("waiting for approval")
        await _shot(page, "execution-waiting")
        await page.fill("textarea[name=payload]", "{not json")
        await page.click("text=Send signal")
        await expect(page.locator("#payload-error")).to_contain_text("Not valid JSON")
        await page.fill("textarea[name=payload]",
                        '{"approved": true, "note": "lgtm from the browser"}')
        await page.click("text=Send signal")
        await expect(page.locator(".flash")).to_have_text("signal 'approve': resumed")
        await expect(page.locator("#state")).to_have_text("completed")

        # The next task of the flow streams release notes: watch them arrive.
        await page.click("p.ids a[href*='/flows/']")
        announce_node = page.locator("a[data-member]", has_text="dash.announce")
        await expect(announce_node).to_have_count(1)  # drawn in as the flow adds it
        await announce_node.click()
        await expect(page.locator("#output")).to_contain_text("token-")
        seen = await _token_index(page)
        await expect(page.locator("#output")).to_contain_text(f"token-{seen + 1}")
        # Untrusted output stays text: no element made, no script run.
        await expect(page.locator("#output")).to_contain_text('<img src=x onerror=')
        assert await page.locator("#output img").count() == 0
        assert await page.evaluate("window.__ffw_xss") is None
        await _shot(page, "execution-streaming")
        assert "deployed api-1.4.0.tar.gz" in await flow_run.result(timeout=60)

        # A flow of 20 children fills in; one of them is cancelled from its page.
        seconds = [0.3 + 0.15 * i for i in range(19)] + [120.0]
        fan_run = await fan.submit(client, 20, seconds)
        with anyio.fail_after(30):  # the flow exists once the first child is spawned
            while not (flow_id := (await fan_run.info()).flow_id):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await page.goto(f"{base}/flows/{flow_id}")
        nodes = page.locator("a[data-member]", has_text="dash.nap")
        await expect(nodes).to_have_count(20)
        done = page.locator("a[data-member] rect.state-completed")
        first = await done.count()
        assert first < 19  # still filling in when the page opened
        await expect(done).to_have_count(19, timeout=60_000)
        await _shot(page, "flow")
        await page.locator("a[data-member]", has=page.locator("rect.state-active"),
                           has_text="dash.nap").click()
        await page.click("text=Cancel execution")
        await expect(page.locator(".flash")).to_contain_text("cancelled (was active)")
        await expect(page.locator("#state")).to_have_text("cancelled")
        await _shot(page, "execution-cancelled")
        assert await fan_run.result(timeout=30) == 19
        await page.goto(f"{base}/flows/{flow_id}")
        await expect(page.locator("a[data-member] rect.state-cancelled")).to_have_count(1)

        from flowfabric_worker.tasks.budgets import Limit

        await client.create_budget({"tokens": Limit(hard=1000, soft=800)})
        await client.create_quota(rate=10, per=60, concurrency=2)
        await page.goto(base + "/budgets")
        await expect(page.locator("#budgets tbody tr")).to_have_count(1)
        await _shot(page, "budgets")

        # Schedules: their plans and next runs; one paused from the page.
        await client.schedule(nap, 1, 0.1, cron="0 9 * * MON-FRI", tz="Europe/Paris",
                              schedule_id="weekday-nap", overlap="skip")
        often = await client.schedule(nap, 2, 0.1, every=1, schedule_id="often-nap")
        with anyio.fail_after(30):  # the worker's scheduler role fires it
            while not (await often.info()).last_execution_id:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await page.click("nav >> text=Schedules")
        await expect(page.locator("#schedules tbody tr.schedule")).to_have_count(2)
        await expect(page.locator("#schedule-often-nap a.last-execution")).to_have_count(1)
        await page.locator("#schedule-often-nap button", has_text="Pause").click()
        await expect(page.locator(".flash")).to_have_text(
            "schedule 'often-nap' paused (was active)")
        await expect(page.locator("#schedule-often-nap")).to_contain_text("paused")
        await _shot(page, "schedules")
        await other.cancel()
        await page.goto(base + "/")
        await expect(page.locator("#t-completed")).not_to_have_text("0")
        await _shot(page, "overview-after")
        assert errors == []



