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
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image

from ...contracts import SAMPLERS, SCHEDULERS, ImageRequest, Mode
from ...images.infotext import parse_infotext, read_infotext, to_request_fields
from ...services.a1111 import Prepared, decode_b64_image, request_model
from ...services.images import GenerationResult
from ...studio import Studio
from ..deps import get_studio
from ..waiting import wait_for_job

router = APIRouter(prefix="/sdapi/v1", tags=["a1111"])

Txt2ImgRequest = request_model("txt2img")
Img2ImgRequest = request_model("img2img")

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


@router.post("/txt2img", description=_FIELD_POLICY)
async def txt2img(body: Txt2ImgRequest, http: Request, studio: Studio = Depends(get_studio)) -> dict:
    prepared = await run_in_threadpool(studio.a1111.prepare, body.model_dump(exclude_unset=True), "txt2img")
    answer = await _run(http, studio, prepared.request, prepared.mode, prepared, **prepared.submit)
    studio.a1111.finish(prepared)
    return answer


@router.post("/img2img", description=_FIELD_POLICY + " With mask, img2img inpaints.")
async def img2img(body: Img2ImgRequest, http: Request, studio: Studio = Depends(get_studio)) -> dict:
    prepared = await run_in_threadpool(studio.a1111.prepare, body.model_dump(exclude_unset=True), "img2img")
    answer = await _run(http, studio, prepared.request, prepared.mode, prepared, **prepared.submit)
    studio.a1111.finish(prepared)
    return answer


@router.post("/png-info")
def png_info(image: str = Body(..., embed=True), studio: Studio = Depends(get_studio)) -> dict:
    picture = decode_b64_image(image, "image", studio.images.open_image)
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


@router.get("/sd-models")
def sd_models(studio: Studio = Depends(get_studio)) -> list[dict]:
    return [studio.a1111.checkpoint(m) for m in studio.registry.all() if m.kind == "image"]


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
    return studio.a1111.options()


@router.post(
    "/options",
    description="Stores the A1111 options the studio knows and ignores unknown keys, as A1111 does. "
    "sd_model_checkpoint makes a model the default (and loads it); CLIP_stop_at_last_layers is the clip skip "
    "of later generations that do not set one; options that change no image are stored; an option that "
    "would change later images in a way the studio cannot is a 422 naming it, and then nothing is set.",
)
async def set_options(options: dict[str, Any] = Body(...), studio: Studio = Depends(get_studio)) -> None:
    await run_in_threadpool(studio.a1111.set_options, options)
    return None


@router.get("/scripts")
def scripts() -> dict:
    # The studio runs no A1111 scripts or extensions; clients (webuiapi) read this to learn which exist.
    return {"txt2img": [], "img2img": []}


@router.get("/script-info")
def script_info() -> list:
    return []
