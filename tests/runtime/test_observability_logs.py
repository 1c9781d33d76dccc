"""Lifecycle log lines (issue 14 item 1): one JSON line per event kind, with
the execution's structured fields, on memory:// and the real server."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator

import anyio
import pytest
from observability_support import JsonLines, json_lines
from worker_support import lane_worker, run_until

from flowfabric_worker import Client, Permanent, Retry, TaskContext, task
from flowfabric_worker.errors import ConfigurationError, SignalTimeout
from flowfabric_worker.observability.logs import parse_levels, setup_logging

pytestmark = pytest.mark.anyio

LANE = "obs-logs"
_started = anyio.Event()


@task(name="obs.ok", lane=LANE)
async def ok(ctx: TaskContext, n: int) -> int:
    ctx.log.info("working on %d", n)
    return n + 1


@task(name="obs.flaky", lane=LANE, retry=Retry(max_attempts=2, initial=0.1))
async def flaky(ctx: TaskContext) -> str:
    if ctx.attempt_index == 0:
        raise ValueError("first try fails")
    return "second"


@task(name="obs.broken", lane=LANE)
async def broken() -> None:
    raise ValueError("boom")


@task(name="obs.refused", lane=LANE)
async def refused() -> None:
    raise Permanent("not allowed")


@task(name="obs.waiter", lane=LANE)
async def waiter(ctx: TaskContext) -> str:
    try:
        await ctx.wait_for_signal("never", timeout=0.3, on_timeout="auto_resume")
    except SignalTimeout:
        return "timed out"
    return "signalled"


@task(name="obs.stuck", lane=LANE)
async def stuck() -> None:
    _started.set()
    await anyio.sleep(60)


TASKS = [ok, flaky, broken, refused, waiter, stuck]


@pytest.fixture
async def client(keyed_client: Client) -> AsyncIterator[Client]:
    yield keyed_client


def _fields(line: dict[str, object], task_name: str) -> None:
    assert line["task"] == task_name and line["lane"] == LANE
    assert isinstance(line["execution_id"], str) and isinstance(line["attempt"], int)


async def test_one_json_line_per_lifecycle_event(client: Client) -> None:
    with json_lines() as lines:
        runs = {t.name: await t.submit(client) for t in (flaky, broken, refused, waiter)}
        runs["obs.ok"] = await ok.submit(client, 1)
        worker = lane_worker(client, TASKS, LANE)

        async def all_done() -> bool:
            return all([await r.state() in ("completed", "failed")
                        for r in runs.values()])

        await run_until(worker, all_done, limit=60)
    assert len(lines.events("worker_started")) == 1
    started = lines.events("worker_started")[0]
    assert started["lanes"] == [LANE] and started["concurrency"] == 16
    assert started["mode"] == "standalone"
    assert len(lines.events("worker_stopped")) == 1

    ok_id = runs["obs.ok"].id
    (line,) = lines.events("started", execution_id=ok_id)
    _fields(line, "obs.ok")
    assert line["attempt_type"] == "initial"
    (done,) = lines.events("succeeded", execution_id=ok_id)
    assert done["duration_s"] >= 0 and done["message"].startswith("succeeded in ")
    # ctx.log carries the same fields.
    (own,) = [r for r in lines.records() if r["message"] == "working on 1"]
    assert own["execution_id"] == ok_id and own["attempt"] == 0
    _fields(own, "obs.ok")

    (retry,) = lines.events("retry_scheduled", execution_id=runs["obs.flaky"].id)
    _fields(retry, "obs.flaky")
    assert retry["message"].startswith("retrying in 0.1 s, attempt 2 of 2")
    assert retry["category"] == "handler_error" and retry["next_attempt"] == 2
    assert lines.events("succeeded", execution_id=runs["obs.flaky"].id)

    (failed,) = lines.events("failed", execution_id=runs["obs.broken"].id)
    assert failed["category"] == "handler_error"
    assert failed["error"] == "ValueError: boom"
    assert 'raise ValueError("boom")' in failed["traceback"]  # the handler's own error
    (refusal,) = lines.events("failed", execution_id=runs["obs.refused"].id)
    assert refusal["category"] == "permanent" and "traceback" not in refusal

    waiter_id = runs["obs.waiter"].id
    assert len(lines.events("suspended", execution_id=waiter_id)) == 1
    (resumed,) = lines.events("resumed", execution_id=waiter_id)
    assert resumed["attempt_type"] == "resumed"


async def test_hand_back_and_lease_loss_lines(client: Client) -> None:
    global _started
    _started = anyio.Event()
    with json_lines() as lines:
        worker = lane_worker(client, TASKS, LANE, grace_period=0.0)
        run = await stuck.submit(client)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(30):
                await _started.wait()
            worker.stop()
        (back,) = lines.events("handed_back", execution_id=run.id)
        _fields(back, "obs.stuck")

        # The execution is cancelled under a running attempt: the renewal is
        # refused and the attempt stops with a lease_lost line.
        _started = anyio.Event()
        worker = lane_worker(client, TASKS, LANE, lease_ttl=0.6)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(30):
                await _started.wait()
            await client.cancel(run.id, reason="operator")
            with anyio.fail_after(30):
                while not lines.events("lease_lost", execution_id=run.id):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            worker.stop()
    (lost,) = lines.events("lease_lost", execution_id=run.id)
    assert lost["level"] == "WARNING" and lost["reason"]
    _fields(lost, "obs.stuck")


def test_text_format_levels_and_library_noise() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("redis").level)
    try:
        setup_logging("DEBUG", "text", "child=2", out)
        assert logging.getLogger("redis").level == logging.WARNING  # not asked for
        logging.getLogger("redis").debug("redis noise")
        logging.getLogger("flowfabric_worker.lifecycle").info(
            "succeeded in 0.1 s", extra={"event": "succeeded", "task": "a b"})
        text = out.getvalue()
        assert "redis noise" not in text
        assert "child=2 level=INFO" in text and 'event=succeeded task="a b"' in text
        setup_logging("INFO,redis=DEBUG", "json", "child=2", out)
        assert logging.getLogger("redis").level == logging.DEBUG
        logging.getLogger("redis").debug("asked for")
        last = json.loads(out.getvalue().splitlines()[-1])
        assert last["message"] == "asked for" and last["child"] == "2"
        assert len(root.handlers) == 1  # replaced, not stacked
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("redis").setLevel(saved[2])
    assert parse_levels("debug,x=info") == ("DEBUG", {"x": "INFO"})
    with pytest.raises(ConfigurationError):
        parse_levels("LOUD")


def test_capture_helper_reads_lines() -> None:
    lines = JsonLines()
    lines.stream.write('{"event": "x", "a": 1}\n')
    assert lines.events("x", a=1)
