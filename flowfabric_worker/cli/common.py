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
            "loop_watchdog", "max_abandoned_threads", "durability")
    return Settings.load({k: getattr(args, k, None) for k in keys})


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
