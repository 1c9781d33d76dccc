"""``run`` and ``scan``: the commands that start long-running processes."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any, cast

import anyio

from flowfabric_worker.authoring.decorators import TaskDefinition
from flowfabric_worker.cli.common import settings_from, setup_logging
from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.settings import Settings


def collect_tasks(specs: Sequence[str]) -> list[TaskDefinition[Any, Any]]:
    """Import ``MODULE`` or ``MODULE:ATTR`` and collect its TaskDefinitions."""
    found: dict[str, TaskDefinition[Any, Any]] = {}
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
        if attr:
            obj = getattr(module, attr, None)
            candidates: list[Any] = list(obj) if isinstance(obj, list | tuple) else [obj]
            if not all(isinstance(t, TaskDefinition) for t in candidates):
                raise ConfigurationError(f"{spec} is not a task or a list of tasks")
            items: list[TaskDefinition[Any, Any]] = candidates
        else:
            items = [v for v in vars(module).values() if isinstance(v, TaskDefinition)]
        for t in items:
            found[t.name] = t
    if not found:
        raise ConfigurationError(f"no tasks found in {', '.join(specs)}")
    return list(found.values())


async def _run_worker(settings: Settings, tasks: list[TaskDefinition[Any, Any]]) -> None:
    from flowfabric_worker.client.client import Client
    from flowfabric_worker.worker.worker import Worker

    async with Client.connect(settings.url, mode=settings.mode,
                              namespace=settings.namespace, limits=settings.limits,
                              durability=settings.durability) as client:
        worker = Worker(
            client, tasks=cast(list[Any], tasks), lanes=settings.lanes or None,
            concurrency=settings.concurrency, capabilities=settings.capabilities,
            lease_ttl=settings.lease_ttl, worker_id=settings.worker_id,
            grace_period=settings.grace_period, scanners=settings.scanners,
            scanner_interval_scale=settings.scanner_interval_scale,
            disabled_scanners=settings.disabled_scanners,
            attempt_timeouts=settings.attempt_timeouts, loop_watchdog=settings.loop_watchdog,
            max_abandoned_threads=settings.max_abandoned_threads,
            waitpoint_hmac_secret=(settings.waitpoint_hmac_secret.get_secret_value()
                                   if settings.waitpoint_hmac_secret else None),
        )
        await worker.run(install_signals=True)


def run_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    setup_logging(settings.log_level)
    sys.path.insert(0, ".")
    tasks = collect_tasks(args.modules)
    logging.getLogger("flowfabric_worker.cli").info(
        "starting tasks=%s lanes=%s", ",".join(sorted(t.name for t in tasks)),
        ",".join(settings.lanes) or "(from tasks)")
    anyio.run(_run_worker, settings, tasks)
    return 0


def scan_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.backend.backend import Backend
    from flowfabric_worker.engine.roles import run_scanners

    settings = settings_from(args)
    setup_logging(settings.log_level)

    async def go() -> None:
        backend = await Backend.open(settings.url, mode=settings.mode)
        try:
            await run_scanners(backend, lanes=settings.lanes or None,
                               disabled=settings.disabled_scanners,
                               interval_scale=settings.scanner_interval_scale)
        finally:
            await backend.close()

    anyio.run(go)
    return 0
