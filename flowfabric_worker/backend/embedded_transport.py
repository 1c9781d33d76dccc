"""The ``memory://`` connection: commands handed to fakeredis as Python values.

Stock fakeredis makes an in-process command take the wire's way: redis-py
packs it into RESP bytes, fakeredis's generator parses them back line by
line, and only then is it run. :class:`EmbeddedConnection` keeps redis-py's
client, pools, pipelines and pub/sub as they are, and changes only the
packing: a command becomes an :class:`_Command` holding its encoded
arguments, which the writer gives straight to the socket's
``_process_command`` — the method the parser would have called with the
same list (the virtual clock of ``testing/clock.py`` wraps that method, so
it still sees every command). Replies already travel as Python objects.

A socket paused by a blocking command (fakeredis queues what comes after it
until the block ends) gets the RESP bytes through ``sendall`` as before, so
the order of commands never changes.

Used only when :func:`flowfabric_worker.backend.embedded_socket.available`
(the installed fakeredis is one these private hooks were written for);
``open_redis`` falls back to stock ``FakeAsyncRedis`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import fakeredis
from fakeredis._msgs import CONNECTION_ERROR_MSG
from fakeredis.aioredis import FakeAsyncRedisConnection, FakeReader, FakeWriter

from flowfabric_worker.backend import embedded_socket

__all__ = ["EmbeddedConnection", "open_embedded"]


class _Command:
    """One command's arguments, encoded as the parser would have produced them."""

    __slots__ = ("fields",)

    def __init__(self, fields: list[bytes]) -> None:
        self.fields = fields

    def resp(self) -> bytes:
        out = [b"*%d\r\n" % len(self.fields)]
        for field in self.fields:
            out.append(b"$%d\r\n%s\r\n" % (len(field), field))
        return b"".join(out)


class _DirectWriter(FakeWriter):
    def writelines(self, data: Iterable[Any]) -> None:
        sock = self._socket
        if sock is None:
            return
        for chunk in data:
            if type(chunk) is not _Command:
                sock.sendall(chunk)
            elif sock._paused:
                sock.sendall(chunk.resp())
            else:
                # sendall's own check, then what its parser does with a whole command.
                if not sock._server.connected or sock._killed:
                    raise sock._connection_error_class(CONNECTION_ERROR_MSG)
                sock._process_command(chunk.fields)


class EmbeddedConnection(FakeAsyncRedisConnection):
    """A fakeredis async connection that skips RESP on the way in."""

    async def _connect(self) -> None:
        # FakeBaseAsyncConnection._connect with the fast socket and direct writer.
        if self._server is None or not self._server.connected:
            raise self._connection_error_class(CONNECTION_ERROR_MSG)
        self._sock = embedded_socket.socket_class()(
            self._server,
            self.db,
            client_class=self._client_class,
            lua_modules=self._lua_modules,
            client_info=self._client_info,
        )
        self._reader = FakeReader(self._sock)
        self._writer = _DirectWriter(self._sock)

    def pack_command(self, *args: Any) -> list[Any]:
        # redis-py's splitting of a multi-word command name ("CONFIG GET"),
        # then its encoder for each argument.
        first = args[0]
        if isinstance(first, str):
            args = tuple(first.encode().split()) + args[1:]
        elif isinstance(first, bytes) and b" " in first:
            args = tuple(first.split()) + args[1:]
        # The encoder's answer for bytes and str, without its isinstance ladder.
        encoder = self.encoder
        encoding, errors = encoder.encoding, encoder.encoding_errors
        return [_Command([
            arg if type(arg) is bytes
            else arg.encode(encoding, errors) if type(arg) is str
            else bytes(encoder.encode(arg))  # type: ignore[no-untyped-call]
            for arg in args])]

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[Any]:
        return [self.pack_command(*command)[0] for command in commands]


def open_embedded(server: Any, **kwargs: Any) -> Any:
    """A ``FakeAsyncRedis`` on ``server`` whose connections are :class:`EmbeddedConnection`."""
    return fakeredis.FakeAsyncRedis(server=server, connection_class=EmbeddedConnection, **kwargs)
