"""``run`` and ``scan``: the commands that start long-running processes."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any, cast

import anyio

from flowfabric_worker.authoring.decorators import TaskDefinition
from flowfabric_worker.cli.common import settings_from, setup_logging
from flowfabric_worker.cli.metrics_commands import enable_metrics, export_depths
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


async def _run_worker(settings: Settings, tasks: list[TaskDefinition[Any, Any]],
                      dashboard_port: int | None = None) -> None:
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
            fail_unknown_after=settings.fail_unknown_after,
            waitpoint_hmac_secret=(settings.waitpoint_hmac_secret.get_secret_value()
                                   if settings.waitpoint_hmac_secret else None),
        )
        if dashboard_port is None:
            await worker.run(install_signals=True)
            return
        from flowfabric_worker.cli.dashboard_commands import serve_in_worker

        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_in_worker, client, dashboard_port, stop)
            try:
                await worker.run(install_signals=True)
            finally:
                stop.set()


def child_commands(raw_argv: Sequence[str], settings: Settings) -> list[list[str]]:
    """The command lines of ``run --processes N``'s children: the parent's own
    arguments, so every child has the same settings and task modules, plus
    ``--processes 1`` (appended: argparse keeps the last value, whatever form
    or abbreviation the parent's flag had, and a flag beats
    FLOWFABRIC_PROCESSES).

    Scanners run in every child (unless ``--no-scanners``): the children
    share the partition ranges through range leases (engine/scan_leases.py),
    so N children scan each partition once, an extra child costs a lease
    renewal every 2 s, and maintenance goes on while one child restarts."""
    argv = list(raw_argv)
    # Flags after a "--" would be read as task modules.
    cut = argv.index("--") if "--" in argv else len(argv)
    commands = []
    for index in range(settings.processes):
        extra = ["--processes", "1", "--child-index", str(index)]
        commands.append([sys.executable, "-m", "flowfabric_worker.cli",
                         *argv[:cut], *extra, *argv[cut:]])
    return commands


def _supervise(args: argparse.Namespace, settings: Settings) -> int:
    from flowfabric_worker.worker.supervisor import Supervisor

    logging.getLogger("flowfabric_worker.cli").info(
        "starting %d worker processes for %s", settings.processes, " ".join(args.modules))
    # raw_argv is set by main(); a handler called another way has sys.argv.
    raw_argv = getattr(args, "raw_argv", None) or sys.argv[1:]
    return Supervisor(child_commands(raw_argv, settings),
                      grace_period=settings.grace_period).run()


def run_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    child = getattr(args, "child_index", None)
    setup_logging(settings.log_level, f"child={child}" if child is not None else "",
                  settings.log_format)
    if settings.processes > 1:
        return _supervise(args, settings)
    if settings.metrics_port is not None:  # children of --processes N: one port each
        enable_metrics(settings.metrics_port + (child or 0) if settings.metrics_port else 0)
    sys.path.insert(0, ".")
    tasks = collect_tasks(args.modules)
    logging.getLogger("flowfabric_worker.cli").info(
        "starting tasks=%s lanes=%s", ",".join(sorted(t.name for t in tasks)),
        ",".join(settings.lanes) or "(from tasks)")
    port = getattr(args, "dashboard_port", None)
    if port is not None:
        from flowfabric_worker.cli.dashboard_commands import load_dashboard

        load_dashboard()  # a missing extra fails before the worker starts
        # run --processes N: child i serves on PORT+i, as --metrics-port does
        port = port + (child or 0) if port else 0
    # Everything imported so far (the SDK, the task modules and what they
    # import) lives as long as the process: moved out of the collector's
    # generations, it is no longer re-scanned by every full collection (about
    # 3% of a short task's CPU in a busy worker; Python's own advice for
    # long-running servers). This process is ours, so the global setting is.
    gc.collect()
    gc.freeze()
    anyio.run(_run_worker, settings, tasks, port)
    return 0


def scan_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.backend.backend import Backend
    from flowfabric_worker.engine.roles import run_scanners, select_scanners

    settings = settings_from(args)
    only = [n for value in getattr(args, "only_scanners", None) or [] for n in value.split(",")]
    # Checked before connecting: a typo exits 2 at once, having touched nothing.
    scanners, dispatch = select_scanners(only) if only else (None, None)
    setup_logging(settings.log_level, fmt=settings.log_format)
    if settings.metrics_port is not None:
        enable_metrics(settings.metrics_port)

    async def go() -> None:
        backend = await Backend.open(settings.url, mode=settings.mode)
        try:
            async with anyio.create_task_group() as tg:
                if settings.metrics_port is not None:  # and the backlog, from the indexes
                    tg.start_soon(export_depths, settings, settings.lanes or None, 15.0)
                await run_scanners(backend, lanes=settings.lanes or None,
                                   scanners=scanners, completion_dispatch=dispatch,
                                   disabled=settings.disabled_scanners,
                                   interval_scale=settings.scanner_interval_scale)
                tg.cancel_scope.cancel()
        finally:
            await backend.close()

    anyio.run(go)
    return 0
