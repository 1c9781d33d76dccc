"""What every command shares: settings from the parsed flags, logging."""

from __future__ import annotations

import argparse
import sys

from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.observability.logs import setup_logging as configure_logging
from flowfabric_worker.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    keys = ("url", "mode", "namespace", "lanes", "concurrency", "capabilities",
            "lease_ttl", "scanners", "worker_id", "log_level", "grace_period",
            "disabled_scanners", "scanner_interval_scale", "attempt_timeouts",
            "loop_watchdog", "max_abandoned_threads", "fail_unknown_after", "durability",
            "processes",
            "log_format", "metrics_port")
    return Settings.load({k: getattr(args, k, None) for k in keys})


def server_settings(args: argparse.Namespace) -> Settings:
    """Settings of a command that reads or changes executions kept by a
    server. ``memory://`` is refused: it is a database inside this one
    process, empty when the command starts and gone when it exits, so a
    submit would be lost and a read would find nothing."""
    settings = settings_from(args)
    if settings.url.startswith("memory://"):
        name = " ".join(str(getattr(args, a)) for a in ("command", "flow_command")
                        if getattr(args, a, None))
        raise ConfigurationError(
            f"{name} needs a Redis/Valkey server (--url redis://...): memory:// "
            "is a database inside this one process and dies with it")
    return settings


def setup_logging(level: str, tag: str = "", fmt: str = "text") -> None:
    """``level`` as ``--log-level`` takes it (``DEBUG,redis=DEBUG``), ``fmt``
    ``text`` or ``json`` (observability/logs.py); ``tag`` (e.g. ``child=1``)
    marks every line: the children of ``run --processes N`` share one stderr."""
    configure_logging(level, fmt, tag, sys.stderr)
