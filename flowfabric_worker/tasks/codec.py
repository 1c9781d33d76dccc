"""Typed payload codec: turns annotated Python values into JSON and back.

msgspec handles plain JSON values, dataclasses and msgspec structs; pydantic
models go through ``model_validate`` / ``model_dump(mode="json")``. Types
msgspec cannot convert (e.g. ``list[SomeModel]``) fall back to a pydantic
``TypeAdapter`` so mixed containers still work.

Whatever this module is given, a value that cannot be JSON comes back as
:class:`PayloadError`, never as the ``RecursionError`` or
``UnicodeEncodeError`` of the layer below: nesting past ``max_depth``, a lone
surrogate in a string, NaN or an infinite float (JSON has none; msgspec would
silently write ``null``, changing the value).
"""

from __future__ import annotations

import inspect
import math
import typing
from functools import lru_cache
from typing import Any

import msgspec

from flowfabric_worker.errors import PayloadError, PayloadTooLarge

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


def _is_pydantic_model(tp: Any) -> bool:
    try:
        from pydantic import BaseModel
    except ImportError:  # pydantic is optional for users who never use it
        return False
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _pydantic_enc_hook(value: Any) -> Any:
    # Called by msgspec for objects it does not know, e.g. models nested in lists.
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def to_builtins(value: Any) -> Any:
    """A JSON-ready form of ``value`` (dicts, lists, str, numbers, bool, None)."""
    try:
        return msgspec.to_builtins(value, enc_hook=_pydantic_enc_hook)
    except (TypeError, NotImplementedError, msgspec.EncodeError) as exc:
        raise PayloadError(f"cannot encode {type(value).__name__}: {exc}") from exc
    except RecursionError:
        # Python's own limit was hit first (~1000 levels): same answer as
        # check_json gives below it.
        raise PayloadError(f"cannot encode {type(value).__name__}: nested too deeply") from None


def check_json(value: Any, *, max_depth: int, what: str = "payload") -> None:
    """Refuse a builtins value (from :func:`to_builtins`) that JSON cannot
    carry faithfully: containers nested deeper than ``max_depth`` (a scalar
    is depth 0, ``[1]`` depth 1) or a non-finite float.

    Iterative, so any depth is measured without recursing; it runs before
    :func:`convert`, whose recursion a deep value would exhaust."""
    if not isinstance(value, dict | list | tuple):
        _check_scalar(value, what)
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise PayloadError(f"{what} is nested more than {max_depth} levels deep "
                               "(max_depth, FLOWFABRIC_MAX_DEPTH)")
        for child in (node.values() if isinstance(node, dict) else node):
            if isinstance(child, dict | list | tuple):
                stack.append((child, depth + 1))
            elif type(child) is float and not math.isfinite(child):
                _check_scalar(child, what)


def _check_scalar(value: Any, what: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{what} holds {value!r}, which JSON cannot represent")


def check_size(data: bytes, limit: int, what: str, setting: str) -> bytes:
    """``data`` unless it is longer than ``limit`` bytes (:class:`PayloadTooLarge`
    naming the ``Limits`` field and its environment variable)."""
    if len(data) > limit:
        raise PayloadTooLarge(
            f"{what} is {len(data)} bytes; the limit is {limit} "
            f"({setting}, FLOWFABRIC_{setting.upper()})", size=len(data), limit=limit)
    return data


def _mentions_pydantic(tp: Any) -> bool:
    """Whether a pydantic model appears anywhere inside ``tp`` (e.g. list[Model])."""
    if _is_pydantic_model(tp):
        return True
    return any(_mentions_pydantic(a) for a in typing.get_args(tp))


@lru_cache(maxsize=256)
def _adapter(tp: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(tp)


def convert(value: Any, tp: Any, *, where: str = "value") -> Any:
    """Convert JSON builtins ``value`` to ``tp``; raises PayloadError on mismatch."""
    if tp is inspect.Parameter.empty or tp is Any:
        return value
    if _is_pydantic_model(tp):
        try:
            return tp.model_validate(value)
        except Exception as exc:  # pydantic.ValidationError and friends
            raise PayloadError(f"{where}: {exc}") from exc
    if not _mentions_pydantic(tp):
        try:
            return msgspec.convert(value, tp)
        except msgspec.ValidationError as exc:
            raise PayloadError(f"{where}: {exc}") from exc
        except RecursionError:
            raise PayloadError(f"{where}: nested too deeply") from None
        except TypeError:
            pass  # a type msgspec does not support: let pydantic try
    try:
        return _adapter(tp).validate_python(value)
    except Exception as exc:
        raise PayloadError(f"{where}: {exc}") from exc


def dumps(value: Any) -> bytes:
    """Encode a JSON-ready value to bytes."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise PayloadError(f"cannot encode payload: {exc}") from exc
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") has no UTF-8 form
        bad = exc.object[exc.start:exc.end]
        raise PayloadError(f"cannot encode payload: a string holds {bad!r}, a lone "
                           "surrogate, which is not valid UTF-8") from None
    except RecursionError:
        raise PayloadError("cannot encode payload: nested too deeply") from None


def loads(data: bytes | str) -> Any:
    """Decode JSON bytes; raises PayloadError on malformed input."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"malformed JSON payload: {exc}") from exc
    except RecursionError:  # written by another SDK or by hand
        raise PayloadError("malformed JSON payload: nested too deeply") from None
