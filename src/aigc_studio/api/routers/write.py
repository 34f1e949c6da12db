"""The article pipeline under /api: /api/write/... starts and changes articles (runs stream as SSE),
/api/documents/... reads, searches, exports and deletes what is stored."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ...errors import StudioError
from ...services.a1111_schema import NOT_BLANK
from ...services.article_spec import MAX_CONTENT, MAX_HEADING, MAX_SECTIONS, ArticleSpec
from ...services.export import FORMATS
from ...services.writing import ArticleRun
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors
from ..waiting import sse_of

router = APIRouter(prefix="/api", tags=["writing"])

_ID = {"pattern": "^doc-[0-9a-f]+$"}
_BAD = {400: "A field is missing, of the wrong type or out of range; the message names it and its range."}
_TOO_LARGE = {413: "The request body is over the server's limit (max_body_mb)."}
_MISSING = {404: "No such document, version, section or model (the message names it)."}
# Not blank: at least one character that is not a space (the services refuse blank text, saying so).
Heading = Annotated[str, Field(min_length=1, max_length=MAX_HEADING, pattern=NOT_BLANK)]


class ArticleRequest(ArticleSpec):
    """What to write; with ``headings`` the outline is yours and no outline is generated."""

    headings: list[Heading] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SECTIONS,
        description=f"Your own outline: 1-{MAX_SECTIONS} headings of 1-{MAX_HEADING} characters each.",
    )


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, max_length=200, description="Another model than the one that wrote it.")


class RegenerateRequest(RunOptions):
    instruction: str | None = Field(None, max_length=1000, description='What to do differently ("more examples").')


class OutlineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    headings: list[Heading] = Field(
        min_length=1,
        max_length=MAX_SECTIONS,
        description=f"1-{MAX_SECTIONS} headings; sections whose heading is unchanged keep their text.",
    )


class SaveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(
        min_length=1, max_length=MAX_CONTENT, pattern=NOT_BLANK, description="The whole article as Markdown."
    )


class Section(BaseModel):
    heading: str
    text: str
    state: Literal["pending", "writing", "partial", "done"] = Field(
        description="done; partial (stopped part-way, kept); pending (not written)."
    )
    seed: int | None
    finish_reason: str | None
    tokens: int


class Version(BaseModel):
    number: int
    reason: str = Field(description='What made it: "outline", "section 3 regenerated", "user edit", ...')
    content: str = Field(description="The article as Markdown.")
    outline: list[str]
    sections: list[Section]
    abstract: str
    tags: list[str]
    spec: dict[str, Any] = Field(description="The ArticleSpec it was written from (fields left at default omitted).")
    model: str | None
    options: dict[str, Any] = Field(description="The sampling values that ran.")
    notes: list[str] = Field(description="What was left out to fit the model's context, and how much.")
    created: float
    document_id: str


class Document(BaseModel):
    id: str
    title: str
    language: Literal["en", "zh"]
    created: float
    updated: float
    versions: int = Field(description="How many versions it has.")
    version: Version = Field(description="The version asked for (the latest by default).")


class DocumentSummary(BaseModel):
    id: str
    title: str
    language: Literal["en", "zh"]
    created: float
    updated: float
    versions: int
    matched_version: int | None = Field(None, description="With q: the latest version whose text matches.")


class VersionSummary(BaseModel):
    number: int
    reason: str
    model: str | None
    created: float
    characters: int


class OutlineResult(Document):
    notices: list[str] = Field(description="What the run said: the language warning, what was left out.")


def _event_stream() -> dict:
    event = {
        "type": "object",
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": "One event as JSON: {type: language | outline | section_start | reading | delta "
                "| section_done | trimmed | abstract | tags | done | cancelled | error, document_id, section, total, "
                "heading, text, headings, tags, state, message, version, fit, read, prompt_tokens}; [DONE] last. "
                "reading: a long prompt is being read (read of prompt_tokens), before its answer's first text.",
            }
        },
        "required": ["data"],
    }
    return {200: {"content": {"text/event-stream": {"schema": event}}, "description": "The run's events."}}


def _stream(request: Request, run: ArticleRun) -> StreamingResponse:
    """The run's events as SSE. The run goes on in a thread of its own: a client that goes away stops
    it, and what was written is saved all the same."""
    return sse_of(request, run, "write-run")


@router.post("/write/outline", responses=errors(ErrorBody, {**_BAD, **_MISSING, **_TOO_LARGE}))
async def write_outline(body: ArticleSpec, studio: Studio = Depends(get_studio)) -> OutlineResult:
    """Generate an outline and store it as version 1 of a new document (no sections yet)."""

    def run_outline() -> OutlineResult:
        run = studio.writing.start(body, outline_only=True)
        events = list(run)
        if events[-1].type == "error":
            raise StudioError(events[-1].message or "the outline failed", code="generation_failed")
        notices = [e.message for e in events if e.type in ("language", "trimmed") and e.message]
        return OutlineResult(**studio.writing.get(run.document_id), notices=notices)

    return await run_in_threadpool(run_outline)


@router.post(
    "/write/article",
    response_model=None,
    responses=_event_stream() | errors(ErrorBody, {**_BAD, **_MISSING, **_TOO_LARGE}),
)
async def write_article(body: ArticleRequest, request: Request, studio: Studio = Depends(get_studio)) -> Response:
    """Write an article (outline unless ``headings`` are given, sections, abstract, tags), streamed as SSE."""
    spec = ArticleSpec(**body.model_dump(exclude={"headings"}, exclude_unset=True))
    run = await run_in_threadpool(studio.writing.start, spec, headings=body.headings)
    return _stream(request, run)


_DOC = Path(description="doc-…, as /api/documents lists it.", json_schema_extra=_ID)


@router.post(
    "/write/{document_id}/continue",
    response_model=None,
    responses=_event_stream() | errors(ErrorBody, {**_BAD, **_MISSING, **_TOO_LARGE}),
)
async def write_continue(
    request: Request,
    document_id: str = _DOC,
    body: RunOptions = Body(default_factory=RunOptions),
    studio: Studio = Depends(get_studio),
) -> Response:
    """Write the sections still missing (a stopped one again from its start), then abstract and tags; SSE."""
    run = await run_in_threadpool(studio.writing.continue_, document_id, body.model)
    return _stream(request, run)


@router.post(
    "/write/{document_id}/sections/{section}/regenerate",
    response_model=None,
    responses=_event_stream() | errors(ErrorBody, {**_BAD, **_MISSING, **_TOO_LARGE}),
)
async def write_regenerate(
    request: Request,
    document_id: str = _DOC,
    section: int = Path(ge=1, le=MAX_SECTIONS, description="The section, from 1."),
    body: RegenerateRequest = Body(default_factory=RegenerateRequest),
    studio: Studio = Depends(get_studio),
) -> Response:
    """Write one section again (a new version); the rest stays as it is. SSE."""
    run = await run_in_threadpool(
        lambda: studio.writing.regenerate(document_id, section, instruction=body.instruction, model=body.model)
    )
    return _stream(request, run)


@router.put("/write/{document_id}/outline", responses=errors(ErrorBody, {**_BAD, **_MISSING, **_TOO_LARGE}))
def write_set_outline(body: OutlineRequest, document_id: str = _DOC, studio: Studio = Depends(get_studio)) -> Document:
    """Replace the outline (a new version); sections whose heading is unchanged keep their text."""
    return studio.writing.set_outline(document_id, body.headings)


@router.post("/write/{document_id}/versions", responses=errors(ErrorBody, {**_BAD, **_MISSING, **_TOO_LARGE}))
def write_save(body: SaveRequest, document_id: str = _DOC, studio: Studio = Depends(get_studio)) -> Document:
    """Save the user's own Markdown as a new version ("user edit")."""
    return studio.writing.save(document_id, body.content)


@router.get("/documents", responses=errors(ErrorBody, _BAD))
def list_documents(
    q: str | None = Query(
        None, min_length=1, max_length=1000, pattern=NOT_BLANK, description="Title or any version's text contains it."
    ),
    limit: int = Query(50, ge=1, le=1000, description="At most this many, most recently changed first."),
    studio: Studio = Depends(get_studio),
) -> list[DocumentSummary]:
    return studio.writing.list(limit, q)


@router.get("/documents/{document_id}", responses=errors(ErrorBody, {**_BAD, **_MISSING}))
def get_document(
    document_id: str = _DOC,
    version: int | None = Query(None, ge=1, le=1_000_000, description="This version (default: the latest)."),
    studio: Studio = Depends(get_studio),
) -> Document:
    return studio.writing.get(document_id, version)


@router.get("/documents/{document_id}/versions", responses=errors(ErrorBody, {**_BAD, **_MISSING}))
def document_versions(document_id: str = _DOC, studio: Studio = Depends(get_studio)) -> list[VersionSummary]:
    return studio.writing.versions(document_id)


@router.get(
    "/documents/{document_id}/export",
    response_class=Response,
    responses={200: {"content": {t.split(";")[0]: {} for t in FORMATS.values()}, "description": "The file."}}
    | errors(ErrorBody, {**_BAD, **_MISSING}),
)
def export_document(
    document_id: str = _DOC,
    format: Literal["md", "html", "docx"] = Query("md", description="md, html (a standalone page) or docx (Word)."),
    version: int | None = Query(None, ge=1, le=1_000_000, description="This version (default: the latest)."),
    studio: Studio = Depends(get_studio),
) -> Response:
    out = studio.writing.export(document_id, format, version)
    disposition = f"attachment; filename*=UTF-8''{quote(out.filename)}"
    return Response(out.data, media_type=out.media_type, headers={"Content-Disposition": disposition})


class Deleted(BaseModel):
    deleted: str = Field(description="The id of the document deleted, with all its versions.")


@router.delete("/documents/{document_id}", responses=errors(ErrorBody, {**_BAD, **_MISSING}))
def delete_document(document_id: str = _DOC, studio: Studio = Depends(get_studio)) -> Deleted:
    studio.writing.delete(document_id)
    return Deleted(deleted=document_id)
