"""AUTOMATIC1111-compatible API under /sdapi/v1, so A1111 clients (webuiapi, plugins) work unchanged.

Request and response shapes follow A1111's: ``images`` as base64 PNG, ``parameters`` echoing the
request, ``info`` as a JSON string with seeds and infotexts. Unknown A1111 fields are accepted and
ignored; the ones the studio uses are validated with the limits declared on ``ImageRequest``.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import BaseModel, ConfigDict

from ...contracts import SAMPLERS, SCHEDULERS, ImageRequest, Mode
from ...errors import InvalidRequest
from ...images.infotext import parse_infotext, read_infotext, to_request_fields
from ...services.images import GenerationResult
from ...studio import Studio
from ..deps import get_studio
from ..waiting import wait_for_job

router = APIRouter(prefix="/sdapi/v1", tags=["a1111"])

_FIELDS = set(ImageRequest.model_fields) - {"model"}


class A1111Body(BaseModel):
    """Any A1111 processing request; what the studio uses is validated as an ImageRequest."""

    model_config = ConfigDict(extra="allow")

    override_settings: dict[str, Any] | None = None
    sampler_index: str | None = None
    send_images: bool = True


def decode_b64_image(data: object, what: str, studio: Studio) -> Image.Image:
    """A base64 (or data URL) image from a request, checked against the studio's pixel limit."""
    if not isinstance(data, str):
        raise InvalidRequest(f"{what} must be a base64-encoded image (a string), got {type(data).__name__}", param=what)
    if "," in data[:100] and data.startswith("data:"):
        data = data.split(",", 1)[1]  # a data URL, as browsers send
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (ValueError, TypeError):
        raise InvalidRequest(f"{what} is not valid base64", param=what) from None
    return studio.images.open_image(raw, what)


def encode_preview(image: Image.Image) -> str:
    """A progress preview (never written to disk) as a base64 PNG."""
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _image_request(body: A1111Body, studio: Studio) -> ImageRequest:
    fields = {k: v for k, v in (body.model_extra or {}).items() if k in _FIELDS and v is not None}
    if "sampler_name" not in fields and body.sampler_index:
        fields["sampler_name"] = body.sampler_index
    checkpoint = (body.override_settings or {}).get("sd_model_checkpoint")
    if checkpoint:
        fields["model"] = resolve_checkpoint(studio, checkpoint)
    return ImageRequest(**fields)


def resolve_checkpoint(studio: Studio, name: str) -> str:
    """An A1111 checkpoint title, file name or model id -> the model id (see ``ModelService``)."""
    return studio.models.resolve_checkpoint(name).id


async def _run(
    http: Request, studio: Studio, request: ImageRequest, mode: Mode, body: A1111Body, **images: Any
) -> dict:
    # Checks run before queueing (a bad request queues nothing); the wait holds no thread, and a
    # client that disconnects interrupts its job.
    job = await run_in_threadpool(studio.images.submit, request, mode, source="sdapi", **images)
    result: GenerationResult = await wait_for_job(http, studio.jobs, job)
    return {
        "images": [g.png_base64() for g in result.images] if body.send_images else [],
        "parameters": _echo(body),
        "info": json.dumps(result.a1111_info(), ensure_ascii=False),
    }


def _echo(body: A1111Body) -> dict:
    """The request as A1111 echoes it: input images left out unless include_init_images is set."""
    echoed = {
        **(body.model_extra or {}),
        "override_settings": body.override_settings,
        "sampler_index": body.sampler_index,
    }
    if not echoed.get("include_init_images"):
        for key in ("init_images", "mask"):
            if key in echoed:
                echoed[key] = None
    return echoed


@router.post("/txt2img")
async def txt2img(body: A1111Body, http: Request, studio: Studio = Depends(get_studio)) -> dict:
    return await _run(http, studio, _image_request(body, studio), "txt2img", body)


@router.post("/img2img")
async def img2img(body: A1111Body, http: Request, studio: Studio = Depends(get_studio)) -> dict:
    extra = body.model_extra or {}
    init_images = extra.get("init_images") or []
    if not isinstance(init_images, list):
        raise InvalidRequest("init_images must be a list of base64 images", param="init_images")
    if not init_images:
        raise InvalidRequest("init_images must hold one base64 image", param="init_images")
    init = decode_b64_image(init_images[0], "init_images", studio)
    mask = decode_b64_image(extra["mask"], "mask", studio) if extra.get("mask") else None
    request = _image_request(body, studio)
    mode = "inpaint" if mask is not None else "img2img"
    return await _run(http, studio, request, mode, body, init_image=init, mask=mask)


@router.post("/png-info")
def png_info(image: str = Body(..., embed=True), studio: Studio = Depends(get_studio)) -> dict:
    picture = decode_b64_image(image, "image", studio)
    text = read_infotext(picture)
    items = {k: v for k, v in picture.info.items() if isinstance(v, str)}
    if text is None:
        return {"info": "", "items": items, "parameters": {}}
    parsed = parse_infotext(text)
    parameters = {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt, **parsed.params}
    return {"info": text, "items": items, "parameters": parameters, "request": to_request_fields(parsed)}


@router.get("/progress")
def progress(skip_current_image: bool = False, studio: Studio = Depends(get_studio)) -> dict:
    job = studio.jobs.current
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
        "textinfo": f"Step {job.step}/{job.steps}, batch {job.batch + 1}/{job.batches}",
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
def interrupt(studio: Studio = Depends(get_studio)) -> dict:
    studio.jobs.interrupt()
    return {}


@router.post("/skip")
def skip(studio: Studio = Depends(get_studio)) -> dict:
    studio.jobs.skip()
    return {}


def _checkpoint(studio: Studio, info) -> dict:
    sha = studio.registry.sha256(info)
    short = sha[:10] if sha else None
    name = info.id
    return {
        "title": f"{name} [{short}]" if short else name,
        "model_name": name,
        "hash": short,
        "sha256": sha,
        "filename": info.path or name,
        "config": None,
    }


@router.get("/sd-models")
def sd_models(studio: Studio = Depends(get_studio)) -> list[dict]:
    return [_checkpoint(studio, m) for m in studio.registry.all() if m.kind == "image"]


@router.post("/refresh-checkpoints")
def refresh_checkpoints() -> None:
    # Models live in the studio's registry, read fresh on every call: nothing to rescan.
    return None


@router.get("/samplers")
def samplers() -> list[dict]:
    return [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS]


@router.get("/schedulers")
def schedulers() -> list[dict]:
    return [
        {"name": name, "label": label, "aliases": None, "default_rho": -1, "need_inner_model": False}
        for name, label in SCHEDULERS.items()
    ]


@router.get("/options")
def get_options(studio: Studio = Depends(get_studio)) -> dict:
    try:
        current = studio.registry.resolve(studio.registry.default_image_model, kind="image")
        checkpoint = _checkpoint(studio, current)["title"]
    except InvalidRequest:
        checkpoint = None
    return {
        "sd_model_checkpoint": checkpoint,
        "sd_checkpoint_hash": checkpoint.split("[")[-1].rstrip("]") if checkpoint and "[" in checkpoint else None,
        "outdir_samples": str(studio.config.outputs_dir / "images"),
        "samples_format": "png",
        "CLIP_stop_at_last_layers": 1,
    }


@router.post("/options")
async def set_options(options: dict[str, Any] = Body(...), studio: Studio = Depends(get_studio)) -> None:
    unknown = sorted(set(options) - {"sd_model_checkpoint"})
    if unknown:
        raise InvalidRequest(f"option(s) {', '.join(unknown)} cannot be set here; supported: sd_model_checkpoint")
    if "sd_model_checkpoint" in options:
        model_id = resolve_checkpoint(studio, str(options["sd_model_checkpoint"]))
        studio.models.set_default(model_id, kind="image")
        # As in A1111, setting the checkpoint loads it, so the next generation starts warm.
        await run_in_threadpool(studio.registry.image_engine, model_id)
    return None
