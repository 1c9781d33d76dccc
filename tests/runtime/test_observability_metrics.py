"""Prometheus metrics (issue 14 item 2): a live worker's /metrics after real
tasks succeed, fail and retry; queue depths from the server's indexes; the
no-op recorder by default."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import anyio
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from worker_support import lane_worker, run_until

from flowfabric_worker import Client, Retry, TaskContext, task
from flowfabric_worker.engine.queue_depth import read_queue_depths
from flowfabric_worker.observability import metrics
from flowfabric_worker.observability.prometheus import PrometheusRecorder, QueueDepthGauges

pytestmark = pytest.mark.anyio

LANE = "obs-metrics"


@task(name="met.ok", lane=LANE)
async def ok(n: int) -> int:
    await anyio.sleep(0.3)  # long enough for a lease renewal (ttl 0.6 s)
    return n


@task(name="met.flaky", lane=LANE, retry=Retry(max_attempts=2, initial=0.05))
async def flaky(ctx: TaskContext) -> str:
    if ctx.attempt_index == 0:
        raise ValueError("once")
    return "ok"


@task(name="met.broken", lane=LANE)
async def broken() -> None:
    raise ValueError("boom")


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """A Prometheus recorder on a private registry, installed for the test."""
    reg = CollectorRegistry()
    previous = metrics.install(PrometheusRecorder(reg))
    try:
        yield reg
    finally:
        metrics.install(previous)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all((k, x) in ls for k, x in labels.items()))


async def test_scrape_a_live_worker(url: str, registry: CollectorRegistry) -> None:
    server, _thread = start_http_server(0, "127.0.0.1", registry)
    port = server.server_port
    try:
        await _scrape_live(url, port)
    finally:
        server.shutdown()
        server.server_close()


async def _scrape_live(url: str, port: int) -> None:
    async with Client.connect(url) as client:
        runs = [await ok.submit(client, 1), await ok.submit(client, 2),
                await flaky.submit(client), await broken.submit(client)]
        worker = lane_worker(client, [ok, flaky, broken], LANE, lease_ttl=0.6)
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        async def done() -> bool:
            if not all([await r.state() in ("completed", "failed") for r in runs]):
                return False
            seen.update(await anyio.to_thread.run_sync(_scrape, port))  # while it runs
            return True

        await run_until(worker, done, limit=60)
    s = seen
    assert _value(s, "ffw_executions_completed_total", task="met.ok") == 2
    assert _value(s, "ffw_executions_completed_total", task="met.flaky") == 1
    assert _value(s, "ffw_executions_retried_total", task="met.flaky",
                  category="handler_error") == 1
    assert _value(s, "ffw_executions_failed_total", task="met.broken",
                  category="handler_error") == 1
    assert _value(s, "ffw_executions_claimed_total", task="met.flaky") == 2
    assert _value(s, "ffw_run_duration_seconds_count", task="met.ok") == 2
    assert _value(s, "ffw_run_duration_seconds_sum", task="met.ok") >= 0.5
    assert _value(s, "ffw_claim_to_start_seconds_count") == 5
    # FlowFabric 0.15 names and labels.
    assert _value(s, "ff_attempt_outcome_total", lane=LANE, outcome="ok") == 3
    assert _value(s, "ff_attempt_outcome_total", lane=LANE, outcome="retry") == 1
    assert _value(s, "ff_attempt_outcome_total", lane=LANE, outcome="error") == 1
    assert _value(s, "ff_claim_from_grant_duration_seconds_count", lane=LANE) == 5
    assert _value(s, "ff_lease_renewal_total", outcome="ok") >= 1
    assert _value(s, "ff_scanner_cycle_total") > 0
    assert ("ffw_worker_in_flight", ()) in s and ("ffw_worker_free_slots", ()) in s
    assert _value(s, "ffw_redis_round_trip_seconds_count") >= 1


async def test_disabled_by_default() -> None:
    assert isinstance(metrics.recorder(), metrics.NullRecorder)
    assert not metrics.recorder().enabled


async def test_queue_depths_from_the_indexes(url: str) -> None:
    async with Client.connect(url) as client:
        for n in range(3):
            await ok.submit(client, n)
        await ok.submit(client, 9, delay=3600)
        depths = await read_queue_depths(client.backend)
    assert depths.depths[(LANE, "eligible")] == 3
    assert depths.depths[(LANE, "delayed")] == 1
    assert depths.depths[(LANE, "active")] == 0
    assert depths.cancel_backlog == 0
    reg = CollectorRegistry()
    gauges = QueueDepthGauges(reg)
    gauges.update(depths.depths, depths.cancel_backlog)
    assert reg.get_sample_value("ffw_queue_depth", {"lane": LANE, "state": "eligible"}) == 3
    gauges.update({}, 2)  # the lane went away: its series go too
    assert reg.get_sample_value("ffw_queue_depth", {"lane": LANE, "state": "eligible"}) is None
    assert reg.get_sample_value("ff_cancel_backlog_depth") == 2
