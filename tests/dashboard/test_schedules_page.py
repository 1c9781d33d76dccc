"""The schedules page and its actions (pause, resume, trigger) through the
ASGI app, on redis-server and memory://."""

from __future__ import annotations

import re

import anyio
import pytest
from conftest import BASE, Dash, flash
from dash_tasks import LANE, nap

from flowfabric_worker.dashboard.schedules import NEXT_RUNS

pytestmark = pytest.mark.anyio


def _row(html: str, sid: str) -> str:
    found = re.search(rf'<tr id="schedule-{re.escape(sid)}".*?</tr>', html, re.S)
    assert found is not None, f"no row for {sid}"
    return found.group(0)


async def test_the_page_lists_plans_policies_and_next_runs(dash: Dash) -> None:
    daily = await dash.client.schedule(nap, 1, 0.0, cron="0 9 * * MON-FRI", tz="Europe/Paris",
                                       schedule_id="daily-nap", overlap="skip", catchup="all")
    await dash.client.schedule(nap, 2, 0.0, every=3600, schedule_id="hourly-nap")
    assert 'href="/schedules"' in (await dash.http.get("/")).text  # the nav link
    page = await dash.http.get("/schedules")
    assert page.status_code == 200
    row = _row(page.text, "daily-nap")
    assert "cron 0 9 * * MON-FRI (Europe/Paris)" in row
    assert "skip / all" in row and ">active<" in row and "dash.nap" in row
    expected = await daily.next_runs(NEXT_RUNS)
    shown = re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC \((\d\d:\d\d) Europe/Paris\)",
                       row)
    assert [s for s, _ in shown] == [t.strftime("%Y-%m-%d %H:%M:%S") for t in expected]
    assert {local for _, local in shown} == {"09:00"}  # the zone's own wall clock
    hourly = _row(page.text, "hourly-nap")
    assert "every 3600 s" in hourly and "allow / skip" in hourly
    assert len(re.findall(r"\d\d:\d\d:\d\d UTC", hourly)) == NEXT_RUNS  # no last run yet


async def test_the_last_fired_run_is_linked_with_its_state(dash: Dash) -> None:
    sched = await dash.client.schedule(nap, 7, 0.0, every=1, schedule_id="often")
    with anyio.fail_after(30):  # the worker's scheduler role fires it
        while not (info := await sched.info()).last_execution_id:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    await sched.pause()  # no more runs while the page is read
    info = await sched.info()
    assert await dash.client.run(info.last_execution_id).result(timeout=20) == 7
    row = _row((await dash.http.get("/schedules")).text, "often")
    part = info.last_execution_id.replace("{", "%7B").replace("}", "%7D").replace(":", "%3A")
    assert f'href="/executions/{part}"' in row
    assert "state-completed" in row
    assert info.last_run is not None
    assert info.last_run.strftime("%Y-%m-%d %H:%M:%S UTC") in row
    assert ">paused<" in row and "Resume" in row and "Pause" not in row


async def test_pause_resume_and_trigger_from_the_page(dash: Dash) -> None:
    sched = await dash.client.schedule(nap, 3, 0.0, cron="0 0 1 1 *", schedule_id="yearly")
    csrf = await dash.csrf("/schedules")
    paused = await dash.http.post("/schedules/yearly/pause", data={"csrf": csrf})
    assert paused.status_code == 303 and paused.headers["location"] == "/schedules"
    assert (await sched.info()).state == "paused"
    page = await dash.http.get("/schedules")
    assert flash(page.text) == "schedule &#39;yearly&#39; paused (was active)"
    assert "next-runs\"><span class=\"muted\">-" in _row(page.text, "yearly")
    resumed = await dash.http.post("/schedules/yearly/resume", data={"csrf": csrf})
    assert resumed.status_code == 303
    assert (await sched.info()).state == "active"
    ran = await dash.http.post("/schedules/yearly/trigger", data={"csrf": csrf})
    assert ran.status_code == 303
    eid = _eid_of(ran.headers["location"])
    assert await dash.client.run(eid).result(timeout=20) == 3
    after = await dash.http.get(ran.headers["location"])
    assert flash(after.text) == "schedule &#39;yearly&#39; triggered: this run"
    assert (await sched.info()).state == "active"  # the plan is untouched


def _eid_of(location: str) -> str:
    from urllib.parse import unquote

    assert location.startswith("/executions/")
    return unquote(location.removeprefix("/executions/"))


async def test_unknown_and_bad_ids_are_refused_and_nothing_is_written(dash: Dash) -> None:
    csrf = await dash.csrf("/schedules")
    for action in ("pause", "resume", "trigger"):
        sent = await dash.http.post(f"/schedules/gone/{action}", data={"csrf": csrf})
        assert sent.status_code == 303
        assert "schedule_not_found" in flash((await dash.http.get("/schedules")).text)
    bad = await dash.http.post("/schedules/bad%20id!/pause", data={"csrf": csrf})
    assert "schedule id must be" in flash((await dash.http.get(bad.headers["location"])).text)
    assert await dash.client.schedules() == []  # a pause or resume never creates one
    assert await dash.client.backend.redis.keys("ffw:sched:*") == []


async def test_schedule_actions_need_the_csrf_token_and_the_same_origin(dash: Dash) -> None:
    sched = await dash.client.schedule(nap, 4, 0.0, cron="0 0 1 1 *", schedule_id="guarded")
    good = await dash.csrf("/schedules")
    http = dash.http
    for action in ("pause", "trigger"):
        target = f"/schedules/guarded/{action}"
        assert (await http.post(target, data={})).status_code == 403
        assert (await http.post(target, data={"csrf": "x.y"})).status_code == 403
        cross = await http.post(target, data={"csrf": good},
                                headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
    await http.post("/schedules/guarded/resume", data={})  # refused too, and a no-op
    assert (await sched.info()).state == "active"
    rows = await dash.http.get("/executions", params={"lane": LANE, "task": "dash.nap"})
    assert "no executions match" in rows.text  # no trigger got through
    ok = await http.post("/schedules/guarded/pause", data={"csrf": good},
                         headers={"Origin": BASE})
    assert ok.status_code == 303
    assert (await sched.info()).state == "paused"
