"""What every command shares: settings from the parsed flags, logging."""

from __future__ import annotations

import argparse
import logging
import sys

from flowfabric_worker.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    keys = ("url", "mode", "namespace", "lanes", "concurrency", "capabilities",
            "lease_ttl", "scanners", "worker_id", "log_level", "grace_period",
            "disabled_scanners", "scanner_interval_scale", "attempt_timeouts",
            "loop_watchdog", "max_abandoned_threads", "durability", "processes")
    return Settings.load({k: getattr(args, k, None) for k in keys})


def setup_logging(level: str, tag: str = "") -> None:
    """``tag`` (e.g. ``child=1``) prefixes every line: the children of
    ``run --processes N`` share one stderr."""
    prefix = f"{tag} " if tag else ""
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format=f"%(asctime)s {prefix}level=%(levelname)s logger=%(name)s %(message)s",
    )
