"""A task that finishes while Redis is down completes once the server is
back, without running again (issue 12, hole 8).

The terminal call is retried for as long as the lease is known to be ours
(the confirmed expiry on the context), not for a fixed second and a half:
an outage shorter than the lease costs a delay, never a second run.
"""

from __future__ import annotations

import logging

import anyio
import pytest
from private_redis import private_redis
from worker_support import attempts, core

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.errors import TransportError
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

RUNS: list[int] = []
started: anyio.Event | None = None
finish: anyio.Event | None = None


@task(name="outage.finish_late", lane="outage")
async def finish_late(n: int) -> int:
    RUNS.append(n)
    assert started is not None and finish is not None
    started.set()
    await finish.wait()
    return 2 * n


async def test_task_finishing_during_outage_completes_once(
        caplog: pytest.LogCaptureFixture) -> None:
    global started, finish
    RUNS.clear()
    started, finish = anyio.Event(), anyio.Event()
    caplog.set_level(logging.WARNING, logger="flowfabric_worker.executor")
    with private_redis() as server:
        async with Client.connect(server.url) as client:
            handle = await finish_late.submit(client, 21)
            eid = str(handle.id)
            # A 10 s lease; the outage lasts 5 s, well within it.
            worker = Worker(client, [finish_late], lease_ttl=10.0, grace_period=1.0,
                            scanner_interval_scale=0.05)
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                with anyio.fail_after(10):
                    await started.wait()
                server.stop()
                finish.set()  # the body returns: its complete meets a dead server
                await anyio.sleep(5.0)
                server.start()
                with anyio.fail_after(30):
                    while (await core(client.backend, eid)).get(  # noqa: ASYNC110
                            "public_state") != "completed":
                        await anyio.sleep(0.05)
                # Long enough for an expiry + reclaim to show, had one happened.
                await anyio.sleep(1.0)
                worker.stop()
            fields = await core(client.backend, eid)
            tries = await attempts(client.backend, eid)
            assert await handle.result(timeout=5) == 42
    assert RUNS == [21]
    assert fields["total_attempt_count"] == "1", fields
    assert len(tries) == 1
    retry_lines = [r for r in caplog.records
                   if "redis unreachable, retrying complete of" in r.getMessage()]
    assert retry_lines, "the outage was not logged"
    # At most one WARNING line every few seconds: not one per attempt.
    assert len(retry_lines) <= 4, [r.getMessage() for r in retry_lines]


@task(name="outage.plain", lane="outage")
async def plain(n: int) -> int:
    return n


async def test_resent_terminal_calls_are_success(url: str) -> None:
    """What a retried terminal call meets when its first copy landed and only
    the reply was lost: ``ff_complete_execution`` / ``ff_fail_execution``
    answer ``execution_not_active`` with our own epoch and attempt, which the
    engine binding reads as success (spec 05 §4.4), never as a failure."""
    from flowfabric_worker.worker.backend_port import BackendEngine

    async with Client.connect(url) as client:
        engine = BackendEngine(client.backend)
        done = await plain.submit(client, 1)
        lease = await engine.claim(str(done.id), "outage", "w1", "w1-i", frozenset(),
                                   30_000, 5000)
        await engine.complete(lease, plain.encode_result(1))
        await engine.complete(lease, plain.encode_result(1))  # the resend
        assert (await core(client.backend, str(done.id)))["public_state"] == "completed"

        failed = await plain.submit(client, 2)
        lease = await engine.claim(str(failed.id), "outage", "w1", "w1-i", frozenset(),
                                   30_000, 5000)
        first = await engine.fail(lease, "boom", "error", "")
        again = await engine.fail(lease, "boom", "error", "")
        assert first.retry_scheduled is again.retry_scheduled is False
        assert (await core(client.backend, str(failed.id)))["public_state"] == "failed"


class _DeadEngine:
    """An engine whose server never answers."""

    publishes_done = True
    calls = 0

    async def complete(self, lease: object, result: bytes) -> None:
        self.calls += 1
        raise TransportError("connection refused", sent=False)


async def test_terminal_retry_gives_up_once_the_lease_has_expired() -> None:
    """Retried until the confirmed expiry, not past it: from then on another
    worker may reclaim, and the result is no longer ours to write."""
    import time

    from flowfabric_worker.context.attempt import Claimed
    from flowfabric_worker.context.task_context import TaskContext
    from flowfabric_worker.worker.executor import Executor

    engine = _DeadEngine()
    executor = Executor(engine, {}, 3000)  # type: ignore[arg-type]
    lease = Claimed("e1", "default", 0, "A0", "L1", 1, 0, execution_kind="job")
    ctx = TaskContext(execution_id="e1", attempt_index=0, attempt_type="initial",
                      lane="default", tags={})
    ctx.confirm_lease(time.monotonic(), 3.0)
    executor.contexts["e1"] = ctx
    started = time.monotonic()
    with pytest.raises(TransportError):
        await executor._terminal(lease, "complete", b"1")
    took = time.monotonic() - started
    # The lease's 3 s, not a fixed count of tries (which gave up after 1.5 s).
    assert 2.9 <= took <= 3.6, took
    assert engine.calls >= 5
