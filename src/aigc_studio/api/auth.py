"""Sign-in on a team server: one ASGI middleware that says who each request is, and the login page.

When auth is on (setting ``auth``: on, or auto with a bind address other than loopback), every request
but the open paths below must name a user, in one of three ways:

- ``Authorization: Bearer <key>``: an API key (``aigc keys create``), as OpenAI clients send their key;
- ``Authorization: Basic <user:password>``: as A1111's ``--api-auth`` takes it (webuiapi's ``set_auth``);
- the ``aigc_session`` cookie that the login page (``/login``) sets for the web UI.

The request then runs under ``principal.acting_as(user)``, so storage and services see who it is. A
missing or refused credential is a 401 in the path's error shape (OpenAI's ``invalid_api_key`` on /v1,
A1111's on /sdapi); a browser asking for a page is sent to the login page instead. With auth off the
middleware is not installed: the local studio works exactly as without it.
"""

from __future__ import annotations

import base64
import binascii
import html
from collections.abc import Callable
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Unauthorized
from ..principal import Principal, acting_as
from ..services.users import SESSION_COOKIE, SESSION_SECONDS

# Open without signing in: the health check (load balancers, `aigc` scripts), the API's description (it
# holds no data: the same for everyone), and the login page itself.
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/login"})
_HOW = (
    "send an API key as 'Authorization: Bearer <key>' (an admin makes one with `aigc keys create`), "
    "a user name and password as HTTP basic auth, or sign in at /login"
)


def _is_page_request(scope: Scope) -> bool:
    from .app import is_api_path

    accept = Headers(scope=scope).get("accept", "")
    return scope["method"] in ("GET", "HEAD") and not is_api_path(scope["path"]) and "text/html" in accept


class Authentication:
    """Resolve each request's caller to a Principal and run the request as them; refuse the rest (401).

    ``respond(scope, message)`` builds the 401 in the path's error shape."""

    def __init__(self, app: ASGIApp, respond: Callable[[Scope, str], Response]):
        self.app, self.respond = app, respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        users = scope["app"].state.studio.users
        try:
            # Off the event loop: a password check (Argon2) takes tens of milliseconds.
            who = await run_in_threadpool(identify, users, Headers(scope=scope))
        except Unauthorized as exc:
            await self._refuse(scope, receive, send, exc.message)
            return
        if who is None:
            if scope["type"] == "http" and _is_page_request(scope):
                target = scope["path"] + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
                await RedirectResponse(f"/login?next={quote(target)}", status_code=303)(scope, receive, send)
                return
            await self._refuse(scope, receive, send, f"sign-in required: {_HOW}")
            return
        with acting_as(who):
            await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, message: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "sign-in required"})
            return
        response = self.respond(scope, message)
        basic = scope["path"].startswith("/sdapi/")
        response.headers["WWW-Authenticate"] = 'Basic realm="AIGC Studio"' if basic else "Bearer"
        await response(scope, receive, send)


def identify(users, headers: Headers) -> Principal | None:
    """The caller that ``headers`` name (a key, basic auth, a session cookie); None when they name no one.
    Unauthorized when a credential is sent but refused (the message says why, never what was sent)."""
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    scheme, credential = scheme.lower(), credential.strip()
    if scheme == "bearer" and credential:
        return users.principal_for_key(credential)
    if scheme == "basic" and credential:
        try:
            name, colon, password = base64.b64decode(credential, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            colon = ""
        if not colon:
            raise Unauthorized("basic auth must carry 'user:password' in base64")
        return users.principal_for_basic(name, password)
    if scheme:
        raise Unauthorized(f"the Authorization header must be 'Bearer <key>' or 'Basic <user:password>'; {_HOW}")
    cookie = _cookie(headers.get("cookie", ""))
    return users.principal_for_session(cookie) if cookie else None


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value
    return None


# -- the login page ------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>AIGC Studio — sign in</title>
<style>
body {{ font-family: system-ui, "PingFang SC", "Microsoft YaHei", sans-serif; background: #f5f6fa; margin: 0; }}
form {{ max-width: 320px; margin: 12vh auto; padding: 28px; background: #fff; border-radius: 10px;
  box-shadow: 0 2px 12px rgba(0,0,0,.08); display: flex; flex-direction: column; gap: 12px; }}
h1 {{ font-size: 1.3rem; margin: 0 0 4px; }}
label {{ display: flex; flex-direction: column; gap: 4px; font-size: .9rem; }}
input {{ padding: 8px; font-size: 1rem; border: 1px solid #ccd; border-radius: 6px; }}
button {{ padding: 10px; font-size: 1rem; border: 0; border-radius: 6px; background: #4f46e5; color: #fff; }}
.error {{ color: #b91c1c; font-size: .9rem; }}
</style></head>
<body><form method="post" action="/login">
<h1>AIGC Studio</h1>
{error}
<label>User name · 用户名 <input id="login-name" name="name" autocomplete="username" required autofocus></label>
<label>Password · 密码 <input id="login-password" name="password" type="password" autocomplete="current-password"
 required></label>
<input type="hidden" name="next" value="{next}">
<button id="login-submit" type="submit">Sign in · 登录</button>
</form></body></html>
"""


def _safe_next(target: str | None) -> str:
    # Only a path of this server: "//evil.example" or "https://..." would send the user elsewhere, and
    # browsers drop tabs and newlines from a URL ("/\t/evil.example" is "//evil.example").
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(c.isspace() or not c.isprintable() for c in target):
        return "/"
    return target


def _page(next_path: str, error: str = "", status: int = 200) -> HTMLResponse:
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(_PAGE.format(error=shown, next=html.escape(_safe_next(next_path))), status_code=status)


@router.get("/login")
def login_page(next: str = "/") -> HTMLResponse:
    return _page(next)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    name, password = str(form.get("name") or ""), str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or "/"))
    users = request.app.state.studio.users
    try:
        who = await run_in_threadpool(users.sign_in, name, password)
    except Unauthorized:
        return _page(target, "Wrong user name or password · 用户名或密码错误", status=401)
    token = await run_in_threadpool(users.start_session, who)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,  # no page script can read it
        samesite="lax",  # not sent with another site's POST: no cross-site requests in the user's name
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await run_in_threadpool(request.app.state.studio.users.end_session, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
