"""The shared connection of a ``memory://`` backend: commands run in the caller's turn.

On a real server, :class:`~.multiplex.Multiplexer` carries every concurrent
caller's non-blocking commands on one connection. On ``memory://`` the
"server" is fakeredis in this process, and redis-py's pool path costs
more than most of the commands it carries: a pooled connection taken and
given back, a timeout scope, an ``asyncio.Queue`` per reply and a loop
iteration to read it — about 70 µs of CPU for a ``GET`` whose own work is
under 10 µs, paid five or six times by every task a worker runs.

:class:`EmbeddedMultiplexer` has the multiplexer's interface (``usable``,
``execute``, ``aclose``) and semantics — replies in order, error replies as
values, replies raw as the server sends them (no redis-py response
callbacks), only non-blocking commands — and hands each command to a fake
socket of its own, the way :class:`~.embedded_transport.EmbeddedConnection`
does (through ``_process_command``, so the virtual clock of
``testing/clock.py`` sees every command), then takes the reply straight off
the socket.

A batch runs without a suspension between its commands, as a pipeline's do
on a real server (which runs them back to back); the caller yields to the
event loop once, *before* the batch, so a loop of calls cannot starve the
other tasks, and a cancellation there means nothing was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse

__all__ = ["EmbeddedMultiplexer"]


class EmbeddedMultiplexer:
    """Runs non-blocking commands on one embedded connection of ``pool``."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._connecting: asyncio.Lock | None = None

    def usable(self) -> bool:
        """False once closed, or when called from another event loop than the
        first one (fakeredis's async sockets belong to one loop): the caller
        uses the pool instead."""
        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        return loop is self._loop

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Run ``commands`` (each a full argument list) and return their
        replies in order, error replies as values."""
        await asyncio.sleep(0)
        sock = await self._socket()
        encoder = self._conn.encoder
        encoding, errors = encoder.encoding, encoder.encoding_errors
        responses = sock.responses
        out: list[Any] = []
        for command in commands:
            first = command[0]
            if type(first) is str and " " in first:
                command = (*first.split(), *command[1:])
            fields = [
                arg if type(arg) is bytes
                else arg.encode(encoding, errors) if type(arg) is str
                else bytes(encoder.encode(arg))
                for arg in command]
            if sock._killed or not sock._server.connected:
                # A CLIENT KILL or an emulated outage between two commands:
                # the ones before it ran, so this one counts as possibly sent,
                # as a broken connection mid-pipeline does.
                self._conn = None
                raise RedisConnectionError(
                    f"Error while writing to {self._where()}: connection lost.")
            sock._process_command(fields)
            if responses.empty():
                # Only a blocking command leaves no reply, and none belongs here.
                raise InvalidResponse(
                    f"{self._where()}: no reply to {fields[0]!r} (a blocking command?)")
            out.append(responses.get_nowait())
        if encoder.decode_responses:
            out = [self._decode(reply, encoding, errors) for reply in out]
        return out

    def _live_socket(self) -> Any:
        conn = self._conn
        sock = None if conn is None else conn._sock
        if sock is None or sock._killed or sock._server is None:
            return None
        return sock

    async def _socket(self) -> Any:
        sock = self._live_socket()
        if sock is not None:
            return sock
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._live_socket() is None:
                # A fresh connection made as the pool makes them (its
                # handshake included); it never goes back to the pool.
                old, self._conn = self._conn, None
                if old is not None:
                    await old.disconnect(nowait=True)
                conn = self._pool.make_connection()
                try:
                    await conn.connect()
                except RedisConnectionError as exc:
                    # Worded as redis-py words a failed connect, which the
                    # retry loop reads as "nothing was sent".
                    raise RedisConnectionError(
                        f"Error connecting to {self._where()}: {exc}") from exc
                self._conn = conn
            return self._conn._sock

    def _decode(self, reply: Any, encoding: str, errors: str) -> Any:
        if type(reply) is bytes:
            return reply.decode(encoding, errors)
        if type(reply) is list:
            return [self._decode(r, encoding, errors) for r in reply]
        return reply

    def _where(self) -> str:
        kwargs = getattr(self._pool, "connection_kwargs", {})
        server = kwargs.get("server")
        return f"memory:// server {id(server):#x}" if server is not None else "memory://"

    async def aclose(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect(nowait=True)
