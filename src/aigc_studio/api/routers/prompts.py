"""Prompt craft under /api/prompts: expansion of an idea by the text model, saved styles (A1111's
styles.csv), wildcards and dynamic-prompt previews. Each route parses, calls ``studio.prompts`` and
answers; errors in OpenAI's shape."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ...contracts import json_int
from ...services.a1111_schema import WHITESPACE
from ...services.dynamic_prompts import MAX_COMBINATIONS
from ...services.prompt_craft import MAX_IDEA
from ...services.prompt_styles import MAX_NAME, MAX_STYLES_FILE_BYTES, MAX_TEXT
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors

router = APIRouter(prefix="/api/prompts", tags=["prompts"])

_SPACE = WHITESPACE[1:-1]  # Python's whitespace (str.strip), spelled out so every regex dialect agrees
# A style name: one line, no spaces at either end, no NUL (the csv file could not hold it).
NAME_PATTERN = f"^[^{_SPACE}\\x00](?:[^\\r\\n\\x00]*[^{_SPACE}\\x00])?$"
TEXT_PATTERN = "^[^\\x00]*$"
_STYLE_NAME = Path(
    description="The style's name, as GET /api/prompts/styles lists it.", max_length=MAX_NAME, pattern=NAME_PATTERN
)
_BAD_FILE = "AIGC_HOME/styles.csv is malformed (the message names the line)."
_TOO_LARGE = {413: "The request body is over max_body_mb."}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ExpandRequest(Strict):
    idea: str = Field(
        max_length=MAX_IDEA, pattern=f"[^{_SPACE}]", description="A short idea of what to draw, any language."
    )
    language: Literal["en", "zh"] | None = Field(
        None, description="The language of the template the model is asked in (unset: the idea's own)."
    )
    seed: json_int(ge=-1, le=2**32 - 1) | None = Field(None, description="The same seed gives the same expansion.")
    model: str | None = Field(None, max_length=200, description="Text model id (unset: the default).")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature (unset: 0.8).")


class ExpandResponse(BaseModel):
    idea: str
    prompt: str = Field(description="The detailed Stable Diffusion prompt, in English.")
    negative_prompt: str
    model: str = Field(description="The text model that wrote it.")
    seed: int | None = Field(description="The seed that ran.")
    template: str = Field(description="The template used, name.language (sd-expand.en or sd-expand.zh).")
    structured: bool = Field(description="true: the model's grammar held the answer to the JSON schema.")
    response_id: str
    completion_tokens: int


class Style(BaseModel):
    name: str
    prompt: str
    negative_prompt: str


class StyleBody(Strict):
    prompt: str = Field(
        "",
        max_length=MAX_TEXT,
        pattern=TEXT_PATTERN,
        description="{prompt} takes the prompt; else appended after ', '.",
    )
    negative_prompt: str = Field(
        "", max_length=MAX_TEXT, pattern=TEXT_PATTERN, description="Applied to the negative prompt the same way."
    )


class NewStyle(StyleBody):
    name: str = Field(max_length=MAX_NAME, pattern=NAME_PATTERN, description="One line, no spaces at either end.")


class ImportRequest(Strict):
    csv: str = Field(max_length=MAX_STYLES_FILE_BYTES, description="An A1111 styles.csv, as text.")
    replace: bool = Field(False, description="true: the file's styles replace all; false: added or updated by name.")


class ApplyRequest(Strict):
    prompt: str = Field("", max_length=20_000)
    negative_prompt: str = Field("", max_length=20_000)
    styles: list[str] = Field(max_length=20, description="Style names, applied in this order.")


class Prompts(BaseModel):
    prompt: str
    negative_prompt: str


class Wildcard(BaseModel):
    name: str = Field(description="Written __name__ in a prompt.")
    values: list[str]


class PreviewRequest(Strict):
    template: str = Field(max_length=20_000, description="A prompt with {a|b} choices and __wildcards__.")
    mode: Literal["random", "combinatorial"] = "random"
    count: json_int(ge=1, le=MAX_COMBINATIONS) = Field(1, description="Random mode: how many prompts.")
    seed: json_int(ge=0, le=2**32 - 1) | None = Field(None, description="Random mode: the same seed, the same picks.")


class PreviewResponse(BaseModel):
    prompts: list[str]


@router.post(
    "/expand",
    responses=errors(
        ErrorBody,
        {
            400: "A field is missing, of the wrong type or out of range; the idea is empty; the prompt does not fit "
            "the model's context; or the model's answer was not usable. The message says which.",
            404: "No such text model, or no sd-expand template in that language.",
            **_TOO_LARGE,
        },
    ),
)
async def expand(body: ExpandRequest, studio: Studio = Depends(get_studio)) -> ExpandResponse:
    """Expand a short idea into a detailed Stable Diffusion prompt and negative prompt with the text model."""
    result = await run_in_threadpool(
        studio.prompts.expand,
        body.idea,
        language=body.language,
        seed=body.seed,
        model=body.model,
        temperature=body.temperature,
    )
    return result.__dict__


@router.get("/styles", responses=errors(ErrorBody, {400: _BAD_FILE}))
def list_styles(studio: Studio = Depends(get_studio)) -> list[Style]:
    return [s.as_dict() for s in studio.prompts.styles.all()]


@router.post(
    "/styles",
    responses=errors(
        ErrorBody,
        {
            400: "A field is wrong (named), or " + _BAD_FILE,
            409: "A style of that name exists: PUT edits it.",
            **_TOO_LARGE,
        },
    ),
)
def add_style(body: NewStyle, studio: Studio = Depends(get_studio)) -> Style:
    return studio.prompts.styles.save(body.name, body.prompt, body.negative_prompt, replace=False).as_dict()


@router.get(
    "/styles.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "styles.csv as A1111 writes it."}}
    | errors(ErrorBody, {400: _BAD_FILE}),
)
def export_styles(studio: Studio = Depends(get_studio)) -> Response:
    return Response(
        studio.prompts.styles.export_csv().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="styles.csv"'},
    )


@router.post(
    "/styles.csv",
    responses=errors(
        ErrorBody, {400: "The file is malformed (the message names the line); nothing is changed.", **_TOO_LARGE}
    ),
)
def import_styles(body: ImportRequest, studio: Studio = Depends(get_studio)) -> list[Style]:
    """Add (or with replace, swap in) the styles of an A1111 styles.csv; answers the styles imported."""
    return [s.as_dict() for s in studio.prompts.styles.import_csv(body.csv, "the uploaded file", replace=body.replace)]


@router.post(
    "/apply-styles",
    responses=errors(
        ErrorBody, {400: "A field is wrong (named), or " + _BAD_FILE, 404: "No style of a name given.", **_TOO_LARGE}
    ),
)
def apply_styles(body: ApplyRequest, studio: Studio = Depends(get_studio)) -> Prompts:
    """The prompts with the styles applied, as generation would apply them."""
    prompt, negative = studio.prompts.apply_styles(body.prompt, body.negative_prompt, body.styles)
    return {"prompt": prompt, "negative_prompt": negative}


@router.get("/styles/{name}", responses=errors(ErrorBody, {400: _BAD_FILE, 404: "No style of that name."}))
def get_style(name: str = _STYLE_NAME, studio: Studio = Depends(get_studio)) -> Style:
    return studio.prompts.styles.get(name).as_dict()


@router.put(
    "/styles/{name}", responses=errors(ErrorBody, {400: "A field is wrong (named), or " + _BAD_FILE, **_TOO_LARGE})
)
def put_style(body: StyleBody, name: str = _STYLE_NAME, studio: Studio = Depends(get_studio)) -> Style:
    """Create the style, or change it."""
    return studio.prompts.styles.save(name, body.prompt, body.negative_prompt).as_dict()


@router.delete("/styles/{name}", responses=errors(ErrorBody, {400: _BAD_FILE, 404: "No style of that name."}))
def delete_style(name: str = _STYLE_NAME, studio: Studio = Depends(get_studio)) -> Style:
    """Remove the style; answers it as it was."""
    return studio.prompts.styles.remove(name).as_dict()


@router.get("/wildcards", responses=errors(ErrorBody, {400: "A wildcard file cannot be read."}))
def list_wildcards(studio: Studio = Depends(get_studio)) -> list[Wildcard]:
    """The wildcard files under AIGC_HOME/wildcards, by the name a prompt uses, with their values."""
    return [w.__dict__ for w in studio.prompts.dynamic.wildcards()]


@router.post(
    "/wildcards/preview",
    responses=errors(
        ErrorBody,
        {
            400: "A field is wrong; unbalanced braces; a wildcard with no file; more than "
            f"{MAX_COMBINATIONS} combinations. The message names it.",
            **_TOO_LARGE,
        },
    ),
)
def preview(body: PreviewRequest, studio: Studio = Depends(get_studio)) -> PreviewResponse:
    """The prompts a dynamic template gives: count random ones from the seed, or every combination."""
    prompts = studio.prompts.preview(body.template, body.mode, count=body.count, seed=body.seed)
    return {"prompts": prompts}
