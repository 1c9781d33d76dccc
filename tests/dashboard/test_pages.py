"""The pages and actions through the ASGI app, on redis-server and memory://."""

from __future__ import annotations

import json
import re

import pytest
from conftest import Dash, flash, path_of
from dash_tasks import Decision, announce, deploy, fan

from flowfabric_worker.errors import FlowFabricError

pytestmark = pytest.mark.anyio


async def test_overview_lists_lanes_and_live_workers(dash: Dash) -> None:
    run = await deploy.submit(dash.client, "api", "1.0", 60.0)
    await run.wait_for("suspended", timeout=20)
    page = await dash.http.get("/")
    assert page.status_code == 200
    assert "deploys" in page.text
    assert dash.worker.instance_id in page.text  # the registry's live worker
    lanes = re.search(r'<table class="grid" id="lanes">.*?</table>', page.text, re.S)
    assert lanes is not None
    cells = re.findall(r"<td>(\d+)</td>", lanes.group(0))
    assert cells[3] == "1"  # one suspended


async def test_approve_from_the_page_resumes_the_waiting_deploy(dash: Dash) -> None:
    run = await deploy.submit(dash.client, "api", "1.4.0", 60.0)
    await run.wait_for("suspended", timeout=20)
    listing = await dash.http.get("/executions", params={"state": "suspended"})
    assert run.id in listing.text
    page = await dash.http.get(path_of(run.id))
    assert 'value="approve"' in page.text  # the awaited signal, offered
    sent = await dash.http.post(path_of(run.id) + "/signal", data={
        "csrf": await dash.csrf(path_of(run.id)), "name": "approve",
        "payload": json.dumps({"approved": True, "note": "lgtm from the page"})})
    assert sent.status_code == 303
    assert await run.result(timeout=20) == \
        "api 1.4.0: deployed api-1.4.0.tar.gz (lgtm from the page)"
    after = await dash.http.get(path_of(run.id))
    assert flash(after.text) == "signal &#39;approve&#39;: resumed"
    assert "lgtm from the page" in after.text  # the received signal, listed
    assert "dashboard" in after.text  # its source


async def test_a_signal_with_bad_json_is_refused_and_nothing_is_sent(dash: Dash) -> None:
    run = await deploy.submit(dash.client, "api", "1.0", 60.0)
    await run.wait_for("suspended", timeout=20)
    sent = await dash.http.post(path_of(run.id) + "/signal", data={
        "csrf": await dash.csrf(path_of(run.id)), "name": "approve", "payload": "{approved: yes"})
    assert sent.status_code == 303
    page = await dash.http.get(path_of(run.id))
    assert "not valid JSON" in flash(page.text)
    assert await run.state() == "suspended"
    (wp,) = await run.waitpoints()
    assert wp.signal_count == 0


async def test_cancel_and_replay_from_the_page(dash: Dash) -> None:
    run = await announce.submit(dash.client, "web", 200, 0.2)
    await run.wait_for("active", timeout=20)
    csrf = await dash.csrf(path_of(run.id))
    done = await dash.http.post(path_of(run.id) + "/cancel", data={"csrf": csrf})
    assert done.status_code == 303
    assert await run.wait_for("terminal", timeout=20) == "cancelled"
    page = await dash.http.get(path_of(run.id))
    assert "cancelled (was active)" in flash(page.text)
    assert 'id="replay-form"' in page.text and 'id="cancel-form"' not in page.text
    again = await dash.http.post(path_of(run.id) + "/replay", data={"csrf": csrf})
    assert again.status_code == 303
    assert await run.wait_for("active", "completed", timeout=20) in ("active", "completed")
    await dash.client.cancel(run.id)


async def test_the_event_stream_replays_history_then_ends(dash: Dash) -> None:
    run = await announce.submit(dash.client, "web", 3, 0.0)
    assert await run.result(timeout=20) == 3
    body = (await dash.http.get(path_of(run.id) + "/events")).text
    frames = [json.loads(line[6:]) for line in body.splitlines()
              if line.startswith("data: ") and '"ts"' in line]
    assert "".join(f["text"] for f in frames).endswith("token-0 token-1 token-2 ")
    assert body.rstrip().endswith('data: {"state":"completed"}')
    # Resuming after the second frame sends the rest, nothing twice.
    ids = re.findall(r"^id: (.+)$", body, re.M)
    rest = (await dash.http.get(path_of(run.id) + "/events",
                                headers={"Last-Event-ID": ids[1]})).text
    assert re.findall(r"^id: (.+)$", rest, re.M) == ids[2:]


async def test_execution_page_shows_attempts_steps_summary_and_result(dash: Dash) -> None:
    run = await deploy.submit(dash.client, "web", "2.0", 60.0)
    await run.wait_for("suspended", timeout=20)
    await dash.client.signal(run.id, "approve", Decision(approved=False, note="no way"))
    with pytest.raises(FlowFabricError):
        await run.result(timeout=20)
    page = (await dash.http.get(path_of(run.id))).text
    assert "rejected: no way" in page  # the failure reason
    assert "<details><summary>traceback</summary>" in page  # folded
    assert "build" in page and "web-2.0.tar.gz" in page  # the ctx.step journal
    assert 'id="replay-form"' in page
    ok = await announce.submit(dash.client, "api", 2, 0.0)
    await ok.result(timeout=20)
    page = (await dash.http.get(path_of(ok.id))).text
    assert "&#34;tokens&#34;: 2" in page or '"tokens": 2' in page.replace("&#34;", '"')


async def test_flow_page_draws_every_member(dash: Dash) -> None:
    run = await fan.submit(dash.client, 5, [0.0] * 5)
    assert await run.result(timeout=30) == 5
    core = await run.info()
    assert core.flow_id
    page = (await dash.http.get(f"/flows/{core.flow_id}")).text
    assert page.count("data-member=") == 6  # the parent and its 5 children
    assert page.count('class="node state-completed"') == 6
    svg = await dash.http.get(f"/flows/{core.flow_id}/graph.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    listing = await dash.http.get("/executions", params={"flow": core.flow_id})
    assert listing.text.count("dash.nap") == 5


async def test_budgets_page_shows_usage_against_limits(dash: Dash) -> None:
    from flowfabric_worker.tasks.budgets import Limit

    budget = await dash.client.create_budget({"tokens": Limit(hard=100, soft=80)})
    quota = await dash.client.create_quota(rate=10, per=60, concurrency=2)
    page = (await dash.http.get("/budgets")).text
    assert budget.id in page and quota.id in page
    assert 'max="100"' in page and "10 per 60 s" in page


async def test_unknown_ids_answer_404_without_a_trace(dash: Dash) -> None:
    for path in ("/executions/nonsense", "/flows/nonsense",
                 "/executions/%7Bfp%3A1%7D%3A00000000-0000-4000-8000-000000000000"):
        page = await dash.http.get(path)
        assert page.status_code == 404
        assert "Traceback" not in page.text


async def test_listing_pages_through_the_indexes(dash: Dash) -> None:
    from dash_tasks import nap

    await dash.client.submit_many(nap, [(i, 0.0) for i in range(55)])
    first = (await dash.http.get("/executions", params={"task": "dash.nap"})).text
    assert first.count("dash.nap</td>") == 50 and 'id="older"' in first
    second = (await dash.http.get("/executions", params={"task": "dash.nap", "page": 2})).text
    assert second.count("dash.nap</td>") == 5 and 'id="older"' not in second


async def test_a_payload_the_waiting_task_cannot_take_is_refused_before_sending(
        dash: Dash) -> None:
    """The client's own check (the schema a typed wait records, issue 16)
    runs for the page's signals too; the refusal is shown, nothing is sent."""
    run = await deploy.submit(dash.client, "api", "1.0", 60.0)
    await run.wait_for("suspended", timeout=20)
    sent = await dash.http.post(path_of(run.id) + "/signal", data={
        "csrf": await dash.csrf(path_of(run.id)), "name": "approve",
        "payload": json.dumps({"approved": "certainly"})})
    assert sent.status_code == 303
    page = await dash.http.get(path_of(run.id))
    assert "not sent" in flash(page.text)
    (wp,) = await run.waitpoints()
    assert wp.signal_count == 0 and await run.state() == "suspended"
