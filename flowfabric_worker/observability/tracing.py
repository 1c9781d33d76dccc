"""OpenTelemetry spans (the optional ``flowfabric-worker[otel]`` extra).

Written against the OpenTelemetry API only, imported on first use: without
the package nothing is imported and every helper here is a no-op; with the
package but no SDK tracer provider configured (the API's default proxy),
the same. The application configures the SDK and its exporter as usual
(``trace.set_tracer_provider(...)``); :func:`use_provider` gives one to this
SDK alone (tests, embedders that keep the global free).

The trace context travels inside the execution, as the W3C ``traceparent``
in the reserved tag :data:`TRACE_TAG` (55 characters; the SDK's ``ffw.*``
tags do not count against the tag limits): a submit, a child spawn or a
flow member records the span current at that moment, and the worker's
attempt span continues that trace. Attributes follow the OpenTelemetry
messaging semantic conventions (``messaging.*``) where they fit.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["MESSAGING_SYSTEM", "TRACE_TAG", "AttemptSpan", "attempt_span", "current_traceparent",
           "enabled", "producer_span", "span", "use_provider", "with_traceparent"]

#: The execution tag carrying the submitter's span context.
TRACE_TAG = "ffw.traceparent"
#: ``messaging.system`` of every span.
MESSAGING_SYSTEM = "flowfabric"

_INSTRUMENTATION = "flowfabric_worker"

#: The imported API (None: not tried yet, False: not installed).
_api: Any = None
_provider: TracerProvider | None = None
_tracers: dict[int, Tracer] = {}


def _otel() -> Any:
    global _api
    if _api is None:
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            _api = False
        else:
            _api = (trace, TraceContextTextMapPropagator())
    return _api


def use_provider(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` instead of OpenTelemetry's global one (None:
    back to the global)."""
    global _provider
    _provider = provider
    _tracers.clear()


_UNKNOWN = object()


@functools.cache
def _env_provider() -> bool:
    """Whether the environment names a tracer provider (read once: the API
    loads it on its first get_tracer_provider(), which we then call)."""
    return "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _tracer() -> Tracer | None:
    """The tracer to use, None when tracing is off (no API, or the API's
    default provider: nothing would be recorded)."""
    api = _otel()
    if not api:
        return None
    trace = api[0]
    provider = _provider
    if provider is None:
        # While no global provider is set, the API's get_tracer_provider()
        # looks the OTEL_PYTHON_TRACER_PROVIDER variable up in os.environ on
        # every call: ~2% of a no-op task's worker CPU, once per attempt and
        # once per submit. Unset and not named by the environment means off;
        # anything else (or an API without that global) asks the API.
        if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _env_provider():
            return None
        provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    tracer = _tracers.get(id(provider))
    if tracer is None:
        tracer = _tracers[id(provider)] = provider.get_tracer(_INSTRUMENTATION)
    return tracer


def enabled() -> bool:
    """Whether spans are recorded now."""
    return _tracer() is not None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, None when there is none
    (or tracing is off)."""
    if _tracer() is None:
        return None
    trace, propagator = _otel()
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagator.inject(carrier)
    return carrier.get("traceparent")


def with_traceparent(tags_json: str) -> str:
    """``tags_json`` (a JSON object, or "" for none) with :data:`TRACE_TAG`
    set to the current span's context; unchanged when there is none."""
    parent = current_traceparent()
    if parent is None:
        return tags_json
    pair = f'"{TRACE_TAG}":"{parent}"'
    if not tags_json or tags_json == "{}":
        return "{" + pair + "}"
    return tags_json[:-1] + "," + pair + "}"


def _attributes(operation: str, lane: str, task: str, execution_id: str = "",
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": operation,
        "messaging.destination.name": lane,
        "ffw.task": task,
    }
    if execution_id:
        attrs["messaging.message.id"] = execution_id
    if extra:
        attrs.update(extra)
    return attrs


def producer_span(operation: str, task: str, lane: str, *, execution_id: str = "",
                  count: int = 0) -> Any:
    """A PRODUCER span made current for a block: ``operation`` ``send`` (a
    submit or a batch of ``count``) or ``create`` (one child or flow member).
    Executions created inside carry its context. A null context when off."""
    tracer = _tracer()
    if tracer is None:
        return nullcontext()
    kind = _otel()[0].SpanKind.PRODUCER
    extra = {"messaging.batch.message_count": count} if count > 1 else None
    return tracer.start_as_current_span(
        f"{operation} {task}", kind=kind,
        attributes=_attributes(operation, lane, task, execution_id, extra))


def span(name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """An INTERNAL span made current for a block (``ctx.step``); a null
    context when off."""
    tracer = _tracer()
    if tracer is None:
        return nullcontext()
    return tracer.start_as_current_span(name, attributes=dict(attributes or {}))


class AttemptSpan:
    """The span of one attempt: events and its final status. A null one
    (tracing off) ignores every call."""

    __slots__ = ("_span",)

    def __init__(self, span: Span | None) -> None:
        self._span = span

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        if self._span is not None:
            self._span.add_event(name, dict(attributes or {}))

    def set(self, key: str, value: Any) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def failed(self, message: str, exc: BaseException | None = None) -> None:
        if self._span is None:
            return
        status = _otel()[0].Status(_otel()[0].StatusCode.ERROR, message[:200])
        self._span.set_status(status)
        if exc is not None:
            self._span.record_exception(exc)


_NO_SPAN = AttemptSpan(None)


def attempt_span(task: str, lane: str, execution_id: str, tags: Mapping[str, str],
                 attributes: Mapping[str, Any]) -> AbstractContextManager[AttemptSpan]:
    """The CONSUMER span of one attempt, current while the block runs (the
    body's steps and children nest under it), continuing the trace in the
    execution's :data:`TRACE_TAG`. Off: a null context yielding a null span."""
    tracer = _tracer()
    if tracer is None:
        return nullcontext(_NO_SPAN)
    return _attempt(tracer, task, lane, execution_id, tags, attributes)


@contextmanager
def _attempt(tracer: Tracer, task: str, lane: str, execution_id: str,
             tags: Mapping[str, str], attributes: Mapping[str, Any]) -> Iterator[AttemptSpan]:
    trace, propagator = _otel()
    parent_tp = tags.get(TRACE_TAG)
    parent = propagator.extract({"traceparent": parent_tp}) if parent_tp else None
    started = tracer.start_span(
        f"process {task}", context=parent, kind=trace.SpanKind.CONSUMER,
        attributes=_attributes("process", lane, task, execution_id, attributes))
    # Cancellation (a drain, a lost lease) is not a task error: the status
    # is set by the caller from the attempt's outcome.
    with trace.use_span(started, end_on_exit=True, record_exception=False,
                        set_status_on_exception=False):
        yield AttemptSpan(started)
