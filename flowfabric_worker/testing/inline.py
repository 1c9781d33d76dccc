"""``run_inline``: call a task body directly, with a fake context, for pure
unit tests (no backend, no worker, no clock).

Example::

    ctx = FakeContext(signals={"approve": Decision(approved=True)})
    assert await run_inline(deploy, "api", ctx=ctx) == "deployed api"
    assert ctx.steps == [("build", "api.tar.gz")]
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio.to_thread

from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.context.thread_bridge import DONE
from flowfabric_worker.context.waits import Signal
from flowfabric_worker.errors import SignalTimeout
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.budgets import UsageReport
from flowfabric_worker.tasks.spec import TaskSpec

__all__ = ["FakeContext", "run_inline"]

R = TypeVar("R")

_ids = itertools.count(1)


class FakeContext(TaskContext):
    """A :class:`TaskContext` that records instead of talking to a backend.

    ``signals`` maps a signal name to the payload ``wait_for_signal`` gets
    (passed through JSON and ``payload_type`` as a real one would be);
    a wait for a name not in it raises
    :class:`~flowfabric_worker.errors.SignalTimeout` when it has a
    ``timeout`` (the path a real wait takes once it passes, with
    ``on_timeout="auto_resume"``) and ``AssertionError`` when it has none.
    ``step_results`` maps a step name to the result to return without calling
    its function (a mocked side effect). What the body did is kept in
    :attr:`steps`, :attr:`slept`, :attr:`waited`, :attr:`frames`,
    :attr:`events`, :attr:`summary_doc`, :attr:`progress_calls` and
    :attr:`usage`. Children (``ctx.child``) need a :class:`TestEnvironment`.
    """

    def __init__(self, *, signals: Mapping[str, Any] | None = None,
                 step_results: Mapping[str, Any] | None = None, execution_id: str = "",
                 attempt_index: int = 0, lane: str = "default",
                 tags: Mapping[str, str] | None = None, task: str = "") -> None:
        super().__init__(execution_id=execution_id or f"inline-{next(_ids)}",
                         attempt_index=attempt_index, attempt_type="initial", lane=lane,
                         tags=tags or {}, task=task)
        self.signals: dict[str, Any] = dict(signals or {})
        self.step_results: dict[str, Any] = dict(step_results or {})
        self.steps: list[tuple[str, Any]] = []
        self.slept: list[float] = []
        self.waited: list[tuple[list[str], float | None]] = []
        self.frames: list[str | bytes] = []
        self.events: list[tuple[Any, Any]] = []
        self.summary_doc: dict[str, Any] = {}
        self.progress_calls: list[tuple[float, str]] = []
        self.usage: dict[str, int] = {}

    # -- output ------------------------------------------------------------------

    def progress(self, pct: float, message: str = "") -> Awaitable[None]:
        self.progress_calls.append((pct, message))
        return _done()

    def stream(self, data: str | bytes, **_options: Any) -> Awaitable[None]:
        self.frames.append(data)
        return _done()

    def event(self, obj_or_name: Any, data: Any = None, *, live: bool = False) -> Awaitable[None]:
        self.events.append((obj_or_name, data))
        return _done()

    def summary(self, patch: Any) -> Awaitable[None]:
        _merge_patch(self.summary_doc, codec.to_builtins(patch))
        return _done()

    # -- durable calls -------------------------------------------------------------

    async def step(self, name: str, fn: Callable[..., Any], *args: Any,
                   result_type: Any = None, **kwargs: Any) -> Any:
        if name in self.step_results:
            value = self.step_results[name]
        else:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        self.steps.append((name, value))
        return value

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def wait_for_signal(
        self, names: str | Sequence[str] | None = None, *, mode: str | int = "any",
        timeout: float | None = None, on_timeout: str = "fail",  # noqa: ASYNC109
        payload_type: Any = None, waitpoint: Any = None, reason: str = "",
    ) -> Any:
        wanted = ([names] if isinstance(names, str) else list(names) if names is not None
                  else list(self.signals)[:1])
        self.waited.append((wanted, timeout))
        given = [n for n in wanted if n in self.signals]
        needed = 1 if mode == "any" else len(wanted) if mode == "all" else int(mode)
        if len(given) < needed:
            if timeout is not None:
                raise SignalTimeout(f"no signal {wanted} given to the FakeContext "
                                    f"(timeout {timeout}s)")
            raise AssertionError(f"the task waits for {wanted} without a timeout: "
                                 "give FakeContext(signals={name: payload})")
        received = [self._signal(n, payload_type) for n in given[:needed]]
        return received[0] if mode == "any" else received

    def _signal(self, name: str, payload_type: Any) -> Signal[Any]:
        # Through JSON, as a sent payload is: a test cannot pass what a
        # client could not send.
        plain = json.loads(json.dumps(codec.to_builtins(self.signals[name])))
        payload = (plain if payload_type is None
                   else codec.convert(plain, payload_type, where=f"signal {name!r}"))
        return Signal(name=name, payload=payload, id=f"fake-signal-{next(_ids)}",
                      source_type="test", source_identity="test",
                      received_at=datetime.now(UTC))

    async def report_usage(self, usage: Mapping[str, int] | None = None, /,
                           **dimensions: int) -> UsageReport:
        deltas = {**(usage or {}), **dimensions}
        for k, v in deltas.items():
            self.usage[k] = self.usage.get(k, 0) + v
        return UsageReport(usage=dict(self.usage))


def _done() -> Awaitable[None]:
    # Already complete: awaited in an async body, ignored in a sync one.
    return DONE


def _merge_patch(doc: dict[str, Any], patch: Any) -> None:
    """RFC 7396 JSON merge patch of ``doc`` in place."""
    if not isinstance(patch, dict):
        return
    for k, v in patch.items():
        if v is None:
            doc.pop(k, None)
        elif isinstance(v, dict) and isinstance(doc.get(k), dict):
            _merge_patch(doc[k], v)
        else:
            doc[k] = v


async def run_inline(task: TaskSpec[Any, R], *args: Any, ctx: FakeContext | None = None,
                     wire: bool = True, **kwargs: Any) -> R:
    """Call ``task``'s function as a worker would, in this process: the
    arguments encoded and decoded as a submission's are (``wire=False``
    passes them as they are), ``ctx`` (default: a new :class:`FakeContext`)
    first when the function takes a context, a sync function in a thread;
    the result encoded and decoded as ``run.result()`` would return it.
    Exceptions propagate as the body raised them."""
    if wire:
        args, kwargs = task.decode_args(task.encode_call(args, kwargs))
    ctx = ctx if ctx is not None else FakeContext(task=task.name)
    call_args = (ctx, *args) if task.wants_context else args
    token = ctx.activate()
    try:
        if task.is_async:
            value = await task.fn(*call_args, **kwargs)
        else:
            value = await anyio.to_thread.run_sync(lambda: task.fn(*call_args, **kwargs))
    finally:
        TaskContext.deactivate(token)
    if not wire:
        return value  # type: ignore[no-any-return]
    return task.decode_result(task.encode_result(value))
