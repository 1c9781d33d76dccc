"""One shared connection that carries every concurrent caller's commands.

redis-py's pool gives each concurrent pipeline its own connection, packs and
parses through several layers and costs one write and one wake-up per call:
about 100 µs of CPU per call, the bulk of a short task's cost in a worker.
Here callers append their packed commands to one outgoing buffer; one loop
callback sends everything queued during a loop iteration in one write (a
writer task takes over to connect and to wait out a full socket buffer), and
replies are handed back in order (Redis answers in the order it receives)
straight from the transport's data callback: hiredis parses them as the
bytes arrive, with no reader task to wake (one event-loop iteration and
redis-py's per-reply read path less per round trip). Concurrent terminal
calls, claims and renewals then share writes and wake-ups, which is what
FlowFabric's Rust worker gets from its multiplexed connection. A call made
while nothing is queued and the socket's buffer is empty is written at once
by its caller instead (a loop iteration sooner and cheaper: what a lone
submission pays).

Only commands that never block belong here (``FCALL``, plain reads and
writes); blocking reads and pub/sub keep their own pool connections.

Failure semantics match the pool path, so :mod:`.transport` classifies them
the same way: a command that was never written fails with a
"connecting to" :class:`~redis.exceptions.ConnectionError` (safe to resend);
one written to a connection that then broke fails with the connection's
error (it may have run); a reply slower than the client's ``socket_timeout``
breaks the connection with :class:`~redis.exceptions.TimeoutError`. Error
replies come back as :class:`~redis.exceptions.ResponseError` values, not
raised, as with ``pipeline.execute(raise_on_error=False)``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

# C packer (hiredis is a dependency): a tenth of the cost of redis-py's own.
from hiredis import Reader as _HiredisReader
from hiredis import pack_command as _hiredis_pack
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowfabric_worker.backend.connection import RESP_VERSION

__all__ = ["Multiplexer"]

#: Unsent bytes past which a flush leaves the write to the writer task,
#: which waits for the transport to drain (back-pressure).
_FLUSH_BUFFER_LIMIT = 64 * 1024

#: What the hiredis reader returns while a reply is incomplete (not False:
#: RESP3 has booleans).
_INCOMPLETE = object()


class _Replies(asyncio.Protocol):
    """Takes over a connected redis-py connection's transport: replies are
    parsed and handed to their callers in the data callback. Flow control
    and the connection's end still reach redis-py's own protocol, so its
    stream writer's ``drain()`` and ``is_closing()`` keep working."""

    def __init__(self, mux: Multiplexer, conn: AbstractConnection,
                 inner: asyncio.Protocol) -> None:
        self._mux = mux
        self._conn = conn
        self._inner = inner
        parser = getattr(conn, "_parser", None)
        kwargs: dict[str, Any] = {
            "protocolError": InvalidResponse, "notEnoughData": _INCOMPLETE,
            # redis-py's mapping of error replies to its exception classes.
            "replyError": getattr(parser, "parse_error", ResponseError),
        }
        encoder = getattr(conn, "encoder", None)
        if encoder is not None and encoder.decode_responses:
            kwargs.update(encoding=encoder.encoding, errors=encoder.encoding_errors)
        self._reader = _HiredisReader(**kwargs)

    def data_received(self, data: bytes) -> None:
        if self._mux._handler is not self:
            return  # a broken connection's late bytes: their callers were failed
        reader, pending = self._reader, self._mux._in_flight
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:  # a protocol error: nothing after it can be trusted
                self._mux._broken(self._conn, exc)
                return
            if reply is _INCOMPLETE:
                return
            if isinstance(reply, RedisConnectionError) or (
                    type(reply) is list and reply and isinstance(reply[0], RedisConnectionError)):
                # As redis-py raises them (LOADING, ...): the connection is done.
                self._mux._broken(self._conn, reply if isinstance(reply, RedisConnectionError)
                                  else reply[0])
                return
            if not pending:
                self._mux._broken(self._conn, RedisConnectionError(
                    f"Error while reading from {self._mux._where()}: a reply nobody asked for"))
                return
            future = pending.popleft()
            if not future.done():
                future.set_result(reply)

    def eof_received(self) -> bool | None:
        self._mux._broken(self._conn, RedisConnectionError(
            f"Error while reading from {self._mux._where()}: connection closed by server."))
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._mux._broken(self._conn, exc or RedisConnectionError(
            f"Error while reading from {self._mux._where()}: connection lost."))
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class Multiplexer:
    """Pipelines the commands of concurrent callers over one connection."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        kwargs = dict(pool.connection_kwargs)
        #: The reply deadline (the client's ``socket_timeout``) is applied per
        #: call here: the connection itself has none, since it also stays
        #: open while nothing is in flight.
        self._timeout: float | None = kwargs.pop("socket_timeout", None) or None
        # RESP2 on its own connection whoever opened the pool: the replies it
        # hands back are decoded as RESP2's (connection.RESP_VERSION).
        self._kwargs = dict(kwargs, socket_timeout=None, protocol=RESP_VERSION)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: AbstractConnection | None = None
        #: Connections opened so far (the first reuses the packing template).
        self._connections = 0
        #: Packed, not yet written, with the futures awaiting their replies.
        self._outgoing: list[bytes] = []
        self._outgoing_futures: list[asyncio.Future[Any]] = []
        #: Written, awaiting replies, oldest first.
        self._in_flight: deque[asyncio.Future[Any]] = deque()
        self._writer_wake: asyncio.Event | None = None
        self._flush_soon = False
        self._writer: asyncio.Task[None] | None = None
        #: The open connection's reply handler; None while there is none.
        self._handler: _Replies | None = None
        self._closed = False

    def usable(self) -> bool:
        """False when called from another event loop than the first one (the
        connection belongs to that loop): the caller uses the pool instead."""
        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._writer_wake = asyncio.Event()
            self._writer = loop.create_task(self._write_loop())
        return loop is self._loop

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` (each a full argument list) and return their
        replies in order, error replies as values. Raises the transport error
        of the first command that got no reply."""
        futures = self.submit(commands)
        try:
            if self._timeout is None:
                return await self._replies(futures)
            return await asyncio.wait_for(self._replies(futures), self._timeout)
        except TimeoutError:
            # As redis-py does on a read timeout: the connection is dropped,
            # and with it every call still waiting on it.
            error = RedisTimeoutError(f"Timeout reading from {self._where()}")
            if self._conn is not None and any(f in self._in_flight for f in futures):
                self._broken(self._conn, error)
            for f in futures:
                f.cancel()
            raise error from None
        except BaseException:
            for f in futures:
                f.cancel()  # the reader drops replies nobody awaits
            raise

    @staticmethod
    async def _replies(futures: list[asyncio.Future[Any]]) -> list[Any]:
        # Replies arrive in order: after the first, the rest are usually
        # already there, so this costs one suspension, not one per reply.
        return [await f for f in futures]

    def submit(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
        """Queue ``commands`` for the next write; one future per reply."""
        if self._closed or self._loop is None or self._writer_wake is None:
            raise RuntimeError("multiplexer not started on this loop (call usable())")
        pack = self._pack
        futures = [self._loop.create_future() for _ in commands]
        writer = self._idle_writer()
        if writer is not None:
            # Nothing queued and nothing unsent: write now rather than wake the
            # writer task, which would cost a loop iteration (a tenth of a
            # single submit's client time) and delay the send by as much.
            packed: list[bytes] = []
            for command in commands:
                packed.extend(pack(command))
            self._in_flight.extend(futures)
            writer.writelines(packed)
            return futures
        for command in commands:
            self._outgoing.extend(pack(command))
        self._outgoing_futures.extend(futures)
        if not self._flush_soon:
            # Everything callers queue until the next loop iteration goes out
            # in one write, from a plain callback (a task switch less than the
            # writer task; it still connects and waits out a full buffer).
            self._flush_soon = True
            self._loop.call_soon(self._flush)
        return futures

    def _flush(self) -> None:
        self._flush_soon = False
        if not self._outgoing_futures:
            return
        conn, handler = self._conn, self._handler
        writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
        if (handler is None or writer is None or writer.is_closing()
                or writer.transport.get_write_buffer_size() > _FLUSH_BUFFER_LIMIT):
            assert self._writer_wake is not None
            self._writer_wake.set()
            return
        data, futures = self._outgoing, self._outgoing_futures
        self._outgoing, self._outgoing_futures = [], []
        self._in_flight.extend(futures)
        writer.writelines(data)

    def _idle_writer(self) -> asyncio.StreamWriter | None:
        """The open connection's stream writer when a write may go out at
        once: connected with its replies handled, nothing in flight or
        queued, the transport's buffer empty. Otherwise the next flush sends
        it, keeping the order, the back-pressure and, above all, the sharing:
        concurrent callers (a worker's slots) keep going out together in one
        write per loop iteration."""
        conn = self._conn
        if (self._outgoing_futures or self._in_flight or conn is None
                or self._handler is None):
            return None
        writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
        if writer is None or writer.is_closing() or writer.transport.get_write_buffer_size():
            return None
        return writer

    def _pack(self, command: Sequence[Any]) -> list[bytes]:
        try:
            return [_hiredis_pack(tuple(command))]
        except (TypeError, ValueError):
            pass  # an argument hiredis does not take: redis-py decides (and refuses)
        packed: list[bytes] = self._connection().pack_command(*command)
        return packed

    def _connection(self) -> AbstractConnection:
        if self._conn is None:
            self._conn = self._pool.connection_class(**self._kwargs)
        return self._conn

    async def _write_loop(self) -> None:
        assert self._writer_wake is not None
        wake = self._writer_wake
        while True:
            await wake.wait()
            wake.clear()
            if not self._outgoing_futures:
                continue
            try:
                conn = await self._connected()
            except Exception as exc:
                # Nothing was written: these may be resent safely.
                self._fail_outgoing(exc)
                continue
            data, futures = self._outgoing, self._outgoing_futures
            self._outgoing, self._outgoing_futures = [], []
            self._in_flight.extend(futures)
            try:
                await conn.send_packed_command(data, check_health=False)
            except Exception as exc:
                self._broken(conn, exc)

    async def _connected(self) -> AbstractConnection:
        conn = self._connection()
        if self._handler is not None and conn.is_connected:
            return conn
        if self._handler is not None:
            # Closed behind our back: its callers get the error first.
            self._broken(conn, RedisConnectionError(
                f"Error while reading from {self._where()}: connection lost."))
        if self._connections:
            # A new connection object per connection: a late callback about
            # the old one (its close) changes nothing here.
            old, conn = conn, self._pool.connection_class(**self._kwargs)
            self._conn = conn
            await self._disconnect(old)
        self._connections += 1
        connect: Any = conn.connect  # untyped in some redis-py versions
        try:
            await connect()
        except RedisConnectionError:
            raise
        except Exception as exc:  # OSError, TimeoutError: never written either
            raise RedisConnectionError(f"Error connecting to {self._where()}: {exc}") from exc
        writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
        if writer is None:
            raise RedisConnectionError(f"Error connecting to {self._where()}: no stream")
        transport = writer.transport
        inner = transport.get_protocol()
        assert isinstance(inner, asyncio.Protocol)
        replies = _Replies(self, conn, inner)
        transport.set_protocol(replies)
        self._handler = replies
        return conn

    def _where(self) -> str:
        describe = getattr(self._conn, "_host_error", None)
        return str(describe()) if callable(describe) else "redis"

    def _broken(self, conn: AbstractConnection, exc: BaseException) -> None:
        """The connection failed: whatever was written gets the error (it may
        have run); the next write reconnects. A late report about an earlier
        connection changes nothing."""
        if conn is not self._conn:
            return
        if not isinstance(exc, RedisConnectionError | RedisTimeoutError):
            exc = RedisConnectionError(f"Error while talking to {self._where()}: {exc}")
        while self._in_flight:
            future = self._in_flight.popleft()
            if not future.done():
                future.set_exception(exc)
        self._handler = None
        # The socket itself is closed by the next connect (or aclose).

    @staticmethod
    async def _disconnect(conn: AbstractConnection) -> None:
        try:
            await conn.disconnect(nowait=True)
        except Exception:
            pass

    def _fail_outgoing(self, exc: BaseException) -> None:
        futures = self._outgoing_futures
        self._outgoing, self._outgoing_futures = [], []
        for future in futures:
            if not future.done():
                future.set_exception(exc)

    async def aclose(self) -> None:
        """Stop both tasks and close the connection; waiting callers fail."""
        if self._closed:
            return
        self._closed = True
        self._fail_outgoing(RedisConnectionError(
            "Error connecting to redis: the backend was closed"))
        self._handler = None
        tasks = [t for t in (self._writer,) if t is not None]
        for task in tasks:
            task.cancel()
        while self._in_flight:
            future = self._in_flight.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError("the backend was closed"))
        if self._loop is not asyncio.get_running_loop():
            return  # those tasks belong to a loop that is gone or elsewhere
        for task in tasks:
            try:
                await task
            except BaseException:
                pass
        if self._conn is not None:
            await self._disconnect(self._conn)

