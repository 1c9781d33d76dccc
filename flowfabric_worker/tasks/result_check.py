"""Checking a task's return value against its return annotation, on the
worker (issue 16, item 4).

Without it a task annotated ``-> int`` that returns ``"not an int"``
completes, and the error surfaces later in whoever calls ``run.result()``,
far from the task. The worker now decodes the value exactly as a caller's
``result()`` will (:func:`codec.convert` of its JSON form against the
annotation) before it writes it; a mismatch fails the attempt with category
``result_type``, not retried (a rerun returns the same kind of value).

Sets: JSON has no set, so a set is stored as an array. A set (or frozenset)
returned where the annotation is a set / frozenset round-trips (the caller
gets a set back). Returned where the annotation says anything else (e.g.
``-> list[int]``) it is refused: it would reach the caller as a list in an
arbitrary order. Only the returned value itself is looked at for that, not
sets nested inside it (those are still checked by the decoding). An
unannotated task (or ``-> Any``) stores what it returns, sets as arrays.

What is worked out once per task (:func:`plan`), so an unannotated task
pays one attribute test per result and ``-> int`` returning an ``int``
one type comparison.
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import reprlib
import types
import typing
from typing import Any

import msgspec

from flowfabric_worker.errors import PayloadError, ResultTypeError
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.payload_schema import type_label

__all__ = ["ResultCheck", "plan"]

#: Annotations a value of exactly that type satisfies with no conversion.
_EXACT = frozenset({int, str, bool, float, bytes, type(None)})
_SET_ORIGINS = frozenset({set, frozenset, cabc.Set, cabc.MutableSet, cabc.Collection,
                          cabc.Iterable, cabc.Container})
_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


def _accepts_set(tp: Any) -> bool:
    """Whether a set is a fitting value for ``tp`` (a set type, a union with
    one, or something that takes anything)."""
    if tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts_set(arm) for arm in typing.get_args(tp))
    if origin is typing.Annotated:
        return _accepts_set(typing.get_args(tp)[0])
    return (origin or tp) in _SET_ORIGINS


def _convertible(tp: Any) -> bool:
    """Whether the codec can decode into ``tp`` at all (else checking it
    would fail every result for the annotation's sake, not the value's)."""
    try:
        msgspec.convert(None, tp)
        return True
    except msgspec.ValidationError:
        return True
    except TypeError:
        pass  # not a msgspec type: the codec falls back to pydantic
    try:
        from pydantic import TypeAdapter

        TypeAdapter(tp)
    except Exception:
        return False
    return True


class ResultCheck:
    """The return annotation of one task, and how to check a value against it."""

    __slots__ = ("_usable", "annotation", "exact", "label", "sets", "task")

    def __init__(self, task: str, annotation: Any) -> None:
        self.task = task
        self.annotation = annotation
        self.label = type_label(annotation)
        #: A value of exactly this type needs no check (``-> int`` returning 3).
        self.exact: Any = annotation if annotation in _EXACT else None
        self.sets = _accepts_set(annotation)
        self._usable: bool | None = None  # decided on first use (builds a TypeAdapter)

    def _fail(self, value: Any, why: str) -> ResultTypeError:
        return ResultTypeError(
            f"task {self.task} returned {_short.repr(value)} ({type(value).__name__}), "
            f"which its return annotation -> {self.label} does not allow: {why}",
            task=self.task, annotation=self.label)

    def check(self, value: Any, plain: Any) -> None:
        """Raise :class:`ResultTypeError` unless ``value`` (the JSON form of
        which is ``plain``) decodes under the annotation as a caller's
        ``result()`` would decode it."""
        if type(value) is self.exact:
            return
        if isinstance(value, set | frozenset) and not self.sets:
            raise self._fail(value, "a set has no order and would reach the caller as a "
                                    "list; return a sorted list, or annotate a set type")
        if self._usable is None:
            self._usable = _convertible(self.annotation)
        if not self._usable:
            return
        try:
            codec.convert(plain, self.annotation, where=f"task {self.task}: result")
        except PayloadError as exc:
            raise self._fail(value, str(exc).removeprefix(f"task {self.task}: result: ")
                             ) from None


def plan(task: str, annotation: Any) -> ResultCheck | None:
    """The check of a task's results, or None when there is nothing to check
    (no annotation, ``Any``, ``object``, or one left as an unresolved string)."""
    if (annotation is inspect.Parameter.empty or annotation is Any or annotation is object
            or isinstance(annotation, str | typing.ForwardRef)):
        return None
    return ResultCheck(task, annotation)
