"""The studio's HTTP server: one FastAPI app, one port, every API (and later the web UI)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..config import load_config
from ..errors import StudioError, TooManyRequests, validation_message
from ..studio import Studio
from . import auth
from .auth import OPEN_PATHS, Authentication
from .file_guard import OwnFilesOnly
from .limits import RequestLimits, document_limits
from .openapi import document_sign_in, drop_default_422
from .routers import arena, editing, openai, prompts, sdapi, templates
from .routers import code as code_api
from .routers import compare as compare_api
from .routers import inspect as inspect_api
from .routers import studio as studio_api
from .routers import users as users_api
from .routers import write as write_api

log = logging.getLogger("aigc_studio.server")


class BodyTooLarge(HTTPException):
    """Raised while a request body streams in past the limit. An HTTPException, so that FastAPI passes
    it through from reading the body (other errors there become a 400) to the 413 handler."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class BodyLimit:
    """A limit on request bodies: a Content-Length over it is refused before anything is read; a body
    without one (chunked) is counted as it arrives and refused once it passes the limit. Either way
    the client gets a 413 in the path's error shape, and no more of the body is held in memory."""

    def __init__(self, app: ASGIApp, limit: int, respond: Callable[[Scope], JSONResponse]):
        self.app, self.limit, self.respond = app, limit, respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self.respond(scope)(scope, receive, send)
            return
        received, started = 0, False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:
                raise
            await self.respond(scope)(scope, receive, send)


# The paths the APIs own: nothing under them is the web UI's, which is mounted at "/".
API_PREFIXES = ("/v1", "/sdapi", "/api", "/health")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def is_api_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES)


class DeclaredRoutes:
    """Routing for the paths the APIs declare, ahead of the web UI mounted at "/" (which would answer
    anything the API routes do not match with its own 404 page).

    A path an API route declares, asked with a method no route declares for it, is a 405 with an
    ``Allow`` header listing the methods that are; an unknown path under an API's prefix is a 404. Both
    in that API's error shape. HEAD is answered wherever GET is, as GET without its body (HTTP's rule;
    FastAPI's routes take GET alone). Every other request goes on to the routes, and the UI."""

    def __init__(self, app: ASGIApp, api: FastAPI, respond: Callable[[Scope, int, str, str], JSONResponse]):
        self.app, self.api, self.respond = app, api, respond
        # What a method and path match, kept: matching asks each of the ~90 routes in turn, which took
        # more of a request's time than anything else in the studio's own code.
        self._seen: dict[tuple, Match] = {}

    def _match(self, scope: Scope, method: str | None = None) -> Match:
        """FULL where an API route takes this method and path, PARTIAL where one takes the path with
        another method, else NONE (the web UI's mount is not asked)."""
        scope = {**scope, "method": method} if method else scope
        routes = self.api.router.routes
        key = (scope["method"], scope.get("root_path", ""), scope["path"], len(routes))
        found = self._seen.get(key)
        if found is None:
            found = Match.NONE
            for route in routes:
                if isinstance(route, Mount):
                    continue
                match = route.matches(scope)[0]
                if match == Match.FULL:
                    found = match
                    break
                if match == Match.PARTIAL:
                    found = match
            if len(self._seen) >= 4096:  # a flood of unknown paths
                self._seen.clear()
            self._seen[key] = found
        return found

    def _allows(self, scope: Scope, method: str) -> bool:
        method = "GET" if method == "HEAD" else method
        return self._match(scope, method) == Match.FULL

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self._match(scope)
        if found == Match.FULL:
            await self.app(scope, receive, send)
        elif scope["method"] == "HEAD" and self._allows(scope, "HEAD"):

            async def headers_only(message: Message) -> None:
                if message["type"] == "http.response.body":
                    message = {**message, "body": b""}
                await send(message)

            await self.app({**scope, "method": "GET"}, receive, headers_only)
        elif found == Match.PARTIAL:
            allowed = [m for m in _METHODS if self._allows(scope, m)]
            message = f"{scope['method']} is not allowed on {scope['path']}; allowed: {', '.join(allowed)}"
            response = self.respond(scope, 405, message, "method_not_allowed")
            response.headers["Allow"] = ", ".join(allowed)
            await response(scope, receive, send)
        elif is_api_path(scope["path"]):
            message = f"there is no endpoint {scope['path']}; the API's endpoints are listed at /docs"
            await self.respond(scope, 404, message, "not_found")(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class Health(BaseModel):
    """The server can answer: the default text model is loaded."""

    status: Literal["ok"]
    model: str = Field(description="The default text model.")
    version: str


class HealthNotReady(BaseModel):
    """The default text model is still loading, or failed to load (``error`` says why)."""

    status: Literal["loading", "error"]
    model: str = Field(description="The default text model.")
    error: str | None = Field(None, description="Why the model could not be loaded (status error).")


def create_app(studio: Studio | None = None, *, load_default: bool = True) -> FastAPI:
    """Build the server app. ``studio`` defaults to one built from the environment at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = studio is None
        app.state.studio = studio or Studio()
        app.state.load_error = None
        app.state.ready = threading.Event()

        def load_default_model() -> None:
            # /health answers 503 until this is done, so a client can wait for a warm model.
            try:
                app.state.studio.registry.worker(app.state.studio.registry.default_model)
            except StudioError as exc:
                app.state.load_error = exc.message
                log.error("default model failed to load: %s", exc.message)
            finally:
                app.state.ready.set()

        if load_default:
            threading.Thread(target=load_default_model, name="load-default", daemon=True).start()
        else:
            app.state.ready.set()
        yield
        if owned:
            app.state.studio.close()

    app = FastAPI(title="AIGC Studio", version=__version__, lifespan=lifespan)
    config = studio.config if studio is not None else load_config()
    max_body_mb = int(config.max_body_mb)
    too_large = (
        f"the request body is larger than the limit of {max_body_mb} MiB "
        "(setting max_body_mb, environment variable AIGC_MAX_BODY_MB)"
    )

    def error_response(
        request: Request, status: int, message: str, param: str | None, code: str | None, kind: str
    ) -> JSONResponse:
        if status < 500:
            # A user's mistake is routine: one line that says what was refused, never a traceback.
            shown = 422 if status == 400 and request.url.path.startswith("/sdapi/") else status
            log.info("%s %s refused (%d): %s", request.method, request.url.path, shown, message)
        if request.url.path.startswith("/sdapi/"):
            # A1111's shape (modules/api/api.py): what failed, and the message in "detail" and "errors".
            return JSONResponse(
                {"error": kind, "detail": message, "body": "", "errors": message},
                status_code=422 if status == 400 else status,
            )
        kind = "server_error" if status >= 500 else "invalid_request_error"
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return JSONResponse(body, status_code=status)

    def studio_error_response(request: Request, exc: StudioError) -> JSONResponse:
        response = error_response(request, exc.status, exc.message, exc.param, exc.code, type(exc).__name__)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
        return studio_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            message, param = "the request body is not valid JSON: " + errors[0].get("ctx", {}).get("error", ""), None
        else:
            message, param = validation_message(errors)
        return error_response(request, 400, message, param, None, "ValidationError")

    @app.exception_handler(ValidationError)
    async def options_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        message, param = validation_message(exc.errors())
        return error_response(request, 400, message, param, None, "ValidationError")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc, BodyTooLarge):
            return error_response(request, 413, too_large, None, "too_large", "TooLarge")
        # Starlette's and FastAPI's own (a body that cannot be read, ...): the path's shape too.
        response = error_response(request, exc.status_code, str(exc.detail), None, None, type(exc).__name__)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # A real bug: uvicorn logs its traceback (Starlette re-raises it after this answer); the client
        # gets the path's error shape instead of a bare text page.
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        return error_response(request, 500, message, None, "internal_error", "InternalError")

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": HealthNotReady, "description": "The default model is loading, or failed to."}},
    )
    def health(request: Request) -> JSONResponse:
        state = request.app.state
        model = state.studio.registry.default_model
        if not state.ready.is_set():
            return JSONResponse({"status": "loading", "model": model}, status_code=503)
        if state.load_error:
            return JSONResponse({"status": "error", "model": model, "error": state.load_error}, status_code=503)
        return JSONResponse({"status": "ok", "model": model, "version": __version__})

    def too_large_response(scope: Scope) -> JSONResponse:
        request = Request(scope)
        return error_response(request, 413, too_large, None, "too_large", "TooLarge")

    def routing_response(scope: Scope, status: int, message: str, code: str) -> JSONResponse:
        kind = "MethodNotAllowed" if status == 405 else "NotFound"
        return error_response(Request(scope), status, message, None, code, kind)

    def unauthorized_response(scope: Scope, message: str) -> JSONResponse:
        return error_response(Request(scope), 401, message, None, "invalid_api_key", "Unauthorized")

    app.add_middleware(OwnFilesOnly)  # innermost: the principal is set by the time it runs
    app.add_middleware(BodyLimit, limit=max_body_mb * 2**20, respond=too_large_response)
    app.add_middleware(DeclaredRoutes, api=app, respond=routing_response)
    # Outside the routing, so that a flood of unknown paths counts too; inside authentication (added
    # after it), which sets the user it counts against.
    app.add_middleware(
        RequestLimits, is_api=is_api_path, respond=lambda scope, exc: studio_error_response(Request(scope), exc)
    )
    if config.auth_required:
        # Outermost: no route, not even a 404 or a 413, answers before the caller is known.
        app.add_middleware(Authentication, respond=unauthorized_response)
        app.include_router(auth.router)
    generate_openapi = app.openapi
    if config.auth_required:
        app.openapi = lambda: document_sign_in(document_limits(drop_default_422(generate_openapi())), OPEN_PATHS)  # type: ignore[method-assign]
    else:
        app.openapi = lambda: document_limits(drop_default_422(generate_openapi()))  # type: ignore[method-assign]
    app.include_router(openai.router)
    app.include_router(sdapi.router)
    app.include_router(studio_api.router)
    app.include_router(prompts.router)
    app.include_router(templates.router)
    app.include_router(editing.router)
    app.include_router(write_api.router)
    app.include_router(code_api.router)
    app.include_router(compare_api.router)
    app.include_router(arena.router)
    app.include_router(inspect_api.router)
    app.include_router(users_api.router)
    if studio is not None:
        # Gradio copies shown files to its temp folder: keep those under AIGC_HOME with the rest.
        os.environ.setdefault("GRADIO_TEMP_DIR", str(studio.config.home / "cache" / "gradio"))
    # A local studio does not report its use anywhere; Gradio would try to, by default.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ..ui import mount_ui

    mount_ui(app, studio, signed_in=config.auth_required)  # web UI at "/", after every API route
    return app
