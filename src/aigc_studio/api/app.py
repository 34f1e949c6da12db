"""The studio's HTTP server: one FastAPI app, one port, every API (and later the web UI)."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from .. import __version__
from ..errors import StudioError
from ..studio import Studio
from .routers import openai

log = logging.getLogger("aigc_studio.server")


def _validation_message(errors: list[dict]) -> tuple[str, str | None]:
    parts, param = [], None
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body",)]
        where = ".".join(loc) or "body"
        param = param or (loc[0] if loc else None)
        given = err.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None else f", got {given!r}"
        parts.append(f"{where}: {err['msg']}{shown}")
    return "; ".join(parts), param


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

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
        return JSONResponse(exc.to_openai(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            message, param = "the request body is not valid JSON: " + errors[0].get("ctx", {}).get("error", ""), None
        else:
            message, param = _validation_message(errors)
        body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
        return JSONResponse(body, status_code=400)

    @app.exception_handler(ValidationError)
    async def options_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        message, param = _validation_message(exc.errors())
        body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
        return JSONResponse(body, status_code=400)

    @app.get("/health")
    def health(request: Request) -> JSONResponse:
        state = request.app.state
        model = state.studio.registry.default_model
        if not state.ready.is_set():
            return JSONResponse({"status": "loading", "model": model}, status_code=503)
        if state.load_error:
            return JSONResponse({"status": "error", "model": model, "error": state.load_error}, status_code=503)
        return JSONResponse({"status": "ok", "model": model, "version": __version__})

    app.include_router(openai.router)
    return app
