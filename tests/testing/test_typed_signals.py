"""Typed signals checked at send time (issue 16, item 3): a typed wait
records a JSON Schema beside its waitpoint (ffw_signal_types_set); the
client, the CLI and ``validate_signal_payload`` refuse a payload that does
not match before anything is written, and a name nobody waits for comes
back ``unmatched`` with a warning. On redis and memory://."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator

import msgspec
import pytest
from pydantic import BaseModel

from flowfabric_worker import TaskContext, task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.errors import (
    ContractError,
    InvalidInput,
    PayloadError,
    SignalPayloadError,
    UnmatchedSignalWarning,
)
from flowfabric_worker.protocol.ids import execution_tag
from flowfabric_worker.protocol.signal_types import RecordSignalTypes, signal_types_key
from flowfabric_worker.testing import TestEnvironment

pytestmark = pytest.mark.anyio


class Approval(msgspec.Struct):
    ok: bool
    by: str = ""


class Budget(BaseModel):
    amount: int
    currency: str


@task(name="ts.approve", lane="ts")
async def approve(ctx: TaskContext) -> str:
    answer = await ctx.wait_for_signal("approve", payload_type=Approval)
    return f"ok={answer.payload.ok} by={answer.payload.by}"


@task(name="ts.budget", lane="ts")
async def budget(ctx: TaskContext) -> int:
    answer = await ctx.wait_for_signal(["set", "raise"], payload_type=Budget)
    return answer.payload.amount


@task(name="ts.untyped", lane="ts")
async def untyped(ctx: TaskContext) -> str:
    answer = await ctx.wait_for_signal("go")
    return str(answer.payload)


TASKS = [approve, budget, untyped]


@pytest.fixture
async def env(url: str) -> AsyncIterator[TestEnvironment]:
    async with TestEnvironment.start(TASKS, url=url, time_skipping=False) as e:
        yield e


async def _written(backend: Backend, run: RunHandle[object]) -> tuple[int, int]:
    """(signals recorded on the execution, on its current waitpoint)."""
    core = await backend.get_exec_core(run.id)
    assert core is not None and core.current_waitpoint_id
    wp = await backend.get_waitpoint(execution_tag(run.id), core.current_waitpoint_id)
    assert wp is not None
    (count,) = await backend.read_many([["ZCARD", f"ff:exec:{execution_tag(run.id)}:"
                                                  f"{run.id}:signals"]])
    return int(count), wp.signal_count


async def test_a_mistyped_payload_is_refused_and_nothing_is_written(
        env: TestEnvironment) -> None:
    run = await approve.submit(env.client)
    await env.wait_suspended(run)
    before = await _written(env.client.backend, run)
    with pytest.raises(SignalPayloadError) as caught:
        await env.client.signal(run.id, "approve", {"ok": "maybe?"})
    error = caught.value
    assert isinstance(error, PayloadError) and isinstance(error, InvalidInput)
    assert "$.ok" in str(error) and "'maybe?' is not of type 'boolean'" in str(error)
    assert "Approval" in str(error) and error.problems[0][0] == "$.ok"
    with pytest.raises(SignalPayloadError, match="required property"):
        await env.client.signal(run.id, "approve", {"by": "ana"})
    with pytest.raises(SignalPayloadError):
        await env.client.signal(run.id, "approve")               # no payload at all
    assert await _written(env.client.backend, run) == before == (0, 0)
    assert await run.state() == "suspended"

    sent = await env.client.signal(run.id, "approve", Approval(ok=True, by="ana"))
    assert sent.status == "resumed"
    assert await run.result(timeout=60) == "ok=True by=ana"


async def test_pydantic_types_and_several_names(env: TestEnvironment) -> None:
    run = await budget.submit(env.client)
    await env.wait_suspended(run)
    check = await env.client.validate_signal_payload(run.id, "raise",
                                                     {"amount": 5, "currency": "EUR"})
    assert (check.waited_for, check.payload_type) == (True, "Budget")
    assert check.expected_names == ["set", "raise"] and check.schema is not None
    with pytest.raises(SignalPayloadError, match=r"\$\.amount"):
        await env.client.validate_signal_payload(run.id, "set", {"amount": "five",
                                                                 "currency": "EUR"})
    with pytest.raises(SignalPayloadError, match=r"\$\.amount"):
        await env.client.signal(run.id, "set", {"amount": "five", "currency": "EUR"})
    assert await _written(env.client.backend, run) == (0, 0)
    assert (await env.client.signal(run.id, "set", Budget(amount=9, currency="EUR"))
            ).status == "resumed"
    assert await run.result(timeout=60) == 9


async def test_a_name_nobody_waits_for_is_unmatched_with_a_warning(
        env: TestEnvironment) -> None:
    typed = await approve.submit(env.client)
    plain = await untyped.submit(env.client)
    await env.wait_suspended(typed)
    await env.wait_suspended(plain)
    for run, wanted in ((typed, ["approve"]), (plain, ["go"])):
        check = await env.client.validate_signal_payload(run.id, "aprove", {"x": 1})
        assert (check.waited_for, check.expected_names) == (False, wanted)
        with pytest.warns(UnmatchedSignalWarning, match="aprove"):
            out = await env.client.signal(run.id, "aprove", {"ok": "anything"})
        assert out.status == "unmatched" and not out.resumed
        assert await run.state() == "suspended"
    check = await env.client.validate_signal_payload(plain.id, "go", [1, "two"])
    assert (check.waited_for, check.payload_type, check.schema) == (True, "", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (await env.client.signal(plain.id, "go", [1])).status == "resumed"
    assert await plain.result(timeout=60) == "[1]"


async def test_the_record_is_fenced_checked_and_purged(env: TestEnvironment) -> None:
    run = await approve.submit(env.client)
    await env.wait_suspended(run)
    backend = env.client.backend
    key = signal_types_key(run.id)
    (fields,) = await backend.read_many([["HKEYS", key]])
    core = await backend.get_exec_core(run.id)
    assert core is not None and [f.decode() for f in fields] == [core.current_waitpoint_id]
    for record, code in ((b"not json", "invalid_input"), (b'{"names": []}', "invalid_input"),
                         (b'{"names": [], "type": "x", "schema": {}}', "stale_lease")):
        with pytest.raises(ContractError) as caught:
            await backend.call(RecordSignalTypes(
                eid=run.id, lease_id="someone-else", lease_epoch=1, waitpoint_id="wp-x",
                record=record))
        assert caught.value.code == code
    (fields,) = await backend.read_many([["HKEYS", key]])
    assert len(fields) == 1
    await env.client.signal(run.id, "approve", {"ok": False})
    await run.result(timeout=60)
    await backend.purge_execution(run.id, "ts", 1)
    (exists,) = await backend.read_many([["EXISTS", key]])
    assert exists == 0


@pytest.mark.parametrize("url", ["redis"], indirect=True)
async def test_the_cli_refuses_a_mistyped_payload(env: TestEnvironment, url: str) -> None:
    run = await approve.submit(env.client)
    await env.wait_suspended(run)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowfabric_worker.cli", "signal", run.id,
                               *args, "--url", url], capture_output=True, text=True,
                              timeout=120, env=dict(os.environ))

    refused = cli("approve", "--json", '{"ok":"maybe?"}')
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "$.ok" in refused.stderr and "nothing sent" in refused.stderr
    assert refused.stdout == ""
    unmatched = cli("aprove", "--json", '{"ok": true}')
    assert unmatched.returncode == 3, unmatched.stdout + unmatched.stderr
    assert '"status": "unmatched"' in unmatched.stdout and "aprove" in unmatched.stderr
    assert await run.state() == "suspended"
    resumed = cli("approve", "--json", '{"ok": true, "by": "cli"}')
    assert resumed.returncode == 0, resumed.stderr
    assert await run.result(timeout=60) == "ok=True by=cli"
