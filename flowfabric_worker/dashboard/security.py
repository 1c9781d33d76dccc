"""Who may see the dashboard and act through it.

- **Auth** (only with an ``auth_token``): every route but ``/login`` and the
  static files needs ``Authorization: Bearer <token>`` or the session cookie
  the login form sets. The cookie holds an HMAC derived from the token, not
  the token; it is ``HttpOnly`` and ``SameSite=Strict``.
- **CSRF**: every POST carries a form field equal to the ``ffw_csrf``
  cookie, whose value is a random nonce signed with the app's secret
  (double submit, signed so a value planted by a sibling site does not
  pass). A request authenticated by its bearer header needs none (a browser
  cannot add that header across sites). A POST whose ``Origin`` names
  another host is refused whatever it carries.
- **Headers**: a Content-Security-Policy allowing only this origin's
  scripts and styles (no inline script), ``nosniff``, no framing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "SESSION_COOKIE", "AuthMiddleware", "Keys",
           "SecurityHeadersMiddleware"]

SESSION_COOKIE = "ffw_session"
CSRF_COOKIE = "ffw_csrf"
CSRF_FIELD = "csrf"
FLASH_COOKIE = "ffw_flash"
_PUBLIC = ("/login", "/static/")
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Keys:
    """The app's secrets: ``secret`` signs CSRF tokens and flash messages
    (random per app: a restart invalidates open forms, nothing else);
    ``token`` is the operator's auth token (None: no auth)."""

    secret: bytes
    token: str | None

    @classmethod
    def make(cls, token: str | None) -> Keys:
        return cls(secrets.token_bytes(32), token or None)

    # --- auth -----------------------------------------------------------------

    def session_value(self) -> str:
        assert self.token is not None
        return _mac(self.token.encode(), "ffw-dashboard-session")

    def bearer_ok(self, headers: Headers) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return (self.token is not None and scheme.lower() == "bearer"
                and hmac.compare_digest(given.strip().encode(), self.token.encode()))

    def authenticated(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        request = Request(scope)
        if self.bearer_ok(request.headers):
            return True
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.session_value().encode())

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(),
                                                              self.token.encode())

    # --- CSRF -----------------------------------------------------------------

    def new_csrf(self) -> str:
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{_mac(self.secret, 'csrf:' + nonce)}"

    def csrf_valid(self, value: str) -> bool:
        nonce, _, sig = value.partition(".")
        return bool(nonce) and hmac.compare_digest(sig.encode(),
                                                   _mac(self.secret, "csrf:" + nonce).encode())

    def csrf_of(self, request: Request) -> tuple[str, bool]:
        """The page's CSRF token and whether it must be set as a cookie."""
        current = request.cookies.get(CSRF_COOKIE, "")
        if current and self.csrf_valid(current):
            return current, False
        return self.new_csrf(), True

    async def check_post(self, request: Request) -> str | None:
        """Why a POST is refused (None: it may go on). Reads the form."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return "cross-origin request refused"
        if self.bearer_ok(request.headers):
            return None
        form = await request.form()
        field = str(form.get(CSRF_FIELD) or "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not field or not hmac.compare_digest(field.encode(), cookie.encode()) \
                or not self.csrf_valid(field):
            return "missing or invalid CSRF token: reload the page and try again"
        return None

    # --- flash messages (one redirect long) -------------------------------------

    def flash_cookie(self, level: str, message: str) -> str:
        body = base64.urlsafe_b64encode(json.dumps([level, message]).encode()).decode()
        return f"{body}.{_mac(self.secret, 'flash:' + body)}"

    def read_flash(self, request: Request) -> tuple[str, str] | None:
        body, _, sig = request.cookies.get(FLASH_COOKIE, "").partition(".")
        if not body or not hmac.compare_digest(sig.encode(),
                                               _mac(self.secret, "flash:" + body).encode()):
            return None
        try:
            level, message = json.loads(base64.urlsafe_b64decode(body))
        except (ValueError, TypeError):
            return None
        return str(level), str(message)


def route_path(scope: Scope) -> str:
    """The path inside this app (a mounted app's scope path keeps the prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    return path[len(root):] if root and path.startswith(root) else path


def cookie_path(request: Request) -> str:
    return (request.scope.get("root_path") or "") + "/"


def set_cookie(response: Response, request: Request, name: str, value: str, *,
               max_age: int | None = None, http_only: bool = True) -> None:
    response.set_cookie(name, value, max_age=max_age, path=cookie_path(request),
                        httponly=http_only, samesite="strict",
                        secure=request.url.scheme == "https")


class AuthMiddleware:
    """Refuses unauthenticated requests: pages redirect to the login form,
    streams and actions answer 401."""

    def __init__(self, app: ASGIApp, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.keys.token is None:
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path") or ""
        path = route_path(scope)
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in _PUBLIC) \
                or self.keys.authenticated(scope):
            await self.app(scope, receive, send)
            return
        response: Response
        accepts_html = "text/html" in Headers(scope=scope).get("accept", "")
        if scope["method"] == "GET" and accepts_html:
            response = RedirectResponse(f"{root}/login?next={quote(root + path, safe='/')}",
                                        status_code=303)
        else:
            response = PlainTextResponse("authentication required", status_code=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers += [(b"content-security-policy", _CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"same-origin")]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
