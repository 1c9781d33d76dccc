"""Contract error codes (spec 01 §7.3) of waitpoint HMAC tokens and the keystore."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import T, TokenError, _code

__all__ = [
    "HmacSecretNotInitialized",
    "InvalidGraceMs",
    "InvalidKeysMissingHmac",
    "InvalidKid",
    "InvalidSecret",
    "InvalidSecretHex",
    "InvalidToken",
    "MissingToken",
    "RotationConflict",
    "TokenExpired",
    "TokenMismatch",
]


@_code("missing_token", T, "transport")
class MissingToken(TokenError):
    """No token was presented."""


@_code("invalid_token", T, "validation")
class InvalidToken(TokenError):
    """Malformed, unknown kid, wrong digest, or unknown waitpoint."""


class TokenMismatch(InvalidToken):
    """Client-side: the presented token is not the one stored on the waitpoint
    (compared in constant time before anything is delivered, spec 05 §4.7)."""


@_code("token_expired", T, "transport")
class TokenExpired(TokenError):
    """The kid is known but its grace has passed."""


@_code("hmac_secret_not_initialized", T, "transport")
class HmacSecretNotInitialized(TokenError):
    """The partition has no keystore / no current kid."""


@_code("invalid_secret", T, "transport")
class InvalidSecret(TokenError):
    """The stored secret is not even-length hex."""


@_code("invalid_keys_missing_hmac", T, "transport")
class InvalidKeysMissingHmac(TokenError):
    """The keystore key was not passed."""


@_code("invalid_kid", T, "validation")
class InvalidKid(TokenError):
    """Rotation: kid empty or contains ``:``."""


@_code("invalid_secret_hex", T, "validation")
class InvalidSecretHex(TokenError):
    """Rotation: secret empty, odd length or non-hex."""


@_code("invalid_grace_ms", T, "validation")
class InvalidGraceMs(TokenError):
    """Grace not an integer in [0, 2^53-1]."""


@_code("rotation_conflict", T, "conflict")
class RotationConflict(TokenError):
    """Rotation: the kid is already current with another secret (detail: kid)."""
