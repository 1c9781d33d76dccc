"""Running the engine roles: every scanner of the catalogue plus flow
completion dispatch, in one task group."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.backend.transport import classify
from flowfabric_worker.engine.flows import flow_scanners
from flowfabric_worker.engine.flows.completion import COMPLETION_DISPATCH, CompletionDispatcher
from flowfabric_worker.engine.runner import Scanner, ScanRunner
from flowfabric_worker.engine.scan_leases import LEASE_TTL, RangeLeases, lease_group
from flowfabric_worker.engine.scanners.budgets import budget_scanners
from flowfabric_worker.engine.scanners.catalogue import lifecycle_scanners
from flowfabric_worker.engine.schedule_firing import schedule_scanner
from flowfabric_worker.errors import ConfigurationError, TransportError

__all__ = [
    "default_scanners",
    "run_scanners",
    "select_scanners",
]

log = logging.getLogger("flowfabric_worker.scanners")


def default_scanners() -> list[Scanner]:
    """The standalone set, with 0.15's default intervals and batches: the
    lifecycle, flow and budget scanners, and the scheduler role that fires
    recurring schedules (ours; docs/schedules.md)."""
    return [*lifecycle_scanners(), *flow_scanners(), *budget_scanners(), schedule_scanner()]


def select_scanners(only: Sequence[str]) -> tuple[list[Scanner], bool]:
    """The scanners of :func:`default_scanners` named in ``only`` (which
    may also name the flow role ``completion_dispatch``), and whether that
    role is among them: what ``scan --only`` runs, e.g. the ``schedules``
    scanner alone beside a FlowFabric server. Checked before anything runs:
    an unknown or missing name is a :class:`ConfigurationError` listing the
    valid ones."""
    catalogue = default_scanners()
    valid = [*(s.name for s in catalogue), COMPLETION_DISPATCH]
    wanted = {name.strip() for name in only if name.strip()}
    unknown = wanted - set(valid)
    if unknown or not wanted:
        what = f"unknown scanner(s): {', '.join(sorted(unknown))}" if unknown \
            else "no scanner named"
        raise ConfigurationError(f"{what}; valid names: {', '.join(valid)}")
    return [s for s in catalogue if s.name in wanted], COMPLETION_DISPATCH in wanted


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
    share: bool = True,
    lease_ttl: float = LEASE_TTL,
) -> None:
    """Run the standalone maintenance scanners until ``stop`` is set.

    ``scanners`` defaults to :func:`default_scanners` (spec 05 §7.3);
    ``disabled`` drops scanners by name; ``interval_scale`` multiplies every
    default interval (tests use a small one). Safe to run in several processes:
    with ``share`` (the default) the partition ranges are spread over the live
    processes running the same scanners, each range leased (``lease_ttl``) by
    one of them (:mod:`flowfabric_worker.engine.scan_leases`), so the work is
    shared, not repeated; ``share=False`` scans every range here.

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
    if share and chosen:
        runner.leases = RangeLeases(backend, runner.ranges(),
                                    group=lease_group([s.name for s in chosen]),
                                    ttl=lease_ttl, token=runner.token)
    stop = stop or anyio.Event()
    if not await _register_lanes(backend, list(lanes or []), stop):
        return
    dispatch = scanners is None if completion_dispatch is None else completion_dispatch
    async with anyio.create_task_group() as tg:
        if dispatch and COMPLETION_DISPATCH not in off:
            tg.start_soon(CompletionDispatcher(backend).run, stop)
        if runner.leases is not None:
            # The first share before the first pass, so it is not empty.
            try:
                await runner.leases.keep()
            except Exception as exc:
                log.warning("scan range leases not taken yet: %s", exc)
            tg.start_soon(runner.leases.run, stop)
        await runner.run(stop)
        tg.cancel_scope.cancel()


async def _register_lanes(backend: Backend, lanes: list[str], stop: anyio.Event) -> bool:
    """Register the lanes, riding out a Redis outage the way terminal calls do:
    a scanner role that starts while the server is down must wait for it, not
    take its worker down with it. False when asked to stop meanwhile."""
    delay, warned = 0.1, False
    while not stop.is_set():
        try:
            await backend.add_lanes(lanes)
            return True
        except Exception as exc:
            # The transport's own test of "transient" decides, as for calls.
            kind = classify(exc)
            if not isinstance(exc, TransportError) and (kind is None or not kind[0]):
                raise
            if not warned:
                log.warning("redis unreachable, scanners wait for it: %s", exc)
                warned = True
        with anyio.move_on_after(delay):
            await stop.wait()
        delay = min(delay * 2, 2.0)
    return False
