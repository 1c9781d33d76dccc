"""Observability on the command line: ``--log-format`` and ``--metrics-port``
on ``run`` and ``scan``, and the ``metrics`` command (queue depths from the
server's indexes). docs/observability.md."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import anyio

from flowfabric_worker.cli.common import settings_from, setup_logging
from flowfabric_worker.settings import Settings

__all__ = ["add_metrics_command", "add_observability_flags", "enable_metrics",
           "export_depths", "metrics_command"]

log = logging.getLogger("flowfabric_worker.cli")


def add_observability_flags(p: argparse.ArgumentParser) -> None:
    """``--log-format`` and ``--metrics-port`` (``run``, ``scan``)."""
    p.add_argument("--log-format", dest="log_format", choices=["text", "json"],
                   help="text lines, or one JSON object per line for log shippers "
                        "(FLOWFABRIC_LOG_FORMAT, default text)")
    p.add_argument("--metrics-port", dest="metrics_port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on http://0.0.0.0:PORT/metrics "
                        "(FLOWFABRIC_METRICS_PORT; run --processes N: child i uses PORT+i)")


def add_metrics_command(commands: Any, connection_flags: Any) -> None:
    """The ``metrics`` command; ``connection_flags`` adds --url and the like."""
    p = commands.add_parser(
        "metrics", help="serve queue depth per lane and state from the server's indexes "
                        "as Prometheus metrics (no worker needed)")
    p.add_argument("--port", type=int, required=True, help="serve /metrics on this port")
    p.add_argument("--interval", type=float, default=15.0,
                   help="seconds between two reads of the indexes (default 15)")
    p.add_argument("--lane", dest="lanes", action="append", default=[],
                   help="lane to export, repeatable (default: every registered lane)")
    p.add_argument("--log-format", dest="log_format", choices=["text", "json"],
                   help="(FLOWFABRIC_LOG_FORMAT, default text)")
    connection_flags(p)
    p.set_defaults(handler=metrics_command)


def enable_metrics(port: int) -> int:
    """Install the Prometheus recorder for this process and serve
    ``/metrics`` on ``port``; returns the bound port."""
    from flowfabric_worker.observability.metrics import install
    from flowfabric_worker.observability.prometheus import PrometheusRecorder, serve

    install(PrometheusRecorder())
    bound = serve(port)
    log.info("serving Prometheus metrics on :%d/metrics", bound,
             extra={"event": "metrics_serving", "port": bound})
    return bound


async def export_depths(settings: Settings, lanes: Sequence[str] | None, interval: float,
                        stop: anyio.Event | None = None) -> None:
    """Read the queue depths into the process's ``ffw_queue_depth`` gauges
    every ``interval`` seconds."""
    from flowfabric_worker.backend.backend import Backend
    from flowfabric_worker.engine.queue_depth import QueueDepths, export_queue_depths
    from flowfabric_worker.observability.prometheus import QueueDepthGauges

    gauges = QueueDepthGauges()

    def sink(q: QueueDepths) -> None:
        gauges.update(q.depths, q.cancel_backlog)

    backend = await Backend.open(settings.url, mode=settings.mode)
    try:
        await export_queue_depths(backend, sink, interval=interval, lanes=lanes, stop=stop)
    finally:
        await backend.close()


def metrics_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.observability.prometheus import serve

    settings = settings_from(args)
    setup_logging(settings.log_level, fmt=settings.log_format)
    bound = serve(args.port)
    log.info("serving queue depths on :%d/metrics", bound,
             extra={"event": "metrics_serving", "port": bound})
    anyio.run(export_depths, settings, settings.lanes or None, args.interval)
    return 0
