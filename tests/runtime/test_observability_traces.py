"""OpenTelemetry traces (issue 14 item 3), with the SDK's in-memory exporter:
the submitter's span is the root of every worker span of a flow with
children, steps nest under their attempt, retries and suspensions are events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from worker_support import lane_worker, run_until

from flowfabric_worker import Client, Retry, TaskContext, flow, task
from flowfabric_worker.observability import tracing
from flowfabric_worker.protocol.keys import ExecKeys

pytestmark = pytest.mark.anyio

LANE = "obs-traces"


@task(name="tr.child", lane=LANE, retry=Retry(max_attempts=2, initial=0.05))
async def child(ctx: TaskContext, n: int) -> int:
    if n == 1 and ctx.attempt_index == 0:
        raise ValueError("retried once")
    return n * 10


@flow(name="tr.parent", lane=LANE)
async def parent(ctx: TaskContext, count: int) -> int:
    base = await ctx.step("lookup", lambda: 1)
    values = await ctx.gather(*(ctx.child(child, i) for i in range(count)))
    return int(base + sum(values))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)


def _parents(finished: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in finished}


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    cur = span
    while cur.parent is not None:
        cur = by_id[cur.parent.span_id]
        names.append(cur.name)
    return names


async def test_flow_with_children_is_one_trace(url: str, spans: InMemorySpanExporter) -> None:
    tracer = TracerProvider()  # a second provider: the test's own root span
    tracer.add_span_processor(SimpleSpanProcessor(spans))
    async with Client.connect(url) as client:
        with tracer.get_tracer("test").start_as_current_span("checkout"):
            run = await parent.submit(client, 2)
        worker = lane_worker(client, [parent, child], LANE)

        async def done() -> bool:
            return await run.state() in ("completed", "failed")

        await run_until(worker, done, limit=60)
        assert await run.result(timeout=5) == 1 + 0 + 10
    finished = spans.get_finished_spans()
    by_id = _parents(finished)
    (root,) = [s for s in finished if s.name == "checkout"]
    assert root.parent is None
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}

    (send,) = [s for s in finished if s.name == "send tr.parent"]
    assert send.kind == SpanKind.PRODUCER and send.parent.span_id == root.context.span_id
    runs = [s for s in finished if s.name == "process tr.parent"]
    assert len(runs) == 2  # suspended while its children ran, then resumed
    assert all(s.parent.span_id == send.context.span_id for s in runs)
    assert all(s.kind == SpanKind.CONSUMER for s in runs)
    attrs = runs[0].attributes
    assert attrs["messaging.system"] == "flowfabric"
    assert attrs["messaging.destination.name"] == LANE
    assert attrs["messaging.message.id"] == run.id
    events = [e.name for s in runs for e in s.events]
    assert "suspended" in events and "resumed" in events

    # One per run: the resumed run replays the journaled step.
    steps = [s for s in finished if s.name == "step lookup"]
    assert {s.parent.span_id for s in steps} == {s.context.span_id for s in runs}

    children = [s for s in finished if s.name == "process tr.child"]
    assert len(children) == 3  # child 1 ran twice
    for s in children:
        assert _ancestors(s, by_id)[:2] == ["create tr.child", "process tr.parent"]
        assert _ancestors(s, by_id)[-1] == "checkout"
    retried = [s for s in children if any(e.name == "retry_scheduled" for e in s.events)]
    assert len(retried) == 1


async def test_off_without_a_provider(url: str) -> None:
    assert not tracing.enabled()
    assert tracing.with_traceparent('{"a":"b"}') == '{"a":"b"}'
    async with Client.connect(url) as client:
        run = await child.submit(client, 3)
        tags = await client.backend.redis.hgetall(ExecKeys(run.id).tags)
    assert b"ffw.traceparent" not in tags


def test_traceparent_tag_is_added(spans: InMemorySpanExporter) -> None:
    with tracing.producer_span("send", "t", "lane"):
        tagged = tracing.with_traceparent('{"a":"b"}')
        empty = tracing.with_traceparent("")
    assert tagged.startswith('{"a":"b","ffw.traceparent":"00-')
    assert empty.startswith('{"ffw.traceparent":"00-') and len(empty) < 90


def test_tracing_off_does_not_ask_the_api_for_its_provider(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider set, none named by the environment: off, without the API's
    get_tracer_provider() (it reads os.environ on every call: ~2% of a no-op
    task's worker CPU, once per attempt and once per submit)."""
    from opentelemetry import trace

    def asked() -> None:
        raise AssertionError("get_tracer_provider() called while tracing is off")

    monkeypatch.setattr(trace, "get_tracer_provider", asked)
    assert not tracing.enabled()
    with tracing.attempt_span("t", "lane", "eid", {}, {}) as span:
        assert span is not None


def test_a_global_provider_set_later_is_used_at_once() -> None:
    """The shortcut above must not hide a provider the application sets
    afterwards (OpenTelemetry allows one per process: a fresh interpreter)."""
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from flowfabric_worker.observability import tracing\n"
        "assert not tracing.enabled()\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "assert tracing.enabled()\n"
        "print('ok')\n")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
