"""The web UI's file route (Gradio's ``/gradio_api/file=<path>``) sends a signed-in user only their own
generated files.

Gradio serves any file under the outputs folder (its ``allowed_paths``) to whoever asks for its path.
On a team server that would hand one user's pictures to another who learns or guesses a path, so a path
under outputs is looked up in the records (``ImageService.may_read_file``): a file that is not one of
the caller's images or comparison grids gets exactly the answer Gradio gives for a file that does not
exist. In the local studio (no principal) every request goes through unchanged. It reads the principal,
so the auth middleware that sets it must wrap this one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import principal

__all__ = ["OwnFilesOnly"]

_FILE_ROUTE = "/file="


class OwnFilesOnly:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _FILE_ROUTE in scope["path"] and principal.owner() is not None:
            asked = scope["path"].split(_FILE_ROUTE, 1)[1]
            studio = scope["app"].state.studio
            if not _may_send(studio, asked):
                # Gradio's own answer for a path that is not there (route_utils.file_fetch).
                await JSONResponse({"detail": f"File not allowed: {asked}."}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _may_send(studio, asked: str) -> bool:
    """Whether the file at ``asked`` may go to the caller: anything outside outputs is Gradio's to
    decide (its own files, uploads and cache); inside, only the caller's recorded files."""
    outputs = Path(studio.config.outputs_dir)
    path = Path(asked)
    resolved = path.resolve()
    if not resolved.is_relative_to(outputs.resolve()):
        return True
    return any(
        studio.images.may_read_file(p) for p in {path, resolved, outputs / resolved.relative_to(outputs.resolve())}
    )
