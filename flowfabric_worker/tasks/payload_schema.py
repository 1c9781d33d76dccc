"""JSON Schemas of payload types, for what a waiting task records about the
signal it expects (``wait_for_signal(..., payload_type=T)``, issue 16).

msgspec makes the schema of the types it decodes itself (structs,
dataclasses, ``TypedDict``, builtins); pydantic's ``TypeAdapter`` makes
that of the rest, pydantic models and anything holding one — the same split
:func:`~flowfabric_worker.tasks.codec.convert` uses to decode, so the schema
describes what the task will accept. A type neither can describe has no schema (the signal
is then not checked at send time; the task still decodes it).
"""

from __future__ import annotations

import logging
import typing
from functools import lru_cache
from typing import Any

import msgspec

__all__ = ["schema_of", "type_label"]

log = logging.getLogger("flowfabric_worker.signals")


def type_label(tp: Any) -> str:
    """A short readable name of an annotation (``Approval``, ``list[int]``)."""
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def _make(tp: Any) -> dict[str, Any] | None:
    try:
        try:
            return msgspec.json.schema(tp)
        except TypeError:
            pass  # not a msgspec type (a pydantic model, or a type holding one)
        from pydantic import TypeAdapter

        schema: dict[str, Any] = TypeAdapter(tp).json_schema()
        return schema
    except Exception as exc:
        log.debug("no JSON Schema for %s (%s): signals to it are not checked when sent",
                  type_label(tp), exc)
        return None


@lru_cache(maxsize=256)
def _cached(tp: Any) -> dict[str, Any] | None:
    return _make(tp)


def schema_of(tp: Any) -> dict[str, Any] | None:
    """The JSON Schema of payload type ``tp`` (worked out once per type), or
    None when it has none."""
    try:
        return _cached(tp)
    except TypeError:  # unhashable (e.g. Annotated with a dict): not cached
        return _make(tp)
