"""Running the engine roles: every scanner of the catalogue plus flow
completion dispatch, in one task group."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.flows import flow_scanners
from flowfabric_worker.engine.flows.completion import COMPLETION_DISPATCH, CompletionDispatcher
from flowfabric_worker.engine.runner import Scanner, ScanRunner
from flowfabric_worker.engine.scanners.budgets import budget_scanners
from flowfabric_worker.engine.scanners.catalogue import lifecycle_scanners
from flowfabric_worker.errors import ConfigurationError

__all__ = [
    "default_scanners",
    "run_scanners",
]


def default_scanners() -> list[Scanner]:
    """The standalone set, with 0.15's default intervals and batches: the
    lifecycle, flow and budget scanners."""
    return [*lifecycle_scanners(), *flow_scanners(), *budget_scanners()]


async def run_scanners(
    backend: Backend,
    *,
    stop: anyio.Event | None = None,
    lanes: Sequence[str] | None = None,
    scanners: Sequence[Scanner] | None = None,
    disabled: Sequence[str] = (),
    interval_scale: float = 1.0,
    slice_size: int = 32,
    completion_dispatch: bool | None = None,
) -> None:
    """Run the standalone maintenance scanners until ``stop`` is set.

    ``scanners`` defaults to :func:`default_scanners` (spec 05 §7.3);
    ``disabled`` drops scanners by name; ``interval_scale`` multiplies every
    default interval (tests use a small one). Safe to run in several processes:
    partition slices are leased per tick, so the work is shared, not repeated.

    ``completion_dispatch`` (default: on with the default catalogue) also runs
    the flow completion subscriber (spec 05 §8); ``disabled`` may name it
    (``"completion_dispatch"``) like any scanner.
    """
    off = set(disabled)
    chosen = list(scanners) if scanners is not None else default_scanners()
    unknown = off - {s.name for s in chosen} - {COMPLETION_DISPATCH}
    if unknown:
        raise ConfigurationError(
            f"unknown scanner(s) to disable: {', '.join(sorted(unknown))}; "
            f"known: {', '.join([*(s.name for s in chosen), COMPLETION_DISPATCH])}")
    chosen = [dataclasses.replace(s, interval=s.interval * interval_scale)
              for s in chosen if s.name not in off]
    runner = ScanRunner(backend, chosen, lanes=lanes, slice_size=slice_size)
    await backend.add_lanes(list(lanes or []))
    dispatch = scanners is None if completion_dispatch is None else completion_dispatch
    stop = stop or anyio.Event()
    async with anyio.create_task_group() as tg:
        if dispatch and COMPLETION_DISPATCH not in off:
            tg.start_soon(CompletionDispatcher(backend).run, stop)
        await runner.run(stop)
        tg.cancel_scope.cancel()
