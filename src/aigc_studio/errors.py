"""Errors a user can act on. Each carries the HTTP status and OpenAI error fields it maps to.

None of these is a 5xx but ``ModelUnavailable``, ``SandboxUnavailable`` and ``RemoteError``: OpenAI
clients retry 5xx, and retrying a request that is wrong only wastes time; a model being unloaded under a
request, a sandbox that an administrator can fix and a remote server that failed are the cases where a
retry can succeed.
"""

from __future__ import annotations


class StudioError(Exception):
    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_openai(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(StudioError):
    """The request is malformed or a value is out of range."""


class ModelNotFound(StudioError):
    status = 404
    code = "model_not_found"

    def __init__(self, model: str, known: list[str] | None = None):
        hint = f"; available: {', '.join(known)}" if known else ""
        super().__init__(f"The model '{model}' does not exist{hint}", param="model")


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class Unauthorized(StudioError):
    """No credentials, or ones that name nobody (a wrong, expired or revoked key; a wrong password). The
    message says which and how to get in; it never repeats what was sent."""

    status = 401
    code = "invalid_api_key"


class Forbidden(StudioError):
    """The caller is signed in but their role may not do this; the message names the role needed."""

    status = 403
    code = "forbidden"


class NotFound(StudioError):
    """A conversation, response or file that the user named does not exist."""

    status = 404
    code = "not_found"


class Conflict(StudioError):
    """The request is well formed but the record is not in a state that allows it (a battle voted twice)."""

    status = 409
    code = "conflict"


class ModelLoadError(StudioError):
    """A model file exists in the registry but cannot be loaded (corrupt, wrong format)."""

    status = 422
    code = "model_load_failed"


class SettingError(StudioError, ValueError):
    """A setting the studio cannot start with; the message names the key and where the value came from."""


class ModelUnavailable(StudioError):
    """The model's worker stopped (shutdown, or the model was removed) before the request reached it."""

    status = 503
    type = "server_error"
    code = "model_unavailable"


class DatabaseUnavailable(StudioError):
    """The database server (PostgreSQL) cannot be reached, or the connection broke during the request;
    nothing of the request was kept. The next request connects again."""

    status = 503
    type = "server_error"
    code = "database_unavailable"


class TooLarge(StudioError):
    """A request body or an uploaded image is over a configured limit."""

    status = 413
    code = "too_large"


class TooManyRequests(StudioError):
    """A user is over a rate or concurrency limit: a 429 whose ``Retry-After`` header is ``retry_after``
    seconds (OpenAI's clients wait that long before they retry)."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UnsupportedMediaType(StudioError):
    """A request body in a content type the endpoint does not take; the message names the ones it does."""

    status = 415
    code = "unsupported_media_type"


class Interrupted(StudioError):
    """A queued job was interrupted before it started, so there is nothing to return."""

    status = 409
    code = "interrupted"


class SandboxUnavailable(StudioError):
    """Generated code cannot run because the sandbox cannot start here (no bubblewrap, no user
    namespaces, no runtime for the language). The studio never runs such code outside the sandbox."""

    status = 503
    type = "server_error"
    code = "sandbox_unavailable"


class RemoteError(StudioError):
    """A remote model's server could not be reached, failed, hung or answered something that is not an
    OpenAI-compatible stream: a 502 (504 when it timed out), with what the server said."""

    status = 502
    type = "server_error"
    code = "remote_error"

    def __init__(self, message: str, *, status: int = 502):
        super().__init__(message, param="model")
        self.status = status


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """One readable line for pydantic errors ("width: width must be a multiple of 8, got 100"), and the
    first field named, for OpenAI's ``param``."""
    parts, param = [], None
    for err in errors:
        loc = [str(x) for x in err.get("loc", ())]
        if loc[:1] and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]  # where FastAPI found it; the field's name is what a client knows
        where = ".".join(loc) or "body"
        param = param or (loc[0] if loc else None)
        msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None or "got" in msg else f", got {given!r}"
        parts.append(f"{where}: {msg}{shown}")
    return "; ".join(parts), param
