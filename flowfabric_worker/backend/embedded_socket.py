"""Faster command dispatch for the embedded (``memory://``) server.

A task on stock ``memory://`` costs ~1.8 ms of CPU, three quarters of it in
fakeredis, most of that in the ~45 ``redis.call``s our library functions make
per task. For each one fakeredis re-derives the command's argument types from
its signature (``Signature.apply`` builds a list and ``isinstance``-checks
every argument), looks the command up again by its lower-cased name and asks
the command table whether it writes; none of that depends on anything but
the command and its argument count, so :class:`FastSocket` works it out once
per (command, argument count) and keeps it. It also leaves out steps that
have nothing to do: keyspace messages when no subscription could receive
one, subkey events below Redis 8.8 (fakeredis drops them there), per-item
conversion of a flat array for Lua, and ``Hash.update``'s per-field calls in
``HSET`` (the library writes records of 20-50 fields). Before any of that, a
``redis.call`` of one of the commands :mod:`.embedded_commands` covers runs
its direct handler when nothing could observe the difference (no keyspace
subscriber, RESP2, a server below 8.8); a handler that meets anything
unusual passes the call on to the path below.

Everything else (the command implementations, key expiry, write-back,
RESP2 conversion, error texts and the order they are raised in) is
fakeredis's own code, called as fakeredis calls it. The overridden methods
are private to fakeredis and were written against the versions in
:data:`MEASURED_VERSIONS`: :func:`available` is false on any other version,
or if a method is missing, and ``memory://`` then uses stock fakeredis.
Only servers of type ``redis`` take the fast paths (``memory://`` builds no
other); the rest fall through to fakeredis unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flowfabric_worker.backend import embedded_commands

__all__ = ["DIRECT_COMMANDS", "MEASURED_VERSIONS", "available", "socket_class"]

#: fakeredis versions whose private dispatch this module mirrors (measured
#: and checked by the memory:// variants of the suite).
MEASURED_VERSIONS = frozenset({"2.41.0"})

#: Whether ``redis.call`` takes :mod:`.embedded_commands`' direct handlers
#: for the commands they cover (a switch for ``bench/embedded.py --compare``
#: and the equivalence tests; on by default).
DIRECT_COMMANDS = True


def _installed_version() -> str | None:
    try:
        return version("fakeredis")
    except PackageNotFoundError:
        return None


def available() -> bool:
    """True when the installed fakeredis is one this module was written for."""
    return _socket_class() is not None


def socket_class() -> type[Any]:
    """The fast socket class; call only when :func:`available`."""
    cls = _socket_class()
    if cls is None:
        raise RuntimeError("fakeredis fast paths unavailable on this fakeredis version")
    return cls


_built: list[type[Any] | None] = []


def _socket_class() -> type[Any] | None:
    if not _built:
        _built.append(_build() if _installed_version() in MEASURED_VERSIONS else None)
    return _built[0]


def _build() -> type[Any] | None:
    try:
        from fakeredis import _msgs as msgs
        from fakeredis._commands import COMMANDS_WITH_SUB, SUPPORTED_COMMANDS, Key, Signature
        from fakeredis._core import CommandItem, Item
        from fakeredis._helpers import OK, SimpleError, decode_command_bytes
        from fakeredis._socket import AsyncFakeSocket
        from fakeredis._socket._base import BaseFakeSocket
        from fakeredis._socket._resp import convert_to_resp2, valid_response_type
        from fakeredis.commands_mixins.scripting_mixin import _convert_redis_arg
        from fakeredis.model import ExpiringMembersSet, Hash, XStream, ZSet, is_write_command
        from fakeredis.model._stream import MAX_KEY
    except ImportError:
        return None
    for owner, name in ((BaseFakeSocket, "_run_command"), (BaseFakeSocket, "_name_to_func"),
                        (AsyncFakeSocket, "_function_redis_call"), (Signature, "apply"),
                        (AsyncFakeSocket, "_hset"), (AsyncFakeSocket, "_convert_redis_result"),
                        (AsyncFakeSocket, "_subkey_notifications"), (Hash, "_expire_keys"),
                        (AsyncFakeSocket, "_stream_node_limits"), (AsyncFakeSocket, "time"),
                        (XStream, "next_id"), (XStream, "add")):
        if not callable(getattr(owner, name, None)):
            return None

    direct = embedded_commands.build(Hash, ZSet, ExpiringMembersSet, XStream, Item, OK, MAX_KEY)
    passed = embedded_commands.PASS
    unspecified = Key.UNSPECIFIED
    do_not_create = msgs.FLAG_DO_NOT_CREATE
    no_script = msgs.FLAG_NO_SCRIPT
    skip_resp2 = msgs.FLAG_SKIP_CONVERT_TO_RESP2
    leave_empty = msgs.FLAG_LEAVE_EMPTY_VAL
    wrongtype = msgs.WRONGTYPE_MSG
    accepted_in_pubsub = BaseFakeSocket.ACCEPTED_COMMANDS_WHILE_PUBSUB
    # Replies RESP2 conversion leaves as they are and that are valid in both protocols.
    leaf = frozenset((bytes, int, type(None)))

    # (signature, argument count) -> (first pass, second pass, create defaults)
    # as Signature.apply derives them each call. Only argument counts that
    # passed check_arity are ever stored, so a hit means the arity is right.
    plans: dict[tuple[Signature, int], tuple[Any, Any, bool]] = {}

    def plan(sig: Signature, n: int) -> tuple[Any, Any, bool]:
        types: list[Any] = list(sig.fixed)
        types.extend(sig.repeat[i % len(sig.repeat)] for i in range(n - len(types)))
        first = tuple(
            (i, t, isinstance(t, Key)) for i, t in enumerate(types)
            if (t.missing_return is not unspecified if isinstance(t, Key) else t is not bytes))
        second = tuple((i, t.type_) for i, t in enumerate(types) if isinstance(t, Key))
        built = (first, second, do_not_create not in sig.flags)
        plans[(sig, n)] = built
        return built

    def apply(sig: Signature, args: Sequence[Any], db: Any, server_version: Any) -> Any:
        """``Signature.apply`` with the per-call type derivation cached."""
        found = plans.get((sig, len(args)))
        if found is None:
            sig.check_arity(args, server_version)
            found = plan(sig, len(args))
        first, second, create = found
        args_list = list(args)
        for i, type_, is_key in first:
            if is_key:
                if args_list[i] not in db:
                    return (type_.missing_return,)
            else:
                args_list[i] = type_.decode(args_list[i])
        command_items = []
        for i, key_type in second:
            arg = args_list[i]
            item = db.get(arg)
            default = None
            if key_type is not None and item is not None and type(item.value) is not key_type:
                raise SimpleError(wrongtype)
            if create and key_type is not None and item is None and key_type is not bytes:
                default = key_type()
            args_list[i] = command_item = CommandItem(arg, db, item, default=default)
            command_items.append(command_item)
        return args_list, command_items

    # redis.call's command name (as the script spelt it) -> (signature,
    # method name, writes?). Container commands ("XINFO STREAM") are left to
    # fakeredis: their name spans two arguments.
    calls: dict[bytes, tuple[Signature, str, bool] | None] = {}

    def lookup(op: bytes) -> tuple[Signature, str, bool] | None:
        cmd = decode_command_bytes(op)
        sig = SUPPORTED_COMMANDS.get(cmd)
        entry = None
        if cmd not in COMMANDS_WITH_SUB and sig is not None and "redis" in sig.server_types:
            entry = (sig, sig.func_name, is_write_command(sig.name.encode()))
        calls[op] = entry
        return entry

    class FastSocket(AsyncFakeSocket):
        """``AsyncFakeSocket`` with cached argument plans and ``redis.call`` lookups."""

        #: Whether a keyspace message could reach anyone (set per top-level command).
        _keyspace_listened = True

        def _run_command(self, func: Any, sig: Signature, args: list[Any],
                         from_script: bool) -> Any:
            # BaseFakeSocket._run_command for a redis server, with apply() cached.
            if self._server.server_type != "redis":
                return super()._run_command(func, sig, args, from_script)
            command_items: list[Any] = []
            self._subkey_events = []
            flags = sig.flags
            if not from_script:
                # Nobody subscribes while a script runs: whether anyone could
                # receive a keyspace message is worked out once per command.
                self._keyspace_listened = self._keyspace_listeners()
            try:
                ret = apply(sig, args, self._db, self._server.version)
                if from_script and no_script in flags:
                    raise SimpleError(msgs.COMMAND_IN_SCRIPT_MSG)
                if self._pubsub and sig.name not in accepted_in_pubsub:
                    raise SimpleError(msgs.BAD_COMMAND_IN_PUBSUB_MSG)
                if len(ret) == 1:
                    result = ret[0]
                else:
                    args, command_items = ret
                    result = func(*args)
                    if type(result) in leaf:
                        pass
                    elif from_script and type(result) is list and all(
                            type(item) in leaf for item in result):
                        # A flat array of bulk strings, integers and nils
                        # (HMGET, ZRANGE) is valid RESP2 as it is, and Lua
                        # copies it: no converted copy to make.
                        pass
                    elif skip_resp2 not in flags:
                        resp_version = self._resp_version
                        if resp_version == 2:
                            result = convert_to_resp2(result, "redis", keep_doubles=False)
                        if not valid_response_type(result, resp_version):
                            raise AssertionError(f"Invalid response type for {result}")
            except SimpleError as exc:
                result = exc
            if command_items:
                remove_empty = leave_empty not in flags
                for command_item in command_items:
                    command_item.writeback(remove_empty_val=remove_empty)
            if self._keyspace_listened:
                super()._keyspace_notifications(command_items, sig.name.encode())
            self._subkey_notifications(command_items)
            return result

        def _keyspace_listeners(self) -> bool:
            # fakeredis publishes two keyspace messages per written key whenever
            # anyone subscribes to anything (our done and wake channels): none
            # is built when no pattern and no __keyspace@/__keyevent@ channel
            # could match.
            server = self._server
            return bool(server.psubscribers) or any(
                channel[:5] == b"__key" for channel in server.subscribers)

        def _subkey_notifications(self, command_items: list[Any]) -> None:
            # Subkey events are published from Redis 8.8 on: before that,
            # fakeredis only drops the events and the hashes' expired fields.
            if self._server.version >= (8, 8):
                super()._subkey_notifications(command_items)
                return
            self._subkey_events = []
            for command_item in command_items:
                value = command_item.value
                if isinstance(value, Hash):
                    value.take_expired_fields()

        def _convert_redis_result(self, lua_runtime: Any, result: Any) -> Any:
            kind = type(result)
            if kind is bytes or kind is int:
                return result
            if kind is list:
                # A flat array of bulk strings and integers (HGETALL, HMGET)
                # converts item by item to itself.
                for item in result:
                    if type(item) is not bytes and type(item) is not int:
                        break
                else:
                    return lua_runtime.table_from(result)
            return super()._convert_redis_result(lua_runtime, result)

        def _hset(self, key: Any, *args: bytes) -> int:
            # HashCommandsMixin._hset with Hash.update's per-field calls
            # inlined: the library writes records of 20-50 fields at a time.
            h = key.value
            if type(h) is not Hash:
                return int(super()._hset(key, *args))
            previous_keys_count = len(h)
            values = dict(zip(args[::2], args[1::2], strict=False))
            h._expire_keys()
            expirations = h._expirations
            if expirations:
                for field in values:
                    expirations.pop(field, None)
            h._values.update(values)
            created = len(h) - previous_keys_count
            key.updated()
            self.add_subkey_event(b"hset", key.key, args[::2])
            return created

        def _function_redis_call(self, lua_runtime: Any, read_only: bool, *args: Any) -> Any:
            # ScriptingCommandsMixin._function_redis_call with the lookup cached,
            # and the direct handlers first where they apply.
            op = args[0] if args else None
            if type(op) is not bytes or self._server.server_type != "redis":
                return super()._function_redis_call(lua_runtime, read_only, *args)
            try:
                call_args = [a if type(a) is bytes else _convert_redis_arg(a) for a in args[1:]]
            except SimpleError:  # fakeredis's checks, in its order
                return super()._function_redis_call(lua_runtime, read_only, *args)
            handler = direct.get(op)
            if (handler is not None and DIRECT_COMMANDS and not self._keyspace_listened
                    and not (read_only and handler[1]) and self._server.version < (8, 8)
                    and self._resp_version == 2):
                result = handler[0](self, call_args)
                if result is not passed:
                    return self._convert_redis_result(lua_runtime, result)
            entry = calls[op] if op in calls else lookup(op)
            if entry is None:
                return super()._function_redis_call(lua_runtime, read_only, *args)
            sig, func_name, writes = entry
            func = getattr(self, func_name, None)
            if func is None:
                raise SimpleError(msgs.WRONG_ARGS_MSG7)
            if (sig, len(call_args)) not in plans:
                try:
                    sig.check_arity(call_args, self._server.version)
                except SimpleError:
                    raise SimpleError(msgs.WRONG_ARGS_MSG7) from None
            if read_only and writes:
                raise SimpleError(msgs.SCRIPT_READ_ONLY_WRITE_MSG)
            result = self._run_command(func, sig, call_args, True)
            return self._convert_redis_result(lua_runtime, result)

    return FastSocket
