"""What the dashboard changes (POST only, CSRF-checked): send a signal,
cancel, replay; and the login form.

Each action answers with a redirect back to the execution's page (303, so a
reload does not send it again) and a one-shot message saying what happened
or why nothing did. Input is checked before anything is sent: the signal's
JSON is parsed here, its size, depth and (where the waitpoint declares one)
schema are checked by the client's own validation.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from flowfabric_worker.client.client import Client
from flowfabric_worker.client.replay import replay
from flowfabric_worker.dashboard.render import Renderer, path_part
from flowfabric_worker.dashboard.security import (
    FLASH_COOKIE,
    SESSION_COOKIE,
    Keys,
    set_cookie,
)
from flowfabric_worker.errors import FlowFabricError

__all__ = ["Actions"]

#: Who the library records as the sender of a dashboard signal.
SOURCE = "dashboard"


class Actions:
    def __init__(self, client: Client, keys: Keys, renderer: Renderer) -> None:
        self.client = client
        self.keys = keys
        self.r = renderer

    def _back(self, request: Request, eid: str, level: str, message: str) -> Response:
        root = request.scope.get("root_path") or ""
        response = RedirectResponse(f"{root}/executions/{path_part(eid)}", status_code=303)
        set_cookie(response, request, FLASH_COOKIE, self.keys.flash_cookie(level, message),
                   max_age=60)
        return response

    async def _checked(self, request: Request) -> Response | None:
        refused = await self.keys.check_post(request)
        return None if refused is None else PlainTextResponse(refused, status_code=403)

    async def signal(self, request: Request) -> Response:
        if (refused := await self._checked(request)) is not None:
            return refused
        eid = request.path_params["eid"]
        form = await request.form()
        name = str(form.get("name") or "").strip()
        text = str(form.get("payload") or "").strip()
        if not name:
            return self._back(request, eid, "error", "a signal needs a name")
        payload: Any = None
        if text:
            try:
                payload = json.loads(text)
            except ValueError as exc:
                return self._back(request, eid, "error",
                                  f"the payload is not valid JSON ({exc}); nothing was sent")
        try:
            outcome = await self.client.signal(eid, name, payload, source=SOURCE,
                                               source_type="operator")
        except FlowFabricError as exc:
            return self._back(request, eid, "error", f"signal {name!r} not sent: {exc}")
        return self._back(request, eid, "ok", f"signal {name!r}: {outcome.status}")

    async def cancel(self, request: Request) -> Response:
        if (refused := await self._checked(request)) is not None:
            return refused
        eid = request.path_params["eid"]
        form = await request.form()
        reason = str(form.get("reason") or "").strip() or "cancelled from the dashboard"
        try:
            core = await self.client.run(eid).info()
            if core.is_terminal:
                return self._back(request, eid, "error",
                                  f"already {core.public_state}: nothing to cancel")
            before = await self.client.cancel(eid, reason)
        except FlowFabricError as exc:
            return self._back(request, eid, "error", f"not cancelled: {exc}")
        return self._back(request, eid, "ok", f"cancelled (was {before})")

    async def replay(self, request: Request) -> Response:
        if (refused := await self._checked(request)) is not None:
            return refused
        eid = request.path_params["eid"]
        try:
            before = await replay(self.client.backend, eid)
        except FlowFabricError as exc:
            return self._back(request, eid, "error", f"not replayed: {exc}")
        return self._back(request, eid, "ok", f"replayed (was {before})")

    # --- login ------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if self.keys.token is None:
            return RedirectResponse(f"{request.scope.get('root_path') or ''}/", 303)
        return self.r.page(request, "login.html", next=_local(request.query_params.get("next")),
                           failed=False)

    async def login(self, request: Request) -> Response:
        if (refused := await self._checked(request)) is not None:
            return refused
        form = await request.form()
        target = _local(str(form.get("next") or ""))
        if not self.keys.token_matches(str(form.get("token") or "")):
            return self.r.page(request, "login.html", status=401, next=target, failed=True)
        response = RedirectResponse(target or f"{request.scope.get('root_path') or ''}/", 303)
        set_cookie(response, request, SESSION_COOKIE, self.keys.session_value())
        return response

    async def logout(self, request: Request) -> Response:
        if (refused := await self._checked(request)) is not None:
            return refused
        root = request.scope.get("root_path") or ""
        response = RedirectResponse(f"{root}/login", 303)
        response.delete_cookie(SESSION_COOKIE, path=root + "/")
        return response


def _local(target: str | None) -> str:
    """A redirect target on this site only (an open redirect would let a
    link to the login page send the operator elsewhere)."""
    if not target:
        return ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return ""
    return target
