"""Helpers for the observability tests: capture JSON log lines, run a worker."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flowfabric_worker.observability.logs import JsonFormatter


class JsonLines:
    """JSON lines written by the ``flowfabric_worker`` loggers while active."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]

    def events(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == event
                and all(r.get(k) == v for k, v in match.items())]


@contextmanager
def json_lines() -> Iterator[JsonLines]:
    """Capture the package's INFO+ lines as the ``--log-format json`` handler writes them."""
    lines = JsonLines()
    handler = logging.StreamHandler(lines.stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("flowfabric_worker")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
