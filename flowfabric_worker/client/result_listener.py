"""One pub/sub connection per client for every result waiter.

Workers ``PUBLISH ffw:done:<eid>`` after each terminal (or hand-back) call.
Opening a pub/sub connection per ``RunHandle.result()`` costs a connection
set-up and a SUBSCRIBE round trip per wait; instead every waiter of a client
registers here and one reader task dispatches the notifications.

A message is either the bare execution id (look: read the state) or
:data:`CARRIED_PREFIX` followed by the stored result of a *completed*
execution, which the waiter takes without a read (issue 18). The worker's
publish script builds the second form from the server's state in the same
atomic step, so it says exactly what a read at that moment would have said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.records import ExecCore

log = logging.getLogger("flowfabric_worker.client")

#: How long a waiter waits for the server to confirm its subscription before
#: it falls back to polling.
CONFIRM_TIMEOUT = 2.0

#: Starts a done message that carries a completed execution's result (an
#: execution id never starts with ``ffw:``, so older bare-id messages — older
#: SDKs, FlowFabric's own workers — are told apart).
CARRIED_PREFIX = b"ffw:completed:"

#: The largest result carried in a message (bytes); larger ones are read.
#: Every subscriber's connection buffers a copy, and past a few segments the
#: transfer, not the saved round trip, is what the wait costs.
CARRIED_MAX = 16 * 1024


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def read_core_and_result(backend: Backend, eid: str
                               ) -> tuple[ExecCore | None, bytes | None]:
    """What a woken waiter reads: ``exec_core`` and the result, in one round
    trip on the backend's shared connection (issue 18: the result used to be
    a second read after the state). The result GET costs the server next to
    nothing when the execution has not finished. Read in this order, a
    completed core implies its result is there: both are written by one call."""
    k = ExecKeys(eid)
    flat, result = await backend.read_many([["HGETALL", k.core], ["GET", k.result]])
    if not flat:
        return None, None
    core = ExecCore.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
    return core, result


async def read_state_and_result(backend: Backend, eid: str
                                ) -> tuple[str | None, str, bytes | None]:
    """What ``run.result()`` reads before it waits: ``lifecycle_phase``
    (``None``: no such execution), ``public_state`` and the result, in one
    round trip. Two fields, not the whole record: the common answer is "not
    finished yet", and decoding ``exec_core`` then is client CPU spent while
    the worker runs the task on the same machine (issue 18, round trip). A
    ``terminal`` phase with a state other than ``completed`` needs the whole
    record (failure details): the caller reads it then."""
    k = ExecKeys(eid)
    (phase, state), result = await backend.read_many([
        ["HMGET", k.core, "lifecycle_phase", "public_state"], ["GET", k.result]])
    if phase is None:
        return None, "", None
    return _text(phase), _text(state or ""), result


def carried_result(data: object) -> bytes | None:
    """The result a done message carries; ``None`` when it carries none."""
    if isinstance(data, bytes) and data.startswith(CARRIED_PREFIX):
        return data[len(CARRIED_PREFIX):]
    return None


class Wakeup(asyncio.Event):
    """A waiter's event: set by a done message (or a lost connection);
    :attr:`carried` holds the completed result a message carried."""

    def __init__(self) -> None:
        super().__init__()
        self.carried: bytes | None = None


class DoneListener:
    """Dispatches ``ffw:done:*`` messages of one Redis client to waiters.

    A waiter calls :meth:`subscribe` (which returns once the server confirmed
    the subscription, so a state read afterwards cannot miss a completion),
    waits on its event, and calls :meth:`release` when done.
    """

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        # One connection: concurrent first SUBSCRIBEs must not each open one.
        self._lock = asyncio.Lock()
        self._closed = False

    def watching(self, channel: str) -> bool:
        """True when ``channel`` is subscribed and confirmed."""
        ev = self._confirmed.get(channel)
        return ev is not None and ev.is_set()

    async def subscribe(self, channel: str, event: asyncio.Event) -> bool:
        """Register ``event`` for ``channel``; ``True`` once the subscription is
        confirmed, ``False`` if it could not be (the caller then polls)."""
        self._waiters.setdefault(channel, set()).add(event)
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            confirmed = self._confirmed[channel] = asyncio.Event()
            try:
                async with self._lock:
                    if self._pubsub is None:
                        self._pubsub = self._redis.pubsub()
                    await self._pubsub.subscribe(channel)
                    if self._reader is None:
                        self._reader = asyncio.ensure_future(self._read(self._pubsub))
            except Exception as exc:
                log.info("result subscription failed (%s); polling instead", exc)
                if self._confirmed.get(channel) is confirmed:
                    del self._confirmed[channel]
                return False
        with anyio.move_on_after(CONFIRM_TIMEOUT):
            await confirmed.wait()
        return confirmed.is_set()

    async def release(self, channel: str, event: asyncio.Event) -> None:
        """Forget ``event``; the last waiter of a channel unsubscribes it."""
        waiters = self._waiters.get(channel)
        if waiters is None:
            return
        waiters.discard(event)
        if waiters:
            return
        del self._waiters[channel]
        self._confirmed.pop(channel, None)
        if self._pubsub is not None:
            try:
                async with self._lock:
                    await self._pubsub.unsubscribe(channel)
            except Exception as exc:  # the reader notices a broken connection
                log.debug("unsubscribe %s failed: %s", channel, exc)

    async def _read(self, pubsub: Any) -> None:
        try:
            # redis-py may turn a cancellation during a timed read into "no
            # message": the flag ends the loop whatever the read answered.
            while not self._closed:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is None:
                    continue
                channel = _text(msg.get("channel", b""))
                if msg.get("type") == "subscribe":
                    confirmed = self._confirmed.get(channel)
                    if confirmed is not None:
                        confirmed.set()
                elif msg.get("type") == "message":
                    carried = carried_result(msg.get("data"))
                    for event in self._waiters.get(channel, ()):
                        if carried is not None and isinstance(event, Wakeup):
                            event.carried = carried
                        event.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Connection gone: forget every subscription and wake every waiter;
            # each re-reads the state and subscribes again on a new connection.
            log.info("result listener connection lost: %s", exc)
            if self._pubsub is pubsub:
                self._pubsub, self._reader = None, None
            self._confirmed.clear()
            for events in self._waiters.values():
                for event in events:
                    event.set()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def aclose(self) -> None:
        """Stop the reader and close the connection."""
        reader, pubsub = self._reader, self._pubsub
        self._reader = self._pubsub = None
        self._closed = True
        if reader is not None:
            reader.cancel()
            await asyncio.wait([reader], timeout=CONFIRM_TIMEOUT)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
