"""Bearer credentials that must never reach a log: waitpoint tokens
(``<kid>:<40 hex>``, spec 01 §8.1) and keystore secrets (hex text).

Both are ``str`` subclasses so they travel anywhere a string does, but their
``repr``/``str``/``format`` show only a redacted form; the real text is
reachable only through :meth:`Token.secret` / :meth:`SecretHex.reveal`.
"""

from __future__ import annotations

import hmac as _hmac

__all__ = ["SecretHex", "Token"]


class Token(str):
    """A waitpoint token ``<kid>:<40 hex>``; renders redacted everywhere."""

    __slots__ = ()

    def __new__(cls, value: str) -> Token:
        # str(value) would call a Token's redacting __str__ and lose the digest.
        return super().__new__(cls, str.__str__(value))

    @property
    def kid(self) -> str:
        return self.partition(":")[0]

    def redacted(self) -> str:
        kid, sep, digest = self.partition(":")
        return f"{kid}:<redacted:{len(digest)}>" if sep else "<redacted>"

    def __repr__(self) -> str:
        return f"Token({self.redacted()!r})"

    def __str__(self) -> str:
        return self.redacted()

    def __format__(self, spec: str) -> str:
        return format(self.redacted(), spec)

    def secret(self) -> str:
        """The full token text, for the wire only."""
        return str.__str__(self)

    def matches(self, other: str) -> bool:
        """Constant-time comparison with a presented token."""
        return _hmac.compare_digest(self.secret().encode(), str.__str__(other).encode())


class SecretHex(str):
    """A keystore secret (hex text); renders as ``<secret:N hex>``."""

    __slots__ = ()

    def __new__(cls, value: str) -> SecretHex:
        return super().__new__(cls, str.__str__(value))

    def redacted(self) -> str:
        return f"<secret:{len(self)} hex>"

    def __repr__(self) -> str:
        return f"SecretHex({self.redacted()!r})"

    def __str__(self) -> str:
        return self.redacted()

    def __format__(self, spec: str) -> str:
        return format(self.redacted(), spec)

    def reveal(self) -> str:
        """The secret text (for the wire, or ``secrets list --show-secrets``)."""
        return str.__str__(self)
