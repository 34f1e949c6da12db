"""The studio's own API under /api: files and records that the other APIs point to."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ...errors import NotFound
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors

router = APIRouter(prefix="/api", tags=["studio"])

_NOT_FOUND = {404: "No such record (the message gives the id)."}
# The ids the studio gives (storage.history.new_id); any other is simply not found.
_ID = {"pattern": "^[a-z]+-[0-9a-f]+$"}
_BAD_QUERY = {400: "A query parameter is of the wrong type or out of range; the message names it and its range."}


class VisibleMarkRecord(BaseModel):
    """The visible mark drawn on an image."""

    text: str = Field(description="The mark's text: AI生成 or AI-generated.")
    language: Literal["zh", "en"]
    position: Literal["bottom-right", "bottom-left", "top-right", "top-left"]
    box: list[int] = Field(description="Its box in pixels: left, top, right, bottom.", min_length=4, max_length=4)
    opacity: int = Field(ge=10, le=100, description="Percent.")
    text_height: int = Field(description="The text's height in pixels (at least 5% of the shorter side).")


class NsfwSetting(BaseModel):
    """The NSFW settings the image was labeled with."""

    setting: Literal["allow", "blur", "block"] = Field(description="The nsfw_action setting.")
    threshold: int = Field(ge=0, le=100, description="The nsfw_threshold setting, percent.")


class ImageLabels(BaseModel):
    """What the labeling pipeline applied to an image (services/labeling.py)."""

    visible: VisibleMarkRecord | None = Field(description="The visible mark; null: label_visible was off.")
    metadata: bool = Field(description="TC260 AIGC label and IPTC digital source type written into the file.")
    c2pa: bool = Field(description="Signed with C2PA content credentials.")
    watermark: int | None = Field(description="The invisible watermark's 32-bit payload; null: none embedded.")
    watermark_skipped: str | None = Field(
        None, description="Why no watermark was embedded although the setting was on (the image was too small)."
    )
    nsfw_score: float = Field(ge=0, le=1, description="The NSFW classifier's P(nsfw) for the raw image.")
    nsfw_action: Literal["none", "blurred", "blocked"] = Field(description="What was done to the image.")
    nsfw: NsfwSetting
    source_type: str = Field(description="IPTC digital source type (trainedAlgorithmicMedia or composite…).")
    producer: str | None = Field(description="ContentProducer written in the AIGC label; null without metadata.")
    digest: str | None = Field(description="ReservedCode1: sha256 of the final pixels; null without metadata.")


class ImageRecord(BaseModel):
    """A generated image as the gallery keeps it."""

    id: str
    job_id: str | None
    path: str = Field(description="The PNG file on the server (GET /api/images/{id}.png serves it).")
    mode: Literal["txt2img", "img2img", "inpaint", "edit"]
    model: str
    model_hash: str | None
    prompt: str
    negative_prompt: str
    seed: int
    subseed: int | None
    width: int
    height: int
    params: dict[str, Any] = Field(description="The whole request as it ran, with A1111's field names.")
    infotext: str = Field(description="A1111's infotext, as written into the PNG.")
    created: float = Field(description="Unix time.")
    prompt_template: str | None = Field(description="The dynamic-prompt template the prompt was drawn from.")
    negative_template: str | None = Field(description="The dynamic-prompt template of the negative prompt.")
    styles: list[str] = Field(description="The saved styles applied to the prompts (prompt holds the result).")
    labels: ImageLabels | None = Field(description="What labeling applied; null: made before labels (not labeled).")
    nsfw_score: float | None = Field(ge=0, le=1, description="P(nsfw) of the raw image; null: not labeled.")
    nsfw_action: Literal["none", "blurred", "blocked"] | None = Field(description="What was done; null: not labeled.")
    watermark: int | None = Field(description="The watermark payload embedded; null: none.")


class JobState(BaseModel):
    """An image job. Progress is live while the queue holds the job (the last 50 finished ones too);
    for an older job, only what its record keeps: the step counts are null."""

    id: str
    kind: str = Field(description="txt2img, img2img, inpaint or edit.")
    state: Literal["queued", "running", "done", "failed", "interrupted"]
    model: str | None
    source: str = Field(description="Who asked: sdapi, openai, cli, ui, ...")
    error: str | None = Field(description="Why the job failed (state failed).")
    created: float
    started: float | None
    finished: float | None
    progress: float = Field(ge=0, le=1)
    eta: float | None = Field(description="Seconds left, from the pace so far; null before the first step.")
    step: int | None
    steps: int | None
    batch: int | None
    batches: int | None
    phase: Literal["labeling"] | None = Field(
        description="labeling: the pictures are made and are being labeled (NSFW check, mark, watermark, C2PA)."
    )


class LoadedModel(BaseModel):
    """A model the studio knows, and whether this server has it in memory."""

    id: str
    kind: Literal["text", "image"]
    engine: str = Field(description="llamacpp, transformers, remote, diffusers (echo and plain: test engines).")
    default: bool = Field(description="The default model of its kind.")
    loaded: bool = Field(description="In memory now; a model that is not loads on its next request.")
    load_seconds: float | None = Field(
        description="How long the model's last load in this server took, in seconds; null: never loaded here."
    )


class ModelsState(BaseModel):
    """The models and what stays loaded."""

    model_memory: Literal["both", "one"] = Field(
        description="The model_memory setting: both (the default text model and the current image model stay "
        "loaded) or one (loading either kind frees the other once nothing runs on it)."
    )
    max_loaded: int = Field(description="The max_loaded setting: text models kept loaded at once.")
    models: list[LoadedModel]


@router.get("/models")
def models_state(studio: Studio = Depends(get_studio)) -> ModelsState:
    """The models the studio knows, which of them this server has loaded now, and the settings that
    decide what stays loaded."""
    return asdict(studio.models.overview())


@router.get(
    "/images/{image_id}.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The PNG, infotext included."}}
    | errors(ErrorBody, _NOT_FOUND),
)
def image_file(
    image_id: str = Path(description="img-…, as /api/images lists it.", json_schema_extra=_ID),
    studio: Studio = Depends(get_studio),
) -> FileResponse:
    return FileResponse(studio.images.file(image_id), media_type="image/png")


@router.get("/images", responses=errors(ErrorBody, _BAD_QUERY))
def list_images(
    limit: int = Query(50, ge=1, le=1000, description="At most this many images, newest first."),
    q: str | None = Query(
        None, max_length=1000, description="Only images whose prompt, or the template it was drawn from, has this text."
    ),
    studio: Studio = Depends(get_studio),
) -> list[ImageRecord]:
    return studio.images.list(limit=limit, query=q)


@router.get("/jobs/{job_id}", responses=errors(ErrorBody, _NOT_FOUND))
def job_state(
    job_id: str = Path(description="job-…, as the job's record names it.", json_schema_extra=_ID),
    studio: Studio = Depends(get_studio),
) -> JobState:
    state = studio.jobs.describe(job_id)
    if state is None:
        raise NotFound(f"no job with id '{job_id}'")
    return state
