"""AUTOMATIC1111-compatible API under /sdapi/v1, so A1111 clients (webuiapi, plugins) work unchanged.

Request and response shapes follow A1111's: ``images`` as base64 PNG, ``parameters`` echoing the
request, ``info`` as a JSON string with seeds and infotexts. Every A1111 request field is either honoured
or refused with a 422 that names it (``services/a1111_fields.py`` says which, field by field); a field
A1111 does not have is refused too.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from ...contracts import SAMPLERS, SCHEDULERS, ImageRequest, Mode
from ...images.infotext import parse_infotext, read_infotext, to_request_fields
from ...services.a1111 import Prepared, decode_b64_image
from ...services.a1111_schema import image_string, options_model, options_request_schema, request_model
from ...services.images import GenerationResult
from ...studio import Studio
from ..deps import get_studio
from ..openapi import A1111ErrorBody, errors
from ..waiting import wait_for_job

router = APIRouter(prefix="/sdapi/v1", tags=["a1111"])

Txt2ImgRequest = request_model("txt2img")
Img2ImgRequest = request_model("img2img")
Options = options_model()

_INVALID = (
    "A field is of the wrong type or out of range, A1111's request has no such field, the studio cannot honour "
    "the value sent, or the values do not fit together (batch_size × width × height at most 16 megapixels; "
    "the hires fix's size 64 to 2048 pixels a side; override_settings_restore_afterwards false only with "
    "override_settings it can keep; an input image that is not one). Every such field is named; nothing is "
    "queued. Also: the model cannot do this mode, no image model is installed, or it failed to load; or the "
    "prompt contains a term of the prompt_blocklist setting (the term is named; nothing is queued or stored)."
)
_GENERATION_ERRORS = errors(
    A1111ErrorBody,
    {
        404: "The model named by override_settings.sd_model_checkpoint does not exist.",
        409: "The job was interrupted (POST /sdapi/v1/interrupt, or the client went away) before it started.",
        413: "The request body is over max_body_mb, or an input image over max_image_megapixels.",
        422: _INVALID,
        503: "The server is shutting down and takes no new image jobs; send the request again.",
    },
)


class GenerationResponse(BaseModel):
    """A1111's TextToImageResponse and ImageToImageResponse."""

    images: list[str] = Field(description="The images, base64 PNG with their infotext (empty: send_images false).")
    parameters: dict[str, Any] = Field(description="The request as sent (input images left out).")
    info: str = Field(description="A JSON object as text: seeds, infotexts, the model and what ran.")


class PNGInfoRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    image: image_string("The image to read, base64 (a data: URL too).")  # type: ignore[valid-type]


class PNGInfoResponse(BaseModel):
    info: str = Field(description="The infotext, as stored in the image; empty when it has none.")
    items: dict[str, str] = Field(description="The image's other text chunks.")
    parameters: dict[str, Any] = Field(description="The infotext's parameters, by A1111's labels.")
    request: dict[str, Any] | None = Field(
        None, description="The infotext as request fields (A1111's names); absent when there is no infotext."
    )


class ProgressState(BaseModel):
    skipped: bool
    interrupted: bool
    job: str
    job_count: int
    job_timestamp: str
    job_no: int
    sampling_step: int
    sampling_steps: int


class ProgressResponse(BaseModel):
    progress: float = Field(ge=0, le=1)
    eta_relative: float
    state: ProgressState
    current_image: str | None = Field(description="A preview of the image being made, base64 PNG.")
    textinfo: str | None


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None
    default_rho: float
    need_inner_model: bool


class ScriptsList(BaseModel):
    txt2img: list[str]
    img2img: list[str]


class Empty(BaseModel):
    model_config = ConfigDict(extra="forbid")


_FIELD_POLICY = """Each field's description says what the studio does with it: honoured, accepted only at
the value that changes nothing (anything else is a 422 naming the field, and nothing is queued), or
accepted at any value because it changes no image here. A field A1111 does not have is a 422 too. A field
left out takes A1111's API default (50 steps, sampler Euler; img2img: inpainting_fill 0,
inpaint_full_res true, padding 0). Images are kept as PNG files and gallery records unless
do_not_save_samples is true, whatever save_images says (A1111 saves API images only with save_images)."""


def encode_preview(image: Image.Image) -> str:
    """A progress preview (never written to disk) as a base64 PNG."""
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def _run(http: Request, studio: Studio, request: ImageRequest, mode: Mode, body: Prepared, **images: Any) -> dict:
    # Checks run before queueing (a bad request queues nothing); the wait holds no thread, and a
    # client that disconnects interrupts its job.
    job = await run_in_threadpool(studio.images.submit, request, mode, source="sdapi", **images)
    result: GenerationResult = await wait_for_job(http, studio.jobs, job)
    return {
        "images": [g.png_base64() for g in result.images] if body.send_images else [],
        "parameters": body.echo,
        "info": json.dumps(result.a1111_info(), ensure_ascii=False),
    }


@router.post("/txt2img", description=_FIELD_POLICY, responses=_GENERATION_ERRORS)
async def txt2img(body: Txt2ImgRequest, http: Request, studio: Studio = Depends(get_studio)) -> GenerationResponse:
    prepared = await run_in_threadpool(studio.a1111.prepare, body.model_dump(exclude_unset=True), "txt2img")
    answer = await _run(http, studio, prepared.request, prepared.mode, prepared, **prepared.submit)
    studio.a1111.finish(prepared)
    return answer


@router.post("/img2img", description=_FIELD_POLICY + " With mask, img2img inpaints.", responses=_GENERATION_ERRORS)
async def img2img(body: Img2ImgRequest, http: Request, studio: Studio = Depends(get_studio)) -> GenerationResponse:
    prepared = await run_in_threadpool(studio.a1111.prepare, body.model_dump(exclude_unset=True), "img2img")
    answer = await _run(http, studio, prepared.request, prepared.mode, prepared, **prepared.submit)
    studio.a1111.finish(prepared)
    return answer


@router.post(
    "/png-info",
    responses=errors(
        A1111ErrorBody,
        {
            413: "The request body is over max_body_mb, or the image over max_image_megapixels.",
            422: "image is missing, not text, not base64, or not a readable image (PNG, JPEG or WebP).",
        },
    ),
)
def png_info(body: PNGInfoRequest, studio: Studio = Depends(get_studio)) -> PNGInfoResponse:
    picture = decode_b64_image(body.image, "image", studio.images.open_image)
    text = read_infotext(picture)
    items = {k: v for k, v in picture.info.items() if isinstance(v, str)}
    if text is None:
        return {"info": "", "items": items, "parameters": {}}
    parsed = parse_infotext(text)
    parameters = {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt, **parsed.params}
    return {"info": text, "items": items, "parameters": parameters, "request": to_request_fields(parsed)}


@router.get("/progress", responses=errors(A1111ErrorBody, {422: "skip_current_image is not true or false."}))
def progress(
    skip_current_image: bool = Query(False, description="true: leave the preview out (current_image null)."),
    studio: Studio = Depends(get_studio),
) -> ProgressResponse:
    job = studio.jobs.running()  # another user's job is not shown: their progress is theirs
    pending = studio.jobs.pending()
    if job is None:
        return {
            "progress": 0.0,
            "eta_relative": 0.0,
            "state": _state(None, len(pending)),
            "current_image": None,
            "textinfo": None,
        }
    image = None
    if not skip_current_image and job.preview is not None:
        preview = job.preview()
        image = encode_preview(preview) if preview is not None else None
    return {
        "progress": round(job.progress, 4),
        "eta_relative": round(job.eta or 0.0, 2),
        "state": _state(job, len(pending)),
        "current_image": image,
        "textinfo": "Labeling"
        if job.phase == "labeling"
        else job.phase[:1].upper() + job.phase[1:]  # "Compiling the UNet (once per model)"
        if job.phase
        else f"Step {job.step}/{job.steps}, batch {job.batch + 1}/{job.batches}",
    }


def _state(job, job_count: int) -> dict:
    return {
        "skipped": bool(job and job.control.skip.is_set()),
        "interrupted": bool(job and job.control.interrupt.is_set()),
        "job": job.id if job else "",
        "job_count": job_count,
        "job_timestamp": "",
        "job_no": job.batch if job else 0,
        "sampling_step": job.step if job else 0,
        "sampling_steps": job.steps if job else 0,
    }


@router.post("/interrupt")
def interrupt(studio: Studio = Depends(get_studio)) -> Empty:
    studio.jobs.interrupt()
    return {}


@router.post("/skip")
def skip(studio: Studio = Depends(get_studio)) -> Empty:
    studio.jobs.skip()
    return {}


@router.get("/sd-models")
def sd_models(studio: Studio = Depends(get_studio)) -> list[SDModelItem]:
    return [studio.a1111.checkpoint(m) for m in studio.registry.all() if m.kind == "image"]


# A1111 answers these with JSON null.
_NULL = {200: {"description": "Done.", "content": {"application/json": {"schema": {"type": "null"}}}}}


@router.post("/refresh-checkpoints", responses=_NULL)
def refresh_checkpoints() -> None:
    # Models live in the studio's registry, read fresh on every call: nothing to rescan.
    return None


@router.get("/samplers")
def samplers() -> list[SamplerItem]:
    return [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS]


@router.get("/schedulers")
def schedulers() -> list[SchedulerItem]:
    return [
        {"name": name, "label": label, "aliases": None, "default_rho": -1, "need_inner_model": False}
        for name, label in SCHEDULERS.items()
    ]


@router.get("/options")
def get_options(studio: Studio = Depends(get_studio)) -> Options:  # type: ignore[valid-type]
    return studio.a1111.options()


@router.post(
    "/options",
    description="Stores the A1111 options the studio knows and ignores unknown keys, as A1111 does. "
    "sd_model_checkpoint makes a model the default (and loads it); CLIP_stop_at_last_layers is the clip skip "
    "of later generations that do not set one; options that change no image are stored; an option that "
    "would change later images in a way the studio cannot is a 422 naming it, and then nothing is set.",
    responses=_NULL
    | errors(
        A1111ErrorBody,
        {
            404: "sd_model_checkpoint names no image model.",
            413: "The request body is over max_body_mb.",
            422: "An option of the wrong type, one that would change later images in a way the studio cannot, "
            "or a model that failed to load; each is named, and nothing is set.",
        },
    ),
)
async def set_options(
    options: Annotated[dict[str, Any], WithJsonSchema(options_request_schema(in_request=False)), Body()],
    studio: Studio = Depends(get_studio),
) -> None:
    await run_in_threadpool(studio.a1111.set_options, options)
    return None


class PromptStyleItem(BaseModel):
    """A1111's PromptStyleItem: a saved style (AIGC_HOME/styles.csv)."""

    name: str
    prompt: str | None = Field(description="Applied to the prompt: {prompt} takes it, else appended after ', '.")
    negative_prompt: str | None = Field(description="Applied to the negative prompt the same way.")


@router.get(
    "/prompt-styles",
    responses=errors(A1111ErrorBody, {422: "AIGC_HOME/styles.csv is malformed; the message names the line."}),
)
def prompt_styles(studio: Studio = Depends(get_studio)) -> list[PromptStyleItem]:
    return [style.as_dict() for style in studio.prompts.styles.all()]


@router.get("/scripts")
def scripts() -> ScriptsList:
    # The studio runs no A1111 scripts or extensions; clients (webuiapi) read this to learn which exist.
    return {"txt2img": [], "img2img": []}


@router.get("/script-info")
def script_info() -> list[dict[str, Any]]:
    return []
