"""Typed payload codec: turns annotated Python values into JSON and back.

msgspec handles plain JSON values, dataclasses and msgspec structs; pydantic
models go through ``model_validate`` / ``model_dump(mode="json")``. Types
msgspec cannot convert (e.g. ``list[SomeModel]``) fall back to a pydantic
``TypeAdapter`` so mixed containers still work.
"""

from __future__ import annotations

import inspect
import typing
from functools import lru_cache
from typing import Any

import msgspec

from flowfabric_worker.errors import PayloadError

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


def loads(data: bytes | str) -> Any:
    """Decode JSON bytes; raises PayloadError on malformed input."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"malformed JSON payload: {exc}") from exc
