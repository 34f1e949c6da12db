"""The server's side of the per-user limits (services/limits.py): one middleware for every API.

It records the client's address for the work of the request (what counts as "the user" when no one is
signed in) and counts the request against the user's rate, refusing it with a 429 and ``Retry-After``
in the path's error shape. The other limits are checked where their figure is known: the body size by
``BodyLimit``, the rest by the services (generations at once, uploads, tokens, pixels). It must run
inside the authentication middleware, which sets the principal it counts against.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import TooManyRequests
from ..services.limits import from_client

# Not counted: the health check, and the progress polls a client makes while its generation runs (a
# generation was counted when it was asked for, and refusing its polls would hide its progress).
_NOT_COUNTED = re.compile(r"/health|/sdapi/v1/progress|/api/jobs/[^/]+")


class RequestLimits:
    """Counts each API request against its user's ``rate_limit_per_minute`` (paths ``is_api`` accepts)."""

    def __init__(
        self, app: ASGIApp, is_api: Callable[[str], bool], respond: Callable[[Scope, TooManyRequests], Response]
    ):
        self.app, self.is_api, self.respond = app, is_api, respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        with from_client(client[0] if client else None):
            path = scope["path"]
            if self.is_api(path) and not _NOT_COUNTED.fullmatch(path):
                try:
                    scope["app"].state.studio.limits.check_rate()
                except TooManyRequests as refused:
                    await self.respond(scope, refused)(scope, receive, send)
                    return
            await self.app(scope, receive, send)


def document_limits(schema: dict) -> dict:
    """Add the 429 that ``RequestLimits`` and the services may answer to each counted operation of the
    OpenAPI ``schema``, with the path's error body. In place; returns ``schema``."""
    why = (
        "Over the user's limit: rate_limit_per_minute, or for a generation max_concurrent_jobs. The "
        "Retry-After header gives the whole seconds to wait."
    )
    for path, operations in schema.get("paths", {}).items():
        if _NOT_COUNTED.fullmatch(re.sub(r"\{[^}]+\}", "x", path)):  # /api/jobs/{job_id} is a poll
            continue
        shape = "A1111ErrorBody" if path.startswith("/sdapi/") else "ErrorBody"
        body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}}
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                retry = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
                operation["responses"]["429"] = {"description": why, "headers": retry, "content": body}
    return schema
