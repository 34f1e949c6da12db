"""Side by side under /api/compare: one prompt to 2-4 text models (streamed as SSE, or one JSON answer),
one image request over models or parameter values (JSON, when every cell is done), and the saved
comparisons."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import Convertor, register_url_convertor

from ...contracts import ImageRequest, TextOptions
from ...services.a1111_schema import NOT_BLANK
from ...services.compare import AXES, MAX_AXIS_VALUES, MAX_MODELS, MAX_PROMPT, MIN_MODELS, Axis
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors
from ..waiting import sse_of

router = APIRouter(prefix="/api", tags=["compare"])


class _ComparisonId(Convertor):
    """Only a comparison's id (cmp-…) routes to a saved comparison, so /api/compare/images is never read
    as one: a GET there is a 405 naming POST, not a search for a comparison called "images"."""

    regex = "cmp-[0-9a-f]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("comparison_id", _ComparisonId())

_ID = {"pattern": "^cmp-[0-9a-f]+$"}
_BAD = {
    400: "A field is missing, of the wrong type or out of range, or the models are too few, too many or repeated; "
    "the message names it and what is allowed; an image comparison's prompt contains a term of the "
    "prompt_blocklist setting (named; nothing is queued)."
}
_MISSING = {404: "No such model or comparison (the message names it)."}
_TOO_LARGE = {413: "The request body is over the server's limit (max_body_mb)."}
_UNLOADABLE = {422: "A model is registered but cannot be loaded (the message says why)."}
_UNAVAILABLE = {503: "A model's worker stopped (shutdown) before the comparison reached it."}
ModelName = Annotated[str, Field(min_length=1, max_length=200)]


class TextCompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT, pattern=NOT_BLANK, description="The question, to every model."
    )
    models: list[ModelName] = Field(
        min_length=MIN_MODELS,
        max_length=MAX_MODELS,
        description=f"{MIN_MODELS}-{MAX_MODELS} different text models (ids or aliases), one pane each, in order.",
    )
    system: str | None = Field(None, max_length=MAX_PROMPT, description="System prompt, the same for every model.")
    options: TextOptions = Field(
        default_factory=TextOptions, description="Sampling (seed included), the same for every model."
    )
    stream: bool = Field(True, description="true: the events as SSE while the panes answer; false: one JSON answer.")


class GridAxis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal[tuple(sorted(AXES))] = Field(  # type: ignore[valid-type]
        description="The parameter to vary (cfg is cfg_scale, sampler is sampler_name, denoising is "
        "denoising_strength; model varies the model)."
    )
    values: list[Annotated[str, Field(max_length=100)] | float] = Field(
        min_length=2,
        max_length=MAX_AXIS_VALUES,
        description=f"2-{MAX_AXIS_VALUES} values (2-{MAX_MODELS} models), each checked as that parameter is.",
    )


class ImageCompareRequest(ImageRequest):
    models: list[ModelName] = Field(
        default_factory=list,
        max_length=MAX_MODELS,
        description=f"{MIN_MODELS}-{MAX_MODELS} image models for a row (the X axis, or the Y axis beside one grid "
        "axis); one model to make a grid with; none: `model` or the default image model.",
    )
    grid: list[GridAxis] = Field(
        default_factory=list,
        max_length=2,
        description="0-2 axes (X, then Y); at most 16 cells in all. Every cell has the same seed.",
    )


class Pane(BaseModel):
    model: str
    text: str = Field(description="The answer (as far as it got, for an error or a cancel).")
    status: Literal["done", "error", "cancelled", "running"]
    error: str | None = Field(description="Why this pane failed; the other panes are not affected.")
    ttft_ms: float | None = Field(None, description="Time to first token, from the request reaching the model.")
    tokens_per_s: float | None = Field(None, description="Completion tokens per second after the first one.")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_ms: float | None = Field(None, description="The whole answer, from the request reaching the model.")
    finish_reason: str | None = None
    seed: int | None = None
    sampling: dict[str, Any] | None = Field(None, description="The sampling values that ran.")


class Cell(BaseModel):
    index: int
    x: Any = Field(description="This cell's value on the X axis.")
    y: Any = Field(None, description="This cell's value on the Y axis (a grid with two axes).")
    model: str
    image_id: str | None = Field(None, description="img-…: GET /api/images/{image_id}.png.")
    path: str | None = Field(None, description="The PNG on the server.")
    seed: int | None = None
    infotext: str | None = Field(None, description="A1111's infotext of the image as it ran.")
    seconds: float | None = Field(None, description="How long this cell's generation took.")
    error: str | None = Field(None, description="Why this cell has no image.")


class ComparisonSummary(BaseModel):
    id: str
    kind: Literal["text", "image"]
    prompt: str
    models: list[str]
    duration_ms: float = Field(description="The whole comparison, first request to last answer.")
    created: float = Field(description="Unix time.")


class TextComparisonRecord(ComparisonSummary):
    kind: Literal["text"]
    request: dict[str, Any] = Field(description="system and options as asked.")
    results: list[Pane] = Field(description="One pane per model, in order.")
    grid_path: None = None


class ImageComparisonRecord(ComparisonSummary):
    kind: Literal["image"]
    request: dict[str, Any] = Field(
        description="image_request (the seed fixed), axes [{name, values}] and grid_labels (what labeling applied "
        "to the grid image, as an image's labels).",
    )
    results: list[Cell] = Field(description="The cells row by row (Y), each row along X.")
    grid_path: str | None = Field(description="The grid PNG with axis labels: GET /api/compare/{id}/grid.png.")


def _event_stream() -> dict:
    event = {
        "type": "object",
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": "One event as JSON: {type: reading | delta | pane_done | pane_error | done, pane, "
                "model, text, stats, message, comparison_id, duration_ms, read, prompt_tokens}; [DONE] last. "
                "reading: a pane's model is reading a long prompt (read of prompt_tokens), before its text.",
            }
        },
        "required": ["data"],
    }
    return {
        200: {
            "content": {"text/event-stream": {"schema": event}, "application/json": {}},
            "description": "SSE events (stream: true), or the saved comparison (stream: false).",
        }
    }


def _stream(request: Request, comparison) -> StreamingResponse:
    """The comparison's events as SSE; it runs in a thread of its own, and a client that goes away stops it
    (what was answered is saved all the same)."""
    return sse_of(request, comparison, "compare-run")


def _run_to_end(studio: Studio, comparison) -> dict:
    for _ in comparison:
        pass
    return studio.compare.get(comparison.id)


_ERRORS = {**_BAD, **_MISSING, **_TOO_LARGE, **_UNLOADABLE, **_UNAVAILABLE}


@router.post("/compare", response_model=None, responses=_event_stream() | errors(ErrorBody, _ERRORS))
async def compare_text(body: TextCompareRequest, request: Request, studio: Studio = Depends(get_studio)) -> Response:
    """One prompt to 2-4 text models at once: each answers in its own pane, with its timings. A failing
    model is an error in its pane (pane_error); the others finish."""
    comparison = await run_in_threadpool(
        lambda: studio.compare.text(body.prompt, body.models, system=body.system, options=body.options, source="api")
    )
    if body.stream:
        return _stream(request, comparison)
    record = await run_in_threadpool(_run_to_end, studio, comparison)
    return Response(TextComparisonRecord(**record).model_dump_json(), media_type="application/json")


@router.post("/compare/images", responses=errors(ErrorBody, _ERRORS))
async def compare_images(body: ImageCompareRequest, studio: Studio = Depends(get_studio)) -> ImageComparisonRecord:
    """One image request (same prompt, seed, parameters) over 2-4 image models in a row, or over one or two
    parameters' values (an X/Y grid, as A1111's X/Y/Z plot). Answers when every cell is done, with each
    cell's image and infotext and the labelled grid image."""
    request = ImageRequest(**body.model_dump(exclude={"models", "grid"}, exclude_unset=True))
    axes = [Axis(AXES[a.name], list(a.values)) for a in body.grid]

    def run() -> dict:
        return _run_to_end(studio, studio.compare.images_compare(request, body.models, axes, source="api"))

    return ImageComparisonRecord(**await run_in_threadpool(run))


@router.get("/compare", responses=errors(ErrorBody, {400: _BAD[400]}))
def list_comparisons(
    limit: int = Query(50, ge=1, le=1000, description="At most this many, newest first."),
    kind: Literal["text", "image"] | None = Query(None, description="Only text or only image comparisons."),
    studio: Studio = Depends(get_studio),
) -> list[ComparisonSummary]:
    return studio.compare.list(limit, kind)


_CMP = Path(description="cmp-…, as /api/compare lists it.", json_schema_extra=_ID)


@router.get("/compare/{comparison_id:comparison_id}", responses=errors(ErrorBody, _MISSING))
def get_comparison(
    comparison_id: str = _CMP, studio: Studio = Depends(get_studio)
) -> TextComparisonRecord | ImageComparisonRecord:
    """A saved comparison whole: the panes' answers and timings, or the cells' images and infotexts."""
    return studio.compare.get(comparison_id)


@router.get(
    "/compare/{comparison_id:comparison_id}/grid.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The grid with axis labels."}}
    | errors(ErrorBody, _MISSING),
)
def comparison_grid(comparison_id: str = _CMP, studio: Studio = Depends(get_studio)) -> FileResponse:
    return FileResponse(studio.compare.grid_file(comparison_id), media_type="image/png")
