"""The handle of one submitted execution: its state, result, output and
controls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Generic, Protocol, TypeVar, cast, get_args

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.result_listener import (
    DoneListener,
    Wakeup,
    read_state_and_result,
)
from flowfabric_worker.client.signal_sender import SignalOutcome, WaitpointInfo
from flowfabric_worker.client.stream_reader import frames as stream_frames
from flowfabric_worker.errors import (
    InvalidInput,
    ResultTimeout,
    StateNotReached,
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TaskSkipped,
)
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.keys import DONE_CHANNEL
from flowfabric_worker.protocol.records import ExecCore, PublicState
from flowfabric_worker.protocol.streams import Frame, ReadSummary, Summary
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.spec import TaskSpec

# Result waits are woken by pub/sub; polling only covers a lost notification
# (slow) or a failed subscription (fast), doubling up to the cap.
_POLL_SUBSCRIBED = 0.5


R = TypeVar("R")


class HandleOwner(Protocol):
    """What a handle needs of the client that made it.

    :class:`~flowfabric_worker.client.client.Client` satisfies it; handles
    are typed against this protocol so that they never import the client
    module (the client imports them).
    """

    @property
    def backend(self) -> Backend: ...

    @property
    def namespace(self) -> str: ...

    @property
    def limits(self) -> Limits: ...

    def done_listener(self) -> DoneListener: ...

    async def signal(
        self, execution_id: str, name: str, payload: Any = None, *,
        idempotency_key: str | None = None, source: str = "client",
        source_type: str = "external_api", category: str = "callback",
        correlation_id: str = "", waitpoint: str | None = None, token: str | None = None,
    ) -> SignalOutcome: ...

    async def pending_waitpoints(self, execution_id: str) -> list[WaitpointInfo]: ...

    async def cancel(self, execution_id: str, reason: str = "") -> str: ...



_POLL_UNSUBSCRIBED = 0.05


_POLL_CAP = 2.0


# Non-final transitions are not published: wait_for polls, quickly at first.
_POLL_STATE = 0.02


_POLL_STATE_CAP = 1.0


_WAITABLE = frozenset(get_args(PublicState)) | {"terminal"}


class RunHandle(Generic[R]):
    """A submitted execution: read its state, wait for its result, cancel it."""

    def __init__(self, client: HandleOwner, execution_id: ExecutionId,
                 task: TaskSpec[Any, R] | None = None, *, duplicate: bool = False) -> None:
        self.client = client
        self.id: ExecutionId = execution_id
        self.task = task
        self.duplicate = duplicate

    def __repr__(self) -> str:
        return f"<RunHandle {self.id}>"

    async def info(self) -> ExecCore:
        """The execution's ``exec_core`` record."""
        core = await self.client.backend.get_exec_core(self.id)
        if core is None:
            raise InvalidInput(f"execution {self.id} does not exist")
        return core

    async def state(self) -> str:
        """The public state (``waiting``, ``active``, ``completed``, ``failed``, ...)."""
        return str((await self.info()).public_state)

    async def failure_category(self, core: ExecCore) -> str:
        if core.current_attempt_index is None:
            return ""
        attempt = await self.client.backend.get_attempt(self.id, core.current_attempt_index)
        return attempt.failure_category if attempt is not None else ""

    def _decode(self, data: bytes | None) -> R:
        """A completed execution's stored result, typed."""
        if self.task is not None:
            return self.task.decode_result(data or b"")
        return cast(R, codec.loads(data) if data else None)

    async def _outcome(self, core: ExecCore, read: tuple[bytes | None] | None = None) -> R:
        """``read``: the result as already read with ``core``."""
        state = str(core.public_state)
        if state == "completed":
            data = read[0] if read is not None else await self.client.backend.get_result(self.id)
            return self._decode(data)
        reason = core.failure_reason or core.cancellation_reason
        category = await self.failure_category(core)
        message = f"execution {self.id} {state}" + (f": {reason}" if reason else "")
        kinds: dict[str, type[TaskFailed | TaskCancelled | TaskExpired | TaskSkipped]] = {
            "failed": TaskFailed, "cancelled": TaskCancelled,
            "expired": TaskExpired, "skipped": TaskSkipped,
        }
        raise kinds.get(state, TaskFailed)(
            message, execution_id=self.id, reason=reason, category=category
        )

    async def result(self, timeout: float | None = None) -> R:  # noqa: ASYNC109
        """Wait for the execution to end and return its typed result.

        Raises TaskFailed / TaskCancelled / TaskExpired / TaskSkipped when it
        ended without a result, ResultTimeout when ``timeout`` passes first.
        The worker publishes on ``ffw:done:<eid>``; the subscription (on the
        client's one shared listener connection) is confirmed *before*
        exec_core is re-read, so a completion between the two is not missed.
        A slow poll covers lost notifications; a fast one stands in when the
        subscription fails. A message that carries the result (a completion
        with a small result) ends the wait without a read.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = self.client.done_listener()
        channel = DONE_CHANNEL.format(eid=self.id)
        done = Wakeup()
        try:
            poll = 0.0
            while True:
                if not listener.watching(channel):
                    subscribed = await listener.subscribe(channel, done)
                    poll = poll or (_POLL_SUBSCRIBED if subscribed else _POLL_UNSUBSCRIBED)
                done.clear()  # set from here on means: look again
                done.carried = None
                phase, state, data = await read_state_and_result(self.client.backend,
                                                                 self.id)
                if phase is None:
                    raise InvalidInput(f"execution {self.id} does not exist")
                if phase == "terminal":
                    if state == "completed":  # written with its result, by one call
                        return self._decode(data)
                    return await self._outcome(await self.info(), (data,))
                wait = poll
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ResultTimeout(f"execution {self.id} not finished after {timeout}s")
                    wait = min(wait, left)
                with anyio.move_on_after(wait):
                    await done.wait()
                if done.carried is not None:
                    return self._decode(done.carried)
                poll = min(poll * 2, _POLL_CAP)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.release(channel, done)

    async def wait_for(self, *states: str, timeout: float | None = None) -> str:  # noqa: ASYNC109
        """Wait until the execution's public state is one of ``states`` and
        return the state reached; ``"terminal"`` stands for any final state.

        ``await run.wait_for("suspended", timeout=10)`` returns once the task
        waits for a signal. Raises :class:`StateNotReached` when the execution
        ends in another state (it can never get there any more) and
        :class:`ResultTimeout` when ``timeout`` passes first.

        Only the end of an execution is published (``ffw:done:<eid>``, which
        wakes this wait at once); other transitions are seen by polling
        ``exec_core`` with backoff (20 ms doubling to 1 s).
        """
        unknown = set(states) - _WAITABLE
        if not states or unknown:
            raise InvalidInput(f"wait_for needs public states out of {sorted(_WAITABLE)}; "
                               f"got {sorted(unknown) or 'none'}")
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = self.client.done_listener()
        channel = DONE_CHANNEL.format(eid=self.id)
        done = asyncio.Event()
        poll = _POLL_STATE
        try:
            while True:
                if not listener.watching(channel):
                    await listener.subscribe(channel, done)
                done.clear()
                core = await self.info()
                state = str(core.public_state)
                if state in states or ("terminal" in states and core.is_terminal):
                    return state
                if core.is_terminal:
                    raise StateNotReached(
                        f"execution {self.id} ended {state} without reaching "
                        f"{' or '.join(states)}", execution_id=self.id, state=state)
                wait = poll
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ResultTimeout(f"execution {self.id} still {state} after "
                                            f"{timeout}s (waiting for {' or '.join(states)})")
                    wait = min(wait, left)
                with anyio.move_on_after(wait):
                    await done.wait()
                poll = min(poll * 2, _POLL_STATE_CAP)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.release(channel, done)

    async def signal(self, name: str, payload: Any = None, **kwargs: Any) -> SignalOutcome:
        """``client.signal(run.id, name, payload, ...)`` for this execution."""
        return await self.client.signal(self.id, name, payload, **kwargs)

    async def waitpoints(self) -> list[WaitpointInfo]:
        """``client.pending_waitpoints(run.id)`` for this execution."""
        return await self.client.pending_waitpoints(self.id)

    async def cancel(self, reason: str = "") -> str:
        """Cancel the execution; returns the lifecycle phase it had before."""
        return await self.client.cancel(self.id, reason)

    def frames(self, attempt: int | None = None, after: str | None = None, follow: bool = True,
               include_best_effort: bool = True) -> AsyncIterator[Frame]:
        """Frames of an attempt (default: the current one) after entry id
        ``after``: replays what is stored, then — with ``follow`` — tails live
        until the stream is closed (the attempt ended). Reconnects resume from
        the last id, so no frame is seen twice. See docs/streams.md.
        """
        return stream_frames(self.client.backend, self.id, attempt=attempt, after=after,
                             follow=follow, include_best_effort=include_best_effort)

    async def summary(self, attempt: int | None = None) -> Summary:
        """The attempt's rolling summary document (``version == 0``: none yet)."""
        if attempt is None:
            attempt = (await self.info()).current_attempt_index or 0
        return await self.client.backend.read_summary(
            ReadSummary(eid=self.id, attempt_index=attempt))
