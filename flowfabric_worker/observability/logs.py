"""Log output: JSON lines or text with the structured fields, and the levels.

Lifecycle lines carry their fields as ``extra=`` attributes of the record
(``execution_id``, ``task``, ``attempt``, ``lane``, ``event``, ...). The
:class:`JsonFormatter` writes every such attribute as a key of one JSON object
per line (for log shippers); the :class:`TextFormatter` appends them as
``key=value`` after the message. Any other formatter still finds them on the
record (``%(execution_id)s``).

A small stdlib formatter rather than a package such as python-json-logger:
it is the one class below, and the worker's dependencies stay as they are.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from flowfabric_worker.errors import ConfigurationError

__all__ = ["LIBRARY_LOGGERS", "JsonFormatter", "TextFormatter", "parse_levels", "setup_logging"]

#: Loggers of libraries whose DEBUG output drowns ours: kept at WARNING unless
#: named in the level spec (``--log-level DEBUG,redis=DEBUG``).
LIBRARY_LOGGERS = ("redis", "fakeredis", "asyncio", "opentelemetry", "urllib3")

_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

#: Attributes every LogRecord has: anything else on a record came as ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{base}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, every ``extra`` field, ``traceback`` when the
    record carries an exception, and the ``static`` fields (e.g. the
    ``child`` index of a ``run --processes N`` child)."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage()}
        out.update(self.static)
        out.update(_extras(record))
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<time> [tag ]level=… logger=… message key=value …`` (values with
    spaces quoted), the traceback on the following lines."""

    def __init__(self, tag: str = "") -> None:
        prefix = f"{tag} " if tag else ""
        super().__init__(f"%(asctime)s {prefix}level=%(levelname)s logger=%(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = _extras(record)
        if not fields:
            return line
        return line + "".join(f" {k}={_text_value(v)}" for k, v in fields.items())


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in "\"=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def parse_levels(spec: str) -> tuple[str, dict[str, str]]:
    """``"INFO"`` or ``"DEBUG,redis=DEBUG,flowfabric_worker.scanners=WARNING"``:
    the level of everything, and per-logger levels.
    :class:`~flowfabric_worker.errors.ConfigurationError` on an unknown level."""
    base = "INFO"
    per: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, eq, level = part.rpartition("=")
        level = level.strip().upper()
        if level not in _LEVELS:
            raise ConfigurationError(f"unknown log level {level!r} in {spec!r}")
        if eq:
            per[name.strip()] = level
        else:
            base = level
    return base, per


def setup_logging(level: str = "INFO", fmt: str = "text", tag: str = "",
                  stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger for a command: one handler on ``stream``
    (stderr) in ``fmt`` (``text`` or ``json``), the levels of ``level``
    (:func:`parse_levels`). Libraries in :data:`LIBRARY_LOGGERS` stay at
    WARNING unless the spec names them. ``tag`` (``child=1``) marks every
    line of a ``run --processes N`` child. Replaces handlers installed
    earlier (calling it twice does not double the lines); returns the handler."""
    base, per = parse_levels(level)
    if fmt not in ("text", "json"):
        raise ConfigurationError(f"unknown log format {fmt!r} (text or json)")
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        static = dict(part.split("=", 1) for part in tag.split() if "=" in part)
        handler.setFormatter(JsonFormatter(static))
    else:
        handler.setFormatter(TextFormatter(tag))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(base)
    for name in LIBRARY_LOGGERS:
        if name not in per:
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(base)))
    for name, lvl in per.items():
        logging.getLogger(name).setLevel(lvl)
    return handler
