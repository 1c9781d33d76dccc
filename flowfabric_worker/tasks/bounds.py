"""The client-side bounds of :class:`~flowfabric_worker.settings.Limits` on
what a creation call carries besides its arguments: tags, idempotency key,
delay, and the arguments of a submission by task name.

Every check runs before the call is built, so a refused input leaves nothing
behind in Redis (the library validates too, but a Lua function that fails half
way has already written; 4000 tags once crashed ``ff_create_execution`` after
its first writes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks import codec

__all__ = ["DEFAULT_LIMITS", "check_delay", "check_idempotency_key", "check_tags",
           "encode_untyped"]

DEFAULT_LIMITS = Limits()


def _utf8_len(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form to store
        raise InvalidInput(f"{what} holds a lone surrogate, which is not valid UTF-8") from None


def check_tags(tags: Mapping[str, Any], limits: Limits) -> None:
    """Tags are string keys with string values, within count and length
    bounds. Called on the caller's tags (the task's plus the call's), before
    the SDK adds its own ``ffw.*`` bookkeeping tags."""
    if len(tags) > limits.max_tags:
        raise InvalidInput(f"{len(tags)} tags; the limit is {limits.max_tags} "
                           "(max_tags, FLOWFABRIC_MAX_TAGS)")
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"tag keys must be non-empty strings, got {key!r}")
        if not isinstance(value, str):
            raise InvalidInput(f"tag {key!r} must have a string value, "
                               f"got {type(value).__name__}")
        if _utf8_len(key, "a tag key") > limits.max_tag_key_bytes:
            raise InvalidInput(f"tag key {key[:40]!r}... is over {limits.max_tag_key_bytes} "
                               "bytes (max_tag_key_bytes, FLOWFABRIC_MAX_TAG_KEY_BYTES)")
        if _utf8_len(value, f"tag {key!r}") > limits.max_tag_value_bytes:
            raise InvalidInput(f"tag {key!r} has a value over {limits.max_tag_value_bytes} "
                               "bytes (max_tag_value_bytes, FLOWFABRIC_MAX_TAG_VALUE_BYTES)")


def check_idempotency_key(key: str | None, limits: Limits) -> str:
    """The key to send (``""`` for none). It is part of a Redis key name."""
    if key is None or key == "":
        return ""
    if not isinstance(key, str):
        raise InvalidInput(f"idempotency_key must be a string, got {type(key).__name__}")
    if _utf8_len(key, "idempotency_key") > limits.max_idempotency_key_bytes:
        raise InvalidInput(
            f"idempotency_key is over {limits.max_idempotency_key_bytes} bytes "
            "(max_idempotency_key_bytes, FLOWFABRIC_MAX_IDEMPOTENCY_KEY_BYTES)")
    return key


def check_delay(delay: float | None, limits: Limits) -> float:
    """Seconds to delay (0 for none). NaN used to compare false everywhere and
    run at once; an enormous delay parked an execution for ever."""
    if delay is None:
        return 0.0
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise InvalidInput(f"delay must be a number of seconds, got {type(delay).__name__}")
    if not math.isfinite(delay) or delay < 0:
        raise InvalidInput(f"delay must be a finite number of seconds >= 0, got {delay!r}")
    if delay > limits.max_delay:
        raise InvalidInput(f"delay of {delay} s is over {limits.max_delay} s "
                           "(max_delay, FLOWFABRIC_MAX_DELAY)")
    return float(delay)


def encode_untyped(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any],
                   limits: Limits) -> bytes:
    """The payload of a submission by task name (no signature to check against):
    the same envelope, depth and size bounds as :meth:`TaskSpec.encode_call`."""
    plain_args = [codec.to_builtins(a) for a in args]
    plain_kwargs = {k: codec.to_builtins(v) for k, v in kwargs.items()}
    for i, value in enumerate(plain_args):
        codec.check_json(value, max_depth=limits.max_depth,
                         what=f"task {name}: argument {i}")
    for key, value in plain_kwargs.items():
        codec.check_json(value, max_depth=limits.max_depth,
                         what=f"task {name}: argument {key!r}")
    data = codec.dumps({"args": plain_args, "kwargs": plain_kwargs})
    return codec.check_size(data, limits.max_payload_bytes, f"task {name}: payload",
                            "max_payload_bytes")
