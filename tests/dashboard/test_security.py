"""Auth, CSRF, escaping and secrets: what the dashboard refuses and never shows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import BASE, Dash, path_of
from dash_tasks import announce, deploy

from flowfabric_worker.protocol.ids import execution_tag
from flowfabric_worker.protocol.keys import PartitionKeys

pytestmark = pytest.mark.anyio
TOKEN = "s3cret-token"


async def test_without_the_token_nothing_is_served(dash_auth: Dash) -> None:
    run = await deploy.submit(dash_auth.client, "api", "1.0", 60.0)
    await run.wait_for("suspended", timeout=20)
    http = dash_auth.http
    page = await http.get("/executions", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/executions"
    for path in ("/", path_of(run.id), "/events/overview", path_of(run.id) + "/events",
                 "/budgets", "/flows/00000000-0000-4000-8000-000000000000/graph.svg"):
        assert (await http.get(path)).status_code == 401, path
    refused = await http.post(path_of(run.id) + "/signal", data={"name": "approve"})
    assert refused.status_code == 401
    # A wrong bearer token or a forged cookie is no better.
    assert (await http.get("/", headers={"Authorization": "Bearer nope"})).status_code == 401
    http.cookies.set("ffw_session", TOKEN)
    assert (await http.get("/")).status_code == 401
    assert await run.state() == "suspended"
    assert (await http.get("/static/dashboard.css")).status_code == 200  # nothing secret


async def test_bearer_header_and_login_form(dash_auth: Dash) -> None:
    http = dash_auth.http
    assert (await http.get("/", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200
    form = await http.get("/login?next=/budgets")
    assert form.status_code == 200
    csrf = http.cookies["ffw_csrf"]
    bad = await http.post("/login", data={"csrf": csrf, "token": "guess", "next": "/budgets"})
    assert bad.status_code == 401 and "ffw_session" not in http.cookies
    # An outside target is dropped: no open redirect through the login page.
    evil = await http.post("/login", data={"csrf": csrf, "token": TOKEN,
                                           "next": "//evil.example/x"})
    assert evil.status_code == 303 and evil.headers["location"] == "/"
    session = http.cookies["ffw_session"]
    assert TOKEN not in session  # the cookie is derived from the token, not the token
    assert "httponly" in evil.headers["set-cookie"].lower()
    assert "samesite=strict" in evil.headers["set-cookie"].lower()
    assert (await http.get("/budgets")).status_code == 200


async def test_actions_need_the_csrf_token_and_the_same_origin(dash: Dash) -> None:
    run = await deploy.submit(dash.client, "api", "1.0", 60.0)
    await run.wait_for("suspended", timeout=20)
    http = dash.http
    good = await dash.csrf(path_of(run.id))
    target = path_of(run.id) + "/signal"
    payload = {"name": "approve", "payload": json.dumps({"approved": True})}
    assert (await http.post(target, data=payload)).status_code == 403
    assert (await http.post(target, data={**payload, "csrf": "x.y"})).status_code == 403
    # A well-formed token signed by another app instance does not pass either.
    forged = good.split(".")[0] + "." + "0" * 64
    http.cookies.set("ffw_csrf", forged)
    assert (await http.post(target, data={**payload, "csrf": forged})).status_code == 403
    http.cookies.set("ffw_csrf", good)
    cross = await http.post(target, data={**payload, "csrf": good},
                            headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    assert (await http.post(path_of(run.id) + "/cancel", data={})).status_code == 403
    assert await run.state() == "suspended"
    (wp,) = await run.waitpoints()
    assert wp.signal_count == 0
    ok = await http.post(target, data={**payload, "csrf": good}, headers={"Origin": BASE})
    assert ok.status_code == 303
    assert "deployed" in await run.result(timeout=20)


async def test_pages_never_show_waitpoint_tokens_or_keystore_secrets(dash: Dash) -> None:
    run = await deploy.submit(dash.client, "api", "1.0", 60.0)
    await run.wait_for("suspended", timeout=20)
    (wp,) = await run.waitpoints()
    token = str.__str__(await dash.client.backend.waitpoint_token(execution_tag(run.id),
                                                                  wp.waitpoint_id))
    keystore = (await dash.client.backend.get_keystores([execution_tag(run.id)]))[0]
    secrets = [v for k, v in keystore.items() if k.startswith("secret") and len(v) >= 32]
    assert token and secrets
    pages = [await dash.http.get(p) for p in ("/", "/executions", path_of(run.id), "/budgets")]
    body = "".join(p.text for p in pages)
    assert token not in body and token.split(":")[-1] not in body
    for s in secrets:
        assert s not in body
    assert PartitionKeys(execution_tag(run.id)).hmac_keystore not in body


async def test_outputs_and_names_are_escaped(dash: Dash) -> None:
    run = await announce.submit(dash.client, "<b>web</b>", 1, 0.0)
    await run.result(timeout=20)
    page = (await dash.http.get(path_of(run.id))).text
    assert "<b>web</b>" not in page
    csp = (await dash.http.get("/")).headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    events = (await dash.http.get(path_of(run.id) + "/events")).text
    # In the stream as JSON text; the page's script inserts it with textContent.
    assert '<img src=x onerror=\\"window.__ffw_xss=1\\">' in events


def test_importing_the_package_does_not_import_the_web_stack() -> None:
    code = ("import sys, flowfabric_worker, flowfabric_worker.cli.parser; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('starlette', 'uvicorn', 'jinja2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_command_refuses_the_network_without_a_token() -> None:
    from flowfabric_worker.cli.parser import main

    argv = ["dashboard", "--url", "redis://127.0.0.1:1", "--host", "0.0.0.0", "--port", "0"]
    assert main(argv) == 2
    assert main(["dashboard", "--url", "memory://", "--port", "0"]) == 2
