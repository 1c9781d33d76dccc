"""The client of a test environment: a :class:`Client` whose run handles
unlock time skipping while their ``result()`` is awaited."""

from __future__ import annotations

from typing import Any, TypeVar

from flowfabric_worker.client.client import Client
from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.testing.skipper import TimeSkipper

__all__ = ["EnvClient", "EnvRunHandle"]

R = TypeVar("R")


class EnvRunHandle(RunHandle[R]):
    """A :class:`RunHandle` whose :meth:`result` lets virtual time pass
    (the environment skips to the next timer whenever nothing can run)."""

    skipper: TimeSkipper | None = None

    async def result(self, timeout: float | None = None) -> R:  # noqa: ASYNC109
        if self.skipper is None:
            return await super().result(timeout)
        async with self.skipper.unlocked():
            return await super().result(timeout)


class EnvClient(Client):
    """``env.client``: every handle it gives out is an :class:`EnvRunHandle`.
    (Flow member handles are not: wait for those with ``env.result(run)``.)"""

    skipper: TimeSkipper | None = None

    def wrap(self, run: RunHandle[R]) -> RunHandle[R]:
        handle: EnvRunHandle[R] = EnvRunHandle(self, run.id, run.task,
                                               duplicate=run.duplicate)
        handle.skipper = self.skipper
        return handle

    # Typed by Client's overloads; these only re-wrap what it returns.
    async def submit(self, *args: Any, **kwargs: Any) -> Any:
        return self.wrap(await super().submit(*args, **kwargs))

    async def submit_many(self, *args: Any, **kwargs: Any) -> Any:
        return [self.wrap(run) for run in await super().submit_many(*args, **kwargs)]

    def run(self, execution_id: str, task: Any = None) -> Any:
        return self.wrap(super().run(execution_id, task))
