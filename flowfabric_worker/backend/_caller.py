"""The one primitive the typed operation mixins build on."""

from __future__ import annotations

from typing import Any, TypeVar

from flowfabric_worker.protocol.function import FCall

R = TypeVar("R")


class Caller:
    """Anything that can run a library function (the :class:`Backend`)."""

    async def call(self, fn: FCall[R]) -> R:
        raise NotImplementedError

    async def call_many(self, fns: list[FCall[Any]]) -> list[Any]:
        raise NotImplementedError
