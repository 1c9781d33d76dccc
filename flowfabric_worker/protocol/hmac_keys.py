"""Function calls of the waitpoint HMAC keystore: rotating the signing
secret of a partition and listing the kids it accepts (spec 03 §2)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId, execution_tag
from flowfabric_worker.protocol.keys import PartitionKeys

__all__ = ["HmacKids", "ListHmacKids", "RotateHmacResult", "RotateHmacSecret", "partition_tag"]


class RotateHmacResult(msgspec.Struct, frozen=True):
    outcome: Literal["rotated", "noop"] | str
    previous_kid: str
    current_kid: str
    gc_count: int


class RotateHmacSecret(FCall[RotateHmacResult], frozen=True, kw_only=True):
    """Install ``new_kid`` on one partition (call once per ``fp`` partition)."""

    NAME: ClassVar[str] = "ff_rotate_waitpoint_hmac_secret"
    IDEMPOTENT: ClassVar[bool] = True
    tag: str
    new_kid: str
    new_secret_hex: str = msgspec.field(default="")
    grace_ms: int = 86_400_000

    def __post_init__(self) -> None:
        if not self.new_kid or ":" in self.new_kid:
            raise InvalidInput("kid must be non-empty and contain no ':'")
        s = self.new_secret_hex
        if not s or len(s) % 2 or any(c not in "0123456789abcdefABCDEF" for c in s):
            raise InvalidInput("secret must be non-empty even-length hex")
        if isinstance(self.grace_ms, bool) or not 0 <= self.grace_ms <= 2**53 - 1:
            raise InvalidInput("grace_ms must be an integer in [0, 2^53-1]")

    def __repr__(self) -> str:
        return (f"RotateHmacSecret(tag={self.tag!r}, new_kid={self.new_kid!r}, "
                f"grace_ms={self.grace_ms})")

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("tag", self.tag), ("new_kid", self.new_kid), ("grace_ms", self.grace_ms)]

    def keys(self) -> list[str]:
        return [PartitionKeys(self.tag).hmac_keystore]

    def argv(self) -> list[str]:
        return [self.new_kid, self.new_secret_hex, str(self.grace_ms)]

    def decode(self, reply: Any) -> RotateHmacResult:
        env = self.envelope(reply)
        if env.field(0) == "noop":
            return RotateHmacResult("noop", "", env.field(1), 0)
        return RotateHmacResult(env.field(0), env.field(1), env.field(2), int(env.field(3, "0")))


class HmacKids(msgspec.Struct, frozen=True):
    current_kid: str
    in_grace: tuple[tuple[str, int], ...]
    """Non-current kids still accepted, with their expiry (ms), sorted by expiry."""


class ListHmacKids(FCall[HmacKids], frozen=True, kw_only=True):
    NAME: ClassVar[str] = "ff_list_waitpoint_hmac_kids"
    IDEMPOTENT: ClassVar[bool] = True
    tag: str

    def keys(self) -> list[str]:
        return [PartitionKeys(self.tag).hmac_keystore]

    def argv(self) -> list[str]:
        return []

    def decode(self, reply: Any) -> HmacKids:
        env = self.envelope(reply)
        n = int(env.field(1, "0"))
        pairs = [(env.field(2 + 2 * i), int(env.field(3 + 2 * i))) for i in range(n)]
        return HmacKids(env.field(0), tuple(sorted(pairs, key=lambda p: p[1])))


def partition_tag(eid: ExecutionId) -> str:
    """The tag whose keystore signs this execution's waitpoints."""
    return execution_tag(eid)
