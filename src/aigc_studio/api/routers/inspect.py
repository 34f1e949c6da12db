"""``POST /api/inspect``: every AI label and piece of provenance in an uploaded file.

The file comes as a multipart upload (``file``, as ``curl -F file=@x.png`` sends it) or as JSON with
the file in base64 (``data``) and its name (``filename``); both give the same report as ``aigc inspect
--json``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from ...errors import InvalidRequest, UnsupportedMediaType
from ...services.images import decode_base64
from ...services.inspect import ACCEPTED
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors

router = APIRouter(prefix="/api", tags=["inspect"])

# The format tests/fuzz_hooks.py fills with real files: JSON Schema cannot say "a readable image".
UPLOAD_FORMAT = "base64-file"
_FILENAME = Field(
    None,
    max_length=255,
    description="The file's name; its suffix tells a text file's format (.md, .html, .txt, .docx).",
)


class InspectUpload(BaseModel):
    """A file to inspect, in JSON."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(
        min_length=1,
        description=f"The file's bytes in base64 (a data: URL too): {ACCEPTED}.",
        json_schema_extra={"format": UPLOAD_FORMAT},
    )
    filename: str | None = _FILENAME


class FileInfo(BaseModel):
    name: str | None
    kind: str = Field(description="image or text.")
    format: str = Field(description="png, jpeg, webp (or another image format), markdown, html, text or docx.")
    size: int = Field(description="Bytes.")
    width: int | None
    height: int | None


class InspectReport(BaseModel):
    """What the file carries; a section whose ``found`` is false says why in ``reason``."""

    verdict: str = Field(description="The conclusion first: 'AI-generated (TC260 label 1, C2PA trusted, ...)'.")
    file: FileInfo
    a1111: dict[str, Any] = Field(description="found; infotext, prompt, negative_prompt, parameters.")
    aigc: dict[str, Any] = Field(
        description="found; fields (the TC260 AIGC object), where, label, meaning, integrity "
        "(match, mismatch or unchecked), integrity_meaning, error."
    )
    iptc: dict[str, Any] = Field(description="found; source_type (the IPTC URI), meaning, ai.")
    c2pa: dict[str, Any] = Field(
        description="state (absent, valid, trusted, invalid), reason, actions, source_type, signer, "
        "claim_generator, title, ingredients."
    )
    watermark: dict[str, Any] = Field(description="found; payload (hex), confidence (0-1), method, item, link.")
    nsfw: dict[str, Any] = Field(
        description="found; score (0-1, computed now), threshold, stored_score, stored_action."
    )
    item: dict[str, Any] | None = Field(
        description="The studio's record the ProduceID or the watermark names: id, kind, prompt, model, created, link."
    )
    text: dict[str, Any] | None = Field(description="Text files: label_line, found.")


_ERRORS = {
    400: f"Not a file inspect reads ({ACCEPTED}), empty, not valid base64, or a body without the file.",
    413: "The request body is over max_body_mb, or the image over max_image_megapixels.",
    415: "The body is neither multipart/form-data nor application/json.",
}
_MULTIPART = {
    "type": "object",
    "properties": {"file": {"type": "string", "format": "binary", "description": f"The file: {ACCEPTED}."}},
    "required": ["file"],
}


@router.post(
    "/inspect",
    response_model=InspectReport,
    responses=errors(ErrorBody, _ERRORS),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _MULTIPART},
                "application/json": {"schema": InspectUpload.model_json_schema()},
            },
        }
    },
)
async def inspect_file(request: Request, studio: Studio = Depends(get_studio)) -> InspectReport:
    """Inspect a file: the A1111 parameters, the TC260 AIGC label and whether its integrity data still
    matches, the IPTC source type, the C2PA state with the reason, the watermark and the gallery item it
    identifies, the NSFW score. What the file lacks is reported as absent."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("the multipart body needs the file in a part named 'file'", param="file")
        data, filename = await upload.read(), upload.filename
    elif content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as exc:
            raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
        upload = InspectUpload.model_validate(body)
        data, filename = decode_base64(upload.data), upload.filename
    else:
        raise UnsupportedMediaType(
            f"send the file as multipart/form-data (a part named 'file') or as application/json "
            f"(data in base64, filename), got {content_type or 'no content type'}"
        )
    return InspectReport(**await run_in_threadpool(studio.inspector.inspect, data, filename))
