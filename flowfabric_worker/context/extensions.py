"""``ctx.extensions``: the per-attempt hooks the worker installs (frame
writer, journal, waits, children, usage), built on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Marks a missing entry (None is a legitimate hook value).
_UNSET: Any = object()


class Extensions(dict[str, Any]):
    """``ctx.extensions``: feature hooks by name. A hook registered with
    :meth:`lazy` is built on first use, since most attempts use none of them
    and a short task would otherwise spend a good part of its time building
    writers and journals it never touches."""

    def __init__(self) -> None:
        super().__init__()
        self._factories: dict[str, Callable[[], Any]] = {}

    def lazy(self, key: str, factory: Callable[[], Any]) -> None:
        self._factories[key] = factory

    def peek(self, key: str) -> Any:
        """The hook if it exists already (None otherwise); never builds it."""
        return dict.get(self, key)

    def _build(self, key: str) -> Any:
        factory = self._factories.pop(key, None)
        if factory is None:
            return _UNSET
        value = factory()
        self[key] = value
        return value

    def __missing__(self, key: str) -> Any:
        value = self._build(key)
        if value is _UNSET:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        value = self._build(key)
        return default if value is _UNSET else value

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._factories
