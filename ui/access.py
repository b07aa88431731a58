"""Who may reach the panel.

- `check_binding(host, password)`: the panel binds loopback by default; any other address needs a password,
  else start-up is refused (`AccessRefused`, with the reason) before anything else starts.
- With a password set, `install(app, password)` guards every page and every action: an ASGI middleware lets
  through only the login form and NiceGUI's static assets until the browser holds a signed session cookie.
  HTTP requests are redirected to `/login?next=...`; websocket (NiceGUI's event channel) connections are
  closed. The login form is plain HTML posted to `/login` (no websocket needed to sign in); the password is
  compared in constant time. Sessions last until the panel restarts (a fresh signing key per start).
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import secrets
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
_OPEN_PREFIXES = ("/_nicegui/", "/favicon")  # versioned static assets: no data, no actions
SESSION_COOKIE = "walltrack_panel"


class AccessRefused(Exception):
    """The panel must not start with this configuration (operational: fix the settings)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, password: str | None) -> None:
    if not is_loopback(host) and not password:
        raise AccessRefused(
            f"refusing to serve the panel on {host}: binding an address other than loopback (127.0.0.1, ::1) "
            "exposes trading controls to the network; set WALLTRACK_PANEL_PASSWORD, or set PANEL_HOST=127.0.0.1")


class _Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in (LOGIN_PATH, LOGOUT_PATH) or path.startswith(_OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        if scope.get("session", {}).get("auth") is True:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})
            return None
        if path.startswith("/_nicegui_ws"):  # socket.io long-polling: no redirect, just no
            response: Any = HTMLResponse("sign in first", status_code=401)
        else:
            target = path + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
            response = RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)
        await response(scope, receive, send)
        return None


def _safe_next(value: str | None) -> str:
    """Only a local path: never an open redirect."""
    if not value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


_FORM = """<!doctype html><html><head><meta charset="utf-8"><title>WallTrack — sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;padding-top:12vh}}
form{{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px #0002;min-width:18rem}}
h1{{font-size:1.3rem;margin:0 0 1rem}} input{{width:100%;padding:.5rem;margin:.4rem 0 1rem;box-sizing:border-box}}
button{{padding:.5rem 1.2rem}} .err{{color:#b00020;margin-bottom:.8rem}}</style></head>
<body><form method="post" action="/login"><h1>WallTrack panel</h1>{error}
<label for="password">Password</label><input id="password" name="password" type="password" autofocus required>
<input type="hidden" name="next" value="{next}"><button type="submit">Sign in</button></form></body></html>"""


def install(app: Any, password: str) -> None:
    """Guard every route of `app` (NiceGUI's FastAPI app) behind the login form. Call before the server starts."""
    expected = password.encode()

    async def login_form(request: Request) -> HTMLResponse:
        nxt = html.escape(_safe_next(request.query_params.get("next")), quote=True)
        return HTMLResponse(_FORM.format(error="", next=nxt))

    async def login(request: Request) -> Any:
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (fields.get("password") or [""])[0].encode()
        nxt = _safe_next((fields.get("next") or ["/"])[0])
        if not hmac.compare_digest(given, expected):
            body = _FORM.format(error='<div class="err" role="alert">Wrong password.</div>', next=html.escape(nxt, quote=True))
            return HTMLResponse(body, status_code=401)
        request.session.clear()
        request.session["auth"] = True
        return RedirectResponse(nxt, status_code=303)

    async def logout(request: Request) -> RedirectResponse:
        request.session.clear()
        return RedirectResponse(LOGIN_PATH, status_code=303)

    app.add_api_route(LOGIN_PATH, login_form, methods=["GET"], include_in_schema=False)
    app.add_api_route(LOGIN_PATH, login, methods=["POST"], include_in_schema=False)
    app.add_api_route(LOGOUT_PATH, logout, methods=["GET", "POST"], include_in_schema=False)
    # Added last = outermost: the session is read before the guard looks at it.
    app.add_middleware(_Guard)
    app.add_middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), session_cookie=SESSION_COOKIE,
                       same_site="strict", https_only=False, max_age=12 * 3600)
