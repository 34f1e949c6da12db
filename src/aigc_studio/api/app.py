"""The studio's HTTP server: one FastAPI app, one port, every API (and later the web UI)."""

from __future__ import annotations

import logging
import os
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from .. import __version__
from ..errors import StudioError, validation_message
from ..studio import Studio
from .routers import openai, sdapi
from .routers import studio as studio_api

log = logging.getLogger("aigc_studio.server")


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

    def error_response(
        request: Request, status: int, message: str, param: str | None, code: str | None, kind: str
    ) -> JSONResponse:
        if request.url.path.startswith("/sdapi/"):
            # A1111's shape (modules/api/api.py): what failed, and the message in "detail" and "errors".
            return JSONResponse(
                {"error": kind, "detail": message, "body": "", "errors": message},
                status_code=422 if status == 400 else status,
            )
        body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
        return JSONResponse(body, status_code=status)

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
        return error_response(request, exc.status, exc.message, exc.param, exc.code, type(exc).__name__)

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
    app.include_router(sdapi.router)
    app.include_router(studio_api.router)
    if studio is not None:
        # Gradio copies shown files to its temp folder: keep those under AIGC_HOME with the rest.
        os.environ.setdefault("GRADIO_TEMP_DIR", str(studio.config.home / "cache" / "gradio"))
    # A local studio does not report its use anywhere; Gradio would try to, by default.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ..ui import mount_ui

    mount_ui(app, studio)  # web UI at "/", after every API route
    return app
