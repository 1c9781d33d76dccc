"""Rendering for people: local times, ages, durations and plain tables."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime


def now_ms() -> int:
    return int(time.time() * 1000)


def local_time(ms: int | None) -> str:
    """Epoch ms as local wall-clock time with its UTC offset."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def span(ms: float) -> str:
    """A duration, short: ``850 ms``, ``4.2 s``, ``3m 05s``, ``2h 10m``, ``3d 4h``."""
    ms = max(0.0, ms)
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


def age(ms: int | None, now: int | None = None) -> str:
    """How long ago ``ms`` was (``-`` when unset)."""
    if not ms:
        return "-"
    return span((now if now is not None else now_ms()) - ms)


def when(ms: int | None, now: int | None = None) -> str:
    """Local time and age: ``2026-12-05 05:40:01 +0000 (3m 12s ago)``; a
    future time reads ``(in 3m 12s)``."""
    if not ms:
        return "-"
    now = now if now is not None else now_ms()
    rel = f"in {span(ms - now)}" if ms > now else f"{span(now - ms)} ago"
    return f"{local_time(ms)} ({rel})"


def progress(pct: str, message: str) -> str:
    text = f"{pct}%" if pct else ""
    if message:
        text = f"{text} {message}".strip()
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, max_width: int = 48) -> str:
    """Left-aligned columns; cells longer than ``max_width`` are cut with ``…``
    (the last column is never cut: nothing follows it)."""
    cut = [[c if i == len(headers) - 1 or len(c) <= max_width else c[:max_width - 1] + "…"
            for i, c in enumerate(r)] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cut)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in cut]
    return "\n".join(lines)
