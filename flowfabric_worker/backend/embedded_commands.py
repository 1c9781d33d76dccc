"""Direct implementations of the commands our library calls most, for the
embedded (``memory://``) server.

A ``redis.call`` on fakeredis walks a long way to a short piece of work: the
Lua wrapper, the socket's dispatch, the argument plan, a ``CommandItem`` per
key, the command, RESP conversion, write-back. For ``HSET`` of a record that
is ~25 µs, and a no-op task makes ~40 such calls. The handlers here do the
same work on fakeredis's own data structures in a few µs, for the plain
forms the library uses: ``HSET``, ``HGET``, ``HMGET``, ``HGETALL``, ``GET``,
``SET key value``, ``EXISTS``, ``DEL``, ``ZADD`` without flags, ``ZREM``,
``ZSCORE``, ``SADD``, ``SREM``, ``PEXPIREAT`` without flags, ``XADD`` with
an automatic ID (and ``MAXLEN ~``), and ``TIME`` (fakeredis's own method,
called directly).

Each handler answers only the happy case and returns :data:`PASS` for
anything else — a key past its TTL, a value of another type, an unusual
argument count, a score that is not a plain decimal — so fakeredis's own
code raises the error (with its exact text) or expires the key, as before.
What a handler writes matches fakeredis's write-back: the watchers of every
changed key are told (``WATCH`` and blocked readers depend on it), an
emptied collection's key is removed, a new key is stored with no TTL and an
existing key keeps its TTL. The caller takes this path only when no
keyspace message could be delivered, subkey events are off (server below
8.8) and replies are RESP2: the other cases keep fakeredis's full path.
``tests/backend/test_embedded_commands.py`` checks every handler against
stock fakeredis, errors and edge cases included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["PASS", "build"]


class _Pass:
    """Not handled here: fakeredis's own path takes the call."""

    def __repr__(self) -> str:
        return "PASS"


PASS: Any = _Pass()

#: Scores the library writes (``istr``/``fstr``): anything else — ``inf``,
#: exponents, spaces — goes to fakeredis's parser and its errors.
_PLAIN_SCORE = re.compile(rb"-?[0-9]{1,17}(?:\.[0-9]{1,17})?")

#: ``(handler, writes)`` per command name as the library spells it.
Handlers = dict[bytes, tuple[Callable[[Any, list[bytes]], Any], bool]]
"""Each handler takes the fakeredis socket running the script and the
command's arguments (bytes, without the name)."""


def build(hash_type: type[Any], zset_type: type[Any], set_type: type[Any],
          stream_type: type[Any], item_type: type[Any], ok: Any,
          max_stream_id: Any) -> Handlers:
    """The handlers, over fakeredis's ``Hash``, ``ZSet``, ``ExpiringMembersSet``,
    ``XStream`` and ``Item``, with ``ok`` its ``+OK`` status reply and
    ``max_stream_id`` the last stream ID there is (passed in: only
    :mod:`.embedded_socket` imports fakeredis's private modules, and only
    after checking its version)."""

    def canonical_int(text: bytes) -> bool:
        """fakeredis's integer rule: a 64-bit integer in its canonical text."""
        try:
            value = int(text)
        except ValueError:
            return False
        return str(value).encode() == text and -(2**63) <= value < 2**63

    def live(db: Any, key: bytes) -> Any:
        """The key's item, None when absent, PASS when its TTL has passed
        (fakeredis removes it and tells its watchers)."""
        item = db._dict.get(key)
        if item is not None and item.expireat is not None and item.expireat < db.time:
            return PASS
        return item

    def typed(db: Any, key: bytes, type_: type[Any]) -> Any:
        """The value at ``key`` when it is a ``type_``, None when the key is
        absent, PASS when it is past its TTL or holds another type."""
        item = live(db, key)
        if item is None or item is PASS:
            return item
        return item.value if type(item.value) is type_ else PASS

    def store(db: Any, key: bytes, value: Any) -> None:
        db[key] = item_type(value)
        db.notify_watch(key)

    def fields(h: Any) -> dict[bytes, bytes]:
        h._expire_keys()  # a field past its HEXPIRE time is gone
        if h._expired_fields:
            h._expired_fields = []  # events for them exist from Redis 8.8 only
        values: dict[bytes, bytes] = h._values
        return values

    def hset(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        n = len(args)
        if n < 3 or not n % 2:
            return PASS
        key = args[0]
        pairs = dict(zip(args[1::2], args[2::2], strict=True))
        h = typed(db, key, hash_type)
        if h is PASS:
            return PASS
        if h is None:
            h = hash_type()
            h._values.update(pairs)
            store(db, key, h)
            return len(pairs)
        values = fields(h)
        before = len(values)
        expirations = h._expirations
        if expirations:
            for field in pairs:
                expirations.pop(field, None)
        values.update(pairs)
        db.notify_watch(key)
        return len(values) - before

    def hash_values(db: Any, key: bytes) -> Any:
        """The fields of the hash at ``key``: {} when absent, PASS otherwise."""
        h = typed(db, key, hash_type)
        if h is None:
            return {}
        return h if h is PASS else fields(h)

    def hget(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        if len(args) != 2:
            return PASS
        values = hash_values(db, args[0])
        return PASS if values is PASS else values.get(args[1])

    def hmget(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        if len(args) < 2:
            return PASS
        values = hash_values(db, args[0])
        if values is PASS:
            return PASS
        get = values.get
        return [get(field) for field in args[1:]]

    def hgetall(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        if len(args) != 1:
            return PASS
        values = hash_values(db, args[0])
        if values is PASS:
            return PASS
        return [part for pair in values.items() for part in pair]

    def get(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        if len(args) != 1:
            return PASS
        return typed(db, args[0], bytes)

    def set_(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        if len(args) != 2:
            return PASS  # options (NX, PX, GET...) are fakeredis's
        key, value = args
        item = db._dict.get(key)
        if item is None:
            db[key] = item_type(value)
        else:  # any type, expired or not: replaced, and its TTL cleared
            item.value = value
            item.expireat = None
        db.notify_watch(key)
        return ok

    def exists(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        if not args:
            return PASS
        found = 0
        for key in args:
            item = live(db, key)
            if item is PASS:
                return PASS
            if item is not None:
                found += 1
        return found

    def delete(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        if not args:
            return PASS
        present = []
        for key in dict.fromkeys(args):  # DEL k k removes (and counts) k once
            item = live(db, key)
            if item is PASS:
                return PASS
            if item is not None:
                present.append(key)
        for key in present:
            db.notify_watch(key)
            del db._dict[key]
        return len(present)

    def zadd(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        n = len(args)
        if n < 3 or n % 2 == 0:
            return PASS
        items = []
        for j in range(1, n, 2):
            score = args[j]
            if not _PLAIN_SCORE.fullmatch(score):
                return PASS  # a flag (NX, GT...), inf, an error: fakeredis's
            items.append((args[j + 1], float(score) + 0.0))
        key = args[0]
        z = typed(db, key, zset_type)
        if z is PASS:
            return PASS
        if z is None:
            z = zset_type()
            for member, value in items:
                z.add(member, value)
            store(db, key, z)
            return len(z)
        before = len(z)
        changed = False
        for member, value in items:
            changed = z.add(member, value) or changed
        if changed:
            db.notify_watch(key)
        return len(z) - before

    def remove_members(sock: Any, args: list[bytes], type_: type[Any]) -> Any:
        db = sock._db
        if len(args) < 2:
            return PASS
        key = args[0]
        value = typed(db, key, type_)
        if value is None or value is PASS:
            return 0 if value is None else PASS
        before = len(value)
        for member in args[1:]:
            value.discard(member)
        removed = before - len(value)
        if removed:
            db.notify_watch(key)
            if not len(value):
                del db._dict[key]
        return removed

    def zrem(sock: Any, args: list[bytes]) -> Any:
        return remove_members(sock, args, zset_type)

    def srem(sock: Any, args: list[bytes]) -> Any:
        return remove_members(sock, args, set_type)

    def sadd(sock: Any, args: list[bytes]) -> Any:
        db = sock._db
        if len(args) < 2:
            return PASS
        key = args[0]
        s = typed(db, key, set_type)
        if s is PASS:
            return PASS
        if s is None:
            s = set_type()
            s.update(args[1:])
            store(db, key, s)
            return len(s)
        before = len(s)
        s.update(args[1:])
        db.notify_watch(key)  # fakeredis's SADD marks the key changed even when nothing was added
        return len(s) - before

    def zscore(sock: Any, args: list[bytes]) -> Any:
        if len(args) != 2:
            return PASS
        z = typed(sock._db, args[0], zset_type)
        if z is None or z is PASS:
            return z
        return z.get(args[1])  # a float: Lua gets fakeredis's RESP2 text of it

    def pexpireat(sock: Any, args: list[bytes]) -> Any:
        if len(args) != 2:
            return PASS  # NX, XX, GT, LT are fakeredis's
        key, ms = args
        if not canonical_int(ms):
            return PASS
        when = int(ms)
        db = sock._db
        item = live(db, key)
        if item is None:
            return 0
        if item is PASS:
            return PASS
        item.expireat = when / 1000.0
        db.schedule_expiry(key, item.expireat)
        db.notify_watch(key)
        return 1

    def xadd(sock: Any, args: list[bytes]) -> Any:
        # The two forms the library writes: ``XADD key * f v ...`` (frames)
        # and ``XADD key MAXLEN ~ N * f v ...`` (histories). fakeredis trims
        # approximately only from Redis 8.6 on, so below it ``~ N`` is
        # checked and has no effect.
        if len(args) >= 6 and args[1] == b"MAXLEN" and args[2] == b"~" and args[4] == b"*":
            if sock._server.version >= (8, 6) or not canonical_int(args[3]) or int(args[3]) < 0:
                return PASS
            fields = tuple(args[5:])
        elif len(args) >= 4 and args[1] == b"*":
            fields = tuple(args[2:])
        else:
            return PASS
        if len(fields) % 2:
            return PASS
        db = sock._db
        key = args[0]
        found = typed(db, key, stream_type)
        if found is PASS:
            return PASS
        stream = stream_type() if found is None else found
        if stream.last_id == max_stream_id:
            return PASS  # IDs exhausted: fakeredis's error
        entry = stream.next_id(None, True)
        if entry is None:
            return PASS
        stream.add(fields, entry, *sock._stream_node_limits())
        if found is None:
            db[key] = item_type(stream)
        db.notify_watch(key)
        return entry.encode()

    def time_(sock: Any, args: list[bytes]) -> Any:
        # fakeredis's own TIME (the testing kit's virtual clock moves it),
        # without the dispatch around it.
        return PASS if args else sock.time()

    return {
        b"TIME": (time_, False),
        b"HSET": (hset, True), b"HGET": (hget, False), b"HMGET": (hmget, False),
        b"HGETALL": (hgetall, False), b"GET": (get, False), b"SET": (set_, True),
        b"EXISTS": (exists, False), b"DEL": (delete, True), b"ZADD": (zadd, True),
        b"ZREM": (zrem, True), b"ZSCORE": (zscore, False), b"SADD": (sadd, True),
        b"SREM": (srem, True), b"PEXPIREAT": (pexpireat, True), b"XADD": (xadd, True),
    }
