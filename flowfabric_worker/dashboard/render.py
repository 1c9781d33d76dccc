"""Templates and the filters they use (times, durations, links).

Jinja's autoescape is on for every template: task names, outputs, payloads
and failure reasons are untrusted text (an LLM's output is HTML someone else
wrote) and are only ever inserted escaped.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from flowfabric_worker.dashboard.security import CSRF_COOKIE, FLASH_COOKIE, Keys, set_cookie

__all__ = ["Renderer", "age", "local_time", "span"]


def now_ms() -> int:
    return int(time.time() * 1000)


def local_time(ms: int | None) -> str:
    """Epoch ms as UTC wall-clock time (the browser shows it; UTC avoids
    guessing the viewer's zone on the server)."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(ms: float | None) -> str:
    """A duration, short: ``850 ms``, ``4.2 s``, ``3m 05s``, ``2h 10m``."""
    if ms is None:
        return "-"
    ms = max(0.0, float(ms))
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h < 48 else f"{h // 24}d {h % 24}h"


def age(ms: int | None) -> str:
    return "-" if not ms else span(now_ms() - ms)


def path_part(value: str) -> str:
    """An id as one URL path segment (execution ids hold ``{``, ``}``, ``:``)."""
    return quote(value, safe="")


class Renderer:
    """Renders a page with what every page needs: the mount prefix, the
    CSRF token (set as a cookie when new), a one-shot flash message."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.env = Environment(loader=PackageLoader("flowfabric_worker.dashboard", "templates"),
                               autoescape=True, undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(time=local_time, span=span, age=age, part=path_part,
                                zip_sum=lambda a, b: [x + y for x, y in zip(a, b, strict=True)])

    def page(self, request: Request, name: str, status: int = 200,
             **context: Any) -> HTMLResponse:
        csrf, fresh = self.keys.csrf_of(request)
        flash = self.keys.read_flash(request)
        html = self.env.get_template(name).render(
            root=request.scope.get("root_path") or "", csrf=csrf, flash=flash,
            # The logout button, for a signed-in operator only.
            auth=self.keys.token is not None and self.keys.authenticated(request.scope),
            **context)
        response = HTMLResponse(html, status_code=status,
                                headers={"Cache-Control": "no-store"})
        if fresh:
            set_cookie(response, request, CSRF_COOKIE, csrf)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=(request.scope.get("root_path") or "")
                                   + "/")
        return response
