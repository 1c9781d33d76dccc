"""The waitpoint HMAC keystore: initialise, rotate, list, check (spec 01 §8.3,
spec 03 §2 and §5.6).

Every ``fp`` partition holds its own copy of the keystore
(``ff:sec:{fp:N}:waitpoint_hmac``) because minting and checking a token must
stay inside the execution's cluster slot; the copies must agree, so every
write here fans out to *all* partitions with ``ff_rotate_waitpoint_hmac_secret``
(one call per partition, pipelined).

* :func:`init_secrets` is safe to run any number of times: on an empty
  keystore it installs kid ``k1`` with a fresh random secret; on an
  initialised one it changes nothing; on a half-written one (a crash during
  an earlier init or rotation) it finishes the job by copying the newest kid
  to the partitions that lack it.
* :func:`rotate_secrets` installs a new kid everywhere, keeping the old one
  valid for ``grace_ms``. It reads the keystore first and refuses a kid the
  keystore already knows (:class:`~flowfabric_worker.errors.KidInUse`).
* :func:`list_secrets` summarises the partitions (kid, kids in grace, expiry).
* :func:`keystore_ready` / :func:`ensure_secrets` are the startup check of a
  worker whose tasks can suspend. On ``memory://`` (private and ephemeral) the
  keystore is initialised on first check instead.

Secrets are :class:`~flowfabric_worker.protocol.tokens.SecretHex` values: they
print as ``<secret:64 hex>`` and are revealed only on request.
"""

from __future__ import annotations

import re
import secrets as _random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import anyio
import msgspec

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import (
    InvalidInput,
    KeystoreError,
    KeystoreInconsistent,
    KeystoreNotInitialized,
    KidInUse,
)
from flowfabric_worker.protocol.partitions import tag
from flowfabric_worker.protocol.signals import RotateHmacResult, RotateHmacSecret
from flowfabric_worker.protocol.tokens import SecretHex

__all__ = [
    "DEFAULT_GRACE_MS",
    "InitOutcome",
    "KeystoreGroup",
    "KeystoreStatus",
    "PartitionKeystore",
    "RotationOutcome",
    "ensure_secrets",
    "init_secrets",
    "keystore_ready",
    "list_secrets",
    "new_secret_hex",
    "read_keystores",
    "rotate_secrets",
]

DEFAULT_KID = "k1"
#: 0.15's default grace (``FF_WAITPOINT_HMAC_GRACE_MS``): 24 h.
DEFAULT_GRACE_MS = 86_400_000
_LOCK_KEY = "ffw:secrets:lock"
_LOCK_TTL_MS = 30_000
_LOCK_WAIT_S = 10.0
_NUMBERED_KID = re.compile(r"^k(\d+)$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


def new_secret_hex() -> SecretHex:
    """32 random bytes from the OS CSPRNG as 64 hex characters (the length 0.15
    recommends and its programmatic seeding demands)."""
    return SecretHex(_random.token_bytes(32).hex())


class PartitionKeystore(msgspec.Struct, frozen=True, kw_only=True):
    """One partition's keystore as stored (secrets redacted when printed)."""

    index: int
    tag: str
    current_kid: str = ""
    previous_kid: str = ""
    secrets: dict[str, SecretHex] = msgspec.field(default_factory=dict)
    expires_at: dict[str, str] = msgspec.field(default_factory=dict)
    """Raw ``expires_at:<kid>`` values (ms text; may be malformed)."""

    @classmethod
    def from_hash(cls, index: int, fields: dict[str, str]) -> PartitionKeystore:
        secrets = {k[7:]: SecretHex(v) for k, v in fields.items() if k.startswith("secret:")}
        expires = {k[11:]: v for k, v in fields.items() if k.startswith("expires_at:")}
        return cls(index=index, tag=tag("fp", index), current_kid=fields.get("current_kid", ""),
                   previous_kid=fields.get("previous_kid", ""), secrets=secrets,
                   expires_at=expires)

    @property
    def initialised(self) -> bool:
        """A current kid whose secret is stored: tokens can be minted here."""
        return bool(self.current_kid) and self.current_kid in self.secrets

    @property
    def current_secret(self) -> SecretHex | None:
        return self.secrets.get(self.current_kid)

    def known_kids(self) -> set[str]:
        """Every kid named anywhere in this keystore (never to be re-used)."""
        kids = {self.current_kid, self.previous_kid, *self.secrets, *self.expires_at}
        kids.discard("")
        return kids

    def in_grace(self, now_ms: int) -> tuple[tuple[str, int], ...]:
        """Non-current kids that still validate, with their expiry, by expiry."""
        out = []
        for kid, raw in self.expires_at.items():
            try:
                exp = int(raw)
            except ValueError:
                continue
            if kid != self.current_kid and kid in self.secrets and 0 < exp and exp >= now_ms:
                out.append((kid, exp))
        return tuple(sorted(out, key=lambda p: p[1]))


class KeystoreGroup(msgspec.Struct, frozen=True, kw_only=True):
    """Partitions that share the same current kid and kids in grace."""

    current_kid: str
    in_grace: tuple[tuple[str, int], ...]
    partitions: tuple[int, ...]
    secrets: dict[str, SecretHex] = msgspec.field(default_factory=dict)
    """Secrets of the current and in-grace kids (redacted unless revealed)."""

    def partition_ranges(self) -> str:
        """``0-255`` / ``0-3,7`` style rendering of :attr:`partitions`."""
        return _ranges(self.partitions)


class KeystoreStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`list_secrets` reports."""

    partitions: int
    now_ms: int
    groups: tuple[KeystoreGroup, ...]

    @property
    def initialised(self) -> bool:
        return all(g.current_kid for g in self.groups)

    @property
    def consistent(self) -> bool:
        """Every partition is initialised with the same kids."""
        return len(self.groups) == 1 and self.initialised


class InitOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """``status``: ``initialised`` (fresh install), ``already_initialised``
    (nothing written) or ``repaired`` (partitions brought up to the newest kid)."""

    status: Literal["initialised", "already_initialised", "repaired"]
    kid: str
    partitions: int
    written: int
    note: str = ""


class RotationOutcome(msgspec.Struct, frozen=True, kw_only=True):
    previous_kid: str
    kid: str
    grace_ms: int
    partitions: int
    gc_count: int
    """Expired kids garbage-collected across all partitions."""


def _ranges(indexes: Sequence[int]) -> str:
    parts: list[str] = []
    start = prev = None
    for i in sorted(indexes):
        if start is None:
            start = prev = i
        elif prev is not None and i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def _check_secret(secret_hex: str) -> SecretHex:
    if not _HEX.match(secret_hex):
        raise InvalidInput("the secret must be non-empty, even-length hex text")
    return SecretHex(secret_hex.lower())


async def read_keystores(backend: Backend) -> list[PartitionKeystore]:
    """Every partition's keystore, in partition order (one pipeline)."""
    n = backend.partitions.num_flow_partitions
    raws = await backend.get_keystores([tag("fp", i) for i in range(n)])
    return [PartitionKeystore.from_hash(i, raw) for i, raw in enumerate(raws)]


@asynccontextmanager
async def _locked(backend: Backend) -> AsyncIterator[None]:
    """Serialise keystore writers (two concurrent inits would otherwise each
    win some partitions with their own secret)."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + _LOCK_WAIT_S
    while not await backend.try_scan_lock(_LOCK_KEY, token, _LOCK_TTL_MS):
        if time.monotonic() > deadline:
            raise KeystoreError("another keystore operation holds ffw:secrets:lock; "
                                "retry when it is done (the lock expires after 30 s)")
        await anyio.sleep(0.05)
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await backend.release_scan_lock(_LOCK_KEY, token)


async def _fan_out(backend: Backend, calls: list[RotateHmacSecret]) -> list[RotateHmacResult]:
    """Run the rotations in one pipeline; any refusal fails the whole operation
    (re-running ``secrets init`` finishes a partial fan-out)."""
    results = await backend.call_many(calls)
    failed = [(c, r) for c, r in zip(calls, results, strict=True) if isinstance(r, Exception)]
    if failed:
        call, exc = failed[0]
        raise KeystoreError(
            f"{len(failed)} of {len(calls)} partitions refused the keystore write "
            f"(first: {call.tag}: {exc}); run `flowfabric-worker secrets init` to "
            "finish the fan-out") from exc
    return [r for r in results if isinstance(r, RotateHmacResult)]


def _newest_kid(stores: list[PartitionKeystore]) -> str:
    """The current kid of an interrupted rotation's finished partitions: the one
    no initialised partition names as its ``previous_kid``."""
    current = {s.current_kid for s in stores if s.initialised}
    if len(current) == 1:
        return current.pop()
    superseded = {s.previous_kid for s in stores if s.initialised and s.current_kid in current}
    candidates = current - superseded
    if len(candidates) != 1:
        raise KeystoreInconsistent(
            f"partitions disagree on the current kid ({', '.join(sorted(current))}) and "
            "no single newest kid can be told from their history; rotate to a new kid "
            "after fixing the keystore by hand")
    return candidates.pop()


async def init_secrets(backend: Backend, *, kid: str = DEFAULT_KID,
                       secret_hex: str | None = None) -> InitOutcome:
    """Make every partition's keystore usable; idempotent.

    * nothing initialised anywhere: install ``kid`` with ``secret_hex`` (default:
      a fresh 32-byte random secret) on every partition → ``initialised``;
    * every partition already on the same kid: write nothing →
      ``already_initialised`` (``kid``/``secret_hex`` are ignored; a different
      ``secret_hex`` is reported in ``note``, the stored one wins as in 0.15);
    * some partitions missing or behind (an interrupted init or rotation):
      install the newest kid and its secret there, keeping the grace the
      finished partitions gave the previous kid → ``repaired``.
    """
    async with _locked(backend):
        stores = await read_keystores(backend)
        ready = [s for s in stores if s.initialised]
        n = len(stores)
        if not ready:
            secret = _check_secret(secret_hex) if secret_hex else new_secret_hex()
            reused = {k for s in stores for k in s.known_kids()} - {s.current_kid for s in stores}
            if kid in reused:
                raise KidInUse(f"kid {kid!r} is already known to the keystore; pick another")
            calls = [RotateHmacSecret(tag=s.tag, new_kid=kid, new_secret_hex=secret.reveal(),
                                      grace_ms=0) for s in stores]
            await _fan_out(backend, calls)
            return InitOutcome(status="initialised", kid=kid, partitions=n, written=n)
        newest = _newest_kid(stores)
        ref = next(s for s in ready if s.current_kid == newest)
        secret = ref.secrets[newest]  # ref is initialised, so its secret is stored
        behind = [s for s in stores if not (s.initialised and s.current_kid == newest)]
        note = ""
        if secret_hex and _check_secret(secret_hex).reveal() != secret.reveal():
            note = "the stored secret differs from the one given; the stored one is kept"
        if not behind:
            return InitOutcome(status="already_initialised", kid=newest, partitions=n,
                               written=0, note=note)
        now = await backend.server_time_ms()
        grace = 0
        if ref.previous_kid and ref.previous_kid in ref.expires_at:
            try:
                grace = max(int(ref.expires_at[ref.previous_kid]) - now, 0)
            except ValueError:
                grace = 0
        calls = [RotateHmacSecret(tag=s.tag, new_kid=newest, new_secret_hex=secret.reveal(),
                                  grace_ms=grace) for s in behind]
        await _fan_out(backend, calls)
        return InitOutcome(status="repaired", kid=newest, partitions=n, written=len(behind),
                           note=note)


def _next_kid(known: set[str]) -> str:
    numbers = [int(m.group(1)) for k in known if (m := _NUMBERED_KID.match(k))]
    n = max(numbers, default=0) + 1
    while f"k{n}" in known:
        n += 1
    return f"k{n}"


async def rotate_secrets(backend: Backend, *, grace_ms: int = DEFAULT_GRACE_MS,
                         kid: str | None = None,
                         secret_hex: str | None = None) -> RotationOutcome:
    """Install a new signing kid on every partition; tokens of the old kid keep
    validating for ``grace_ms`` (spec 03 §5.6).

    ``kid`` defaults to the next ``k<n>`` the keystore has never seen; a kid the
    keystore already knows is refused with :class:`KidInUse`. The keystore must
    be initialised and consistent first (:class:`KeystoreNotInitialized`,
    :class:`KeystoreInconsistent` — ``secrets init`` repairs the latter).
    """
    if isinstance(grace_ms, bool) or not isinstance(grace_ms, int) or not (
            0 <= grace_ms <= 2**53 - 1):
        raise InvalidInput("grace must be a whole number of ms in [0, 2^53-1]")
    async with _locked(backend):
        stores = await read_keystores(backend)
        missing = [s.index for s in stores if not s.initialised]
        if missing:
            raise KeystoreNotInitialized(
                f"{len(missing)} of {len(stores)} partitions have no signing kid "
                f"({_ranges(missing)}); run `flowfabric-worker secrets init` first")
        current = {s.current_kid for s in stores}
        if len(current) != 1:
            raise KeystoreInconsistent(
                f"partitions disagree on the current kid ({', '.join(sorted(current))}); "
                "run `flowfabric-worker secrets init` to finish the interrupted rotation")
        known = {k for s in stores for k in s.known_kids()}
        new_kid = kid if kid is not None else _next_kid(known)
        if new_kid in known:
            raise KidInUse(f"kid {new_kid!r} is already known to the keystore (current, "
                           "previous or still stored); re-using it would later invalidate "
                           "its tokens — pick a new kid")
        secret = _check_secret(secret_hex) if secret_hex else new_secret_hex()
        calls = [RotateHmacSecret(tag=s.tag, new_kid=new_kid, new_secret_hex=secret.reveal(),
                                  grace_ms=grace_ms) for s in stores]
        results = await _fan_out(backend, calls)
        return RotationOutcome(previous_kid=current.pop(), kid=new_kid, grace_ms=grace_ms,
                               partitions=len(stores),
                               gc_count=sum(r.gc_count for r in results))


async def list_secrets(backend: Backend) -> KeystoreStatus:
    """A per-partition summary: partitions grouped by current kid and kids in grace."""
    stores = await read_keystores(backend)
    now = await backend.server_time_ms()
    groups: dict[tuple[str, tuple[str, ...]], list[PartitionKeystore]] = {}
    for s in stores:
        current = s.current_kid if s.initialised else ""
        key = (current, tuple(k for k, _ in s.in_grace(now)))
        groups.setdefault(key, []).append(s)
    out = []
    for (current, _), members in sorted(groups.items(), key=lambda kv: kv[1][0].index):
        first = members[0]
        grace = first.in_grace(now) if current else ()
        kept = {k: first.secrets[k] for k in (current, *(k for k, _ in grace)) if k}
        out.append(KeystoreGroup(current_kid=current, in_grace=grace,
                                 partitions=tuple(s.index for s in members), secrets=kept))
    return KeystoreStatus(partitions=len(stores), now_ms=now, groups=tuple(out))


async def keystore_ready(backend: Backend) -> bool:
    """Whether every partition can mint waitpoint tokens.

    On ``memory://`` the keystore is private to this process and ephemeral, so
    instead of answering ``False`` it is initialised (idempotently) and the
    answer is ``True``.
    """
    if backend.is_memory:
        await init_secrets(backend)
        return True
    return all(s.initialised for s in await read_keystores(backend))


async def ensure_secrets(backend: Backend) -> None:
    """Fail fast with :class:`KeystoreNotInitialized` unless the keystore is
    ready (see :func:`keystore_ready`); call it before serving tasks that
    can suspend."""
    if await keystore_ready(backend):
        return
    hint = ("the FlowFabric server seeds it at boot from FF_WAITPOINT_HMAC_SECRET"
            if backend.mode == "attached"
            else "run `flowfabric-worker secrets init --url ...` once per deployment")
    raise KeystoreNotInitialized(
        "the waitpoint HMAC keystore is not initialised on every partition, so tasks "
        f"cannot suspend or receive signals; {hint}")
