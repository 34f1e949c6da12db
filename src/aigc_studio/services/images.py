"""Images: the product logic of one generation, shared by the CLI, the A1111 and OpenAI APIs and the UI.

``submit`` checks everything that can be checked before any work is queued (model, sizes, images,
mask, the prompt block-list), fixes the seeds, and queues the job; the job runs the engine, labels each
image (services/labeling.py: NSFW check, visible mark, watermark, AIGC metadata, C2PA), writes it as a
PNG with A1111's infotext under AIGC_HOME/outputs, and records it, with what was applied, for the
gallery.

A queued generation survives a restart: its job records the checked request (job kind "image") and
its input images are kept under AIGC_HOME/jobs/<job id>/ until it ends, so ``resume`` submits it again,
through ``submit``, after the server comes back.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from pydantic import ValidationError

from .. import __version__, principal
from ..config import Config
from ..contracts import INPAINT_FIELDS, ImageRequest, Mode, StepInfo
from ..engines.samplers import SamplerError, sampler_fields
from ..errors import InvalidRequest, NotFound, TooLarge, validation_message
from ..images.decode import FORMATS, ImageTooLarge, UnreadableImage, decode_image
from ..images.infotext import add_templates, format_infotext, params_from_request
from ..images.masking import blank_mask
from ..images.resize import hires_size
from ..models.registry import ModelInfo, Registry
from ..storage.db import Database, like_pattern
from ..storage.files import clean_stale, commit_temp, write_atomic, write_temp
from ..storage.history import new_id
from ..storage.owners import mine
from .jobs import Job, JobQueue
from .labeling import Labeler
from .limits import Limits
from .prompt_craft import PromptCraft, PromptPlan

VERSION = f"aigc-studio-{__version__}"


@contextlib.contextmanager
def _removed_on_error(tmp: Path):
    try:
        yield
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass
class GeneratedImage:
    id: str
    path: Path | None  # None when the request asked for no file (A1111's do_not_save_samples)
    image: Image.Image
    seed: int
    subseed: int
    infotext: str
    prompt: str = ""  # the prompt this image ran with (styles applied, dynamic prompts drawn)
    negative_prompt: str = ""
    data: bytes = b""  # the labeled PNG, as written to ``path`` (or sent, when there is no file)
    labels: dict | None = None  # what labeling applied (LabeledImage.record)

    def png_base64(self) -> str:
        """The image as the APIs send it: the labeled PNG (infotext included), base64; the same bytes
        as the file, when one was written."""
        return base64.b64encode(self.data).decode()


@dataclass
class GenerationResult:
    request: ImageRequest
    mode: Mode
    model: str
    model_hash: str | None
    images: list[GeneratedImage] = field(default_factory=list)
    interrupted: bool = False
    job_id: str = ""
    job_timestamp: str = ""
    # infotext keys beyond A1111's fixed ones (hires fix, tiling, inpainting), as its ``info`` reports them
    extra_generation_params: dict = field(default_factory=dict)
    # what the prompts were made from: the styles applied and the dynamic-prompt templates (None without)
    styles: list[str] = field(default_factory=list)
    template: str | None = None
    negative_template: str | None = None

    def a1111_info(self) -> dict:
        """The ``info`` object of A1111's API responses (sent as a JSON string)."""
        r = self.request
        seeds = [g.seed for g in self.images] or [r.seed]
        subseeds = [g.subseed for g in self.images] or [r.subseed]
        prompts = [g.prompt for g in self.images] or [r.prompt]
        negatives = [g.negative_prompt for g in self.images] or [r.negative_prompt]
        return {
            "prompt": prompts[0],
            "all_prompts": prompts,
            "negative_prompt": negatives[0],
            "all_negative_prompts": negatives,
            "seed": seeds[0],
            "all_seeds": seeds,
            "subseed": subseeds[0],
            "all_subseeds": subseeds,
            "subseed_strength": r.subseed_strength,
            "width": r.width,
            "height": r.height,
            "sampler_name": r.sampler_name,
            "scheduler": r.scheduler,
            "cfg_scale": r.cfg_scale,
            "steps": r.steps,
            "batch_size": r.batch_size,
            "restore_faces": False,
            "face_restoration_model": None,
            "sd_model_name": self.model,
            "sd_model_hash": self.model_hash,
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": r.denoising_strength if self.mode != "txt2img" or r.enable_hr else None,
            "image_cfg_scale": r.image_cfg_scale if self.mode == "edit" else None,
            "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": 0,
            "infotexts": [g.infotext for g in self.images],
            "styles": self.styles,
            "job_timestamp": self.job_timestamp,
            "clip_skip": r.clip_skip,
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
            "interrupted": self.interrupted,
        }


DEFAULT_MAX_MEGAPIXELS = 64  # the ``max_image_megapixels`` setting's default


def _check_pixels(size: tuple[int, int], what: str, max_megapixels: int) -> None:
    if size[0] * size[1] > max_megapixels * 1_000_000:
        raise TooLarge(
            f"{what} is {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.0f} megapixels); the limit is "
            f"{max_megapixels} megapixels (setting max_image_megapixels)",
            param=what,
        )


def open_image(
    data: bytes | Image.Image, what: str, max_megapixels: int = DEFAULT_MAX_MEGAPIXELS, *, any_format: bool = False
) -> Image.Image:
    """A PIL image from bytes, with a clear error for anything that is not a whole, readable image
    (InvalidRequest) or that is larger than ``max_megapixels`` (TooLarge). The bytes go through
    images/decode.py: the size is checked from the header and a PNG's compressed data from its chunks,
    before a single pixel is decoded, so a small file that claims or inflates to a huge image costs
    nothing. ``any_format`` lets every format Pillow reads through (inspect), not only PNG, JPEG and WebP."""
    if isinstance(data, Image.Image):
        _check_pixels(data.size, what, max_megapixels)
        return data
    try:
        return decode_image(data, max_megapixels * 1_000_000, None if any_format else FORMATS)
    except ImageTooLarge as exc:
        raise TooLarge(f"{what} is {exc}", param=what) from None
    except UnreadableImage as exc:
        raise InvalidRequest(f"{what} is not a readable image (PNG, JPEG or WebP): {exc}", param=what) from None


def decode_base64(data: str, what: str = "data") -> bytes:
    """The bytes of a base64 upload (a data: URL too, as browsers send); InvalidRequest naming ``what``."""
    if data.startswith("data:") and "," in data[:200]:
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except ValueError:
        raise InvalidRequest(f"{what} is not valid base64", param=what) from None


# infotext keys A1111 keeps in ``extra_generation_params`` (the rest are its fixed ones)
_EXTRA_KEYS = {
    "Mask mode",
    "Mask blur",
    "Inpaint area",
    "Masked area padding",
    "Masked content",
    "Resize mode",
    "Hires sampler",
    "Hires prompt",
    "Hires negative prompt",
    "Hires schedule type",
    "Hires upscale",
    "Hires resize",
    "Hires steps",
    "Hires upscaler",
    "Token merging ratio",
    "NGMS",
    "NGMS all steps",
}


def _fields_as_run(request: ImageRequest, mode: Mode) -> dict:
    """The request's fields for the record, with those that did not apply to this mode set to None (so
    the infotext leaves them out, as A1111's does)."""
    fields = request.model_dump()
    if mode != "inpaint":
        fields.update(dict.fromkeys(INPAINT_FIELDS))
    if mode == "txt2img" or (mode == "inpaint" and request.inpaint_full_res):
        fields["resize_mode"] = None  # "Only masked" crops instead of fitting the whole picture
    hires = mode == "txt2img" and request.enable_hr
    fields["denoising_strength"] = request.denoising_strength if mode in ("img2img", "inpaint") or hires else None
    fields["image_cfg_scale"] = request.image_cfg_scale if mode == "edit" else None
    return fields


def check_hires_size(request: ImageRequest) -> None:
    """InvalidRequest when hires fix would make an image out of bounds (a side, or the batch's pixels)."""
    target = hires_size(request.width, request.height, request.hr_scale, request.hr_resize_x, request.hr_resize_y)
    width, height = target.size
    if min(width, height) < 64 or max(width, height) > 2048:
        raise InvalidRequest(
            f"hires fix would make a {width}x{height} image; each side must be 64 to 2048 pixels "
            "(lower hr_scale or hr_resize_x/hr_resize_y)",
            param="hr_scale",
        )
    if request.batch_size * width * height > 16 * 1024 * 1024:
        raise InvalidRequest(
            f"hires fix would make batches of {request.batch_size} × {width}x{height}; batch_size × width × "
            "height must be at most 16 megapixels",
            param="batch_size",
        )


def _steps_that_ran(request: ImageRequest, mode: Mode, reached: int, total: int) -> dict:
    """What to record of a batch that stopped at iteration ``reached`` of ``total`` (interrupt or skip):
    the whole denoising steps that ran, as ``steps_run`` (or ``hr_steps_run`` when it stopped in the
    hires pass). Nothing when it ran to the end.

    ``steps`` itself stays as asked: it sets the noise schedule, so pasting the infotext back makes the
    whole picture. Iterations are the engine's progress ticks; a sampler that evaluates the model twice
    a step (Heun, DPM2) ticks 2·steps − 1 times, so they are turned into whole steps by their share.
    """
    if reached >= total:
        return {}
    if mode in ("img2img", "inpaint"):  # A1111 runs the last int(s·n) + 1 steps of an n-step schedule
        first = int(min(request.denoising_strength, 0.999) * request.steps) + 1
    else:
        first = request.steps
    hires = mode == "txt2img" and request.enable_hr and request.denoising_strength > 0
    second = (request.hr_second_pass_steps or request.steps) if hires else 0
    done = int(reached * (first + second) / total + 1e-9)
    if done <= first:
        return {"steps_run": done}
    return {"hr_steps_run": done - first}


class ImageService:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        queue: JobQueue,
        outputs_dir: Path,
        config: Config | None = None,
        max_megapixels: int = DEFAULT_MAX_MEGAPIXELS,
        prompt_craft: PromptCraft | None = None,
        *,
        labeler: Labeler,
        jobs_dir: Path | None = None,
        limits: Limits | None = None,
    ):
        self.db = db
        self.limits = limits or Limits()
        # The input images of queued jobs, kept until each job ends so a restart can run it again.
        self.jobs_dir = jobs_dir or outputs_dir.parent / "jobs"
        queue.register_kind("image", self.resume)
        self.labeler = labeler
        self.prompt_craft = prompt_craft
        self.registry = registry
        self.queue = queue
        self.outputs_dir = outputs_dir
        self.config = config
        self.max_megapixels = max_megapixels

    def open_image(self, data: bytes | Image.Image, what: str) -> Image.Image:
        """``open_image`` with this studio's limits: an uploaded file's size (``max_upload_mb``), the
        image's pixels (``max_image_megapixels``)."""
        if isinstance(data, bytes):
            self.limits.check_upload(len(data), what)
        return open_image(data, what, self.max_megapixels)

    def submit(
        self,
        request: ImageRequest,
        mode: Mode = "txt2img",
        *,
        init_image: Image.Image | None = None,
        mask: Image.Image | None = None,
        source: str = "api",
        defaults: dict | None = None,
        keep: bool = True,
        job_id: str | None = None,
        resumable: bool = True,
    ) -> Job:
        """Check and queue a generation; returns the job (``job.wait()`` gives a GenerationResult).

        What the request does not set comes from, first to last: the model's own defaults (SD-Turbo: 1
        step, CFG 0), ``defaults`` (an API's own, such as A1111's 50 steps), the ``clip_skip`` and
        ``token_merging_ratio`` settings, the declaration. ``keep=False`` writes no file and no gallery
        record (A1111's do_not_save_samples); the images still come back in the result. ``job_id`` is
        for ``resume`` only: the recorded job this submission runs again. ``resumable=False``: after a
        restart the job is not run again (a comparison's or a battle's cell, whose whole does not survive).
        """
        if request.s_min_uncond and mode == "edit":
            raise InvalidRequest(
                "s_min_uncond (Negative Guidance minimum sigma) applies to txt2img, img2img and inpainting; an "
                "instruction edit guides by image and text together and never skips the negative prompt (as in "
                "A1111): send 0",
                param="s_min_uncond",
            )
        info = self.registry.resolve(request.model or self.registry.default_image_model, kind="image")
        # What the model can do is known without loading it, so a request it cannot serve is refused
        # here: nothing is queued and the loaded model stays loaded.
        capabilities = self.registry.image_capabilities(info)
        if capabilities is not None:
            if mode == "img2img" and "img2img" not in capabilities and "edit" in capabilities:
                mode = "edit"  # as in A1111: img2img with an InstructPix2Pix checkpoint edits by instruction
            if mode not in capabilities:
                hint = (
                    " (use an InstructPix2Pix model, e.g. `aigc models pull instruct-pix2pix`)"
                    if mode == "edit"
                    else ""
                )
                raise InvalidRequest(
                    f"model '{info.id}' cannot do {mode}; it can do {', '.join(capabilities)}{hint}", param="model"
                )
        for image, what in ((init_image, "init_images"), (mask, "mask")):
            if image is not None:
                _check_pixels(image.size, what, self.max_megapixels)
        if mode != "txt2img" and init_image is None:
            raise InvalidRequest(f"{mode} needs an input image", param="init_images")
        if mode == "inpaint" and mask is None:
            raise InvalidRequest("inpainting needs a mask (white where the image should change)", param="mask")
        if mask is not None and init_image is not None and mask.size != init_image.size:
            raise InvalidRequest(
                f"the mask is {mask.size[0]}x{mask.size[1]} but the image is "
                f"{init_image.size[0]}x{init_image.size[1]}; they must be the same size",
                param="mask",
            )
        if request.enable_hr and mode != "txt2img":
            raise InvalidRequest(f"enable_hr: hires fix is for txt2img, not {mode}", param="enable_hr")
        # What the user did not set: the model's own defaults (SD-Turbo: 1 step, CFG 0) first, then the
        # caller's (A1111's API defaults), then the clip_skip and token_merging_ratio settings.
        fallback = {}
        if self.config is not None:
            fallback = {key: self.config.values[key] for key in ("clip_skip", "token_merging_ratio")}
        fallback = {**fallback, **(defaults or {}), **info.defaults}
        unset = {k: v for k, v in fallback.items() if k not in request.model_fields_set}
        if unset:
            try:  # validated again: a caller may have built the request without validation (model_copy)
                request = ImageRequest(**{**request.model_dump(exclude_unset=True), **unset})
            except ValidationError as exc:
                message, param = validation_message(exc.errors())
                raise InvalidRequest(message, param=param) from None
        try:  # the schedule type and eta that will run (see engines/samplers.py)
            sampler_update = sampler_fields(request)
        except SamplerError as exc:
            raise InvalidRequest(str(exc), param=exc.param) from None
        # The seeds, schedule type and eta are fixed before queueing, so the record says exactly what will run.
        request = request.model_copy(
            update={
                **sampler_update,
                "model": info.id,
                "seed": request.seed if request.seed != -1 else random.randrange(2**32),
                "subseed": request.subseed if request.subseed != -1 else random.randrange(2**32),
            }
        )
        plan = self._plan(request)
        # The block-list sees every prompt that will run (styles applied, dynamic prompts drawn), before
        # anything is queued or stored. Negative prompts say what must not be drawn: not checked.
        self.labeler.check_prompt(request.prompt, request.hr_prompt, *(positive for positive, _ in plan.prompts))
        steps = request.steps
        width, height, hires = request.width, request.height, ""
        if request.enable_hr:
            check_hires_size(request)
            width, height = hires_size(
                request.width, request.height, request.hr_scale, request.hr_resize_x, request.hr_resize_y
            ).size
            hires = f" (hires fix from {request.width}x{request.height})"
        self.limits.check_pixels(width, height, request.batch_size, request.n_iter, hires)
        if request.enable_hr:
            steps += (request.hr_second_pass_steps or request.steps) if request.denoising_strength else 0
        if mode == "inpaint" and request.inpaint_full_res and blank_mask(request, mask):
            # A1111: "Only masked" with nothing masked repaints the whole picture, as img2img
            mode, mask = "img2img", None
            request = request.model_copy(update={"inpaint_full_res": False})
        # The engine fits image and mask to the request itself (resize mode, "Only masked"), from the
        # caller's pixels: the mask is blurred there, once.
        init = init_image.copy() if init_image is not None else None
        mask = mask.copy() if mask is not None else None

        def work(job: Job) -> GenerationResult:
            return self._run(job, request, mode, info, init, mask, keep=keep, plan=plan)

        resumed = job_id is not None
        if not keep:  # its images go only to its client: after a restart there is nobody to give them to
            resume = {"kind": None, "why": "its images were only for the client that asked (do_not_save_samples)"}
        elif not resumable:
            resume = {"kind": None, "why": f"it was part of a {source} run, which does not survive a restart"}
        else:
            job_id = job_id or new_id("job")
            resume = {"kind": "image", "args": self._keep_inputs(job_id, request, mode, source, init, mask)}
        job = self.queue.submit(
            mode,
            work,
            model=info.id,
            request={**request.model_dump(), "mode": mode},
            source=source,
            batches=len(plan.prompts) if plan.varies else request.n_iter,
            steps=steps,
            resume=resume,
            job_id=job_id,
            resumed=resumed,
        )
        if resume["kind"] is not None:
            job._when_ended(lambda: self._drop_inputs(job))
        return job

    def _keep_inputs(
        self,
        job_id: str,
        request: ImageRequest,
        mode: Mode,
        source: str,
        init: Image.Image | None,
        mask: Image.Image | None,
    ) -> dict:
        """What ``resume`` needs to submit this job again: the checked request, and its input images
        written (PNG, lossless) under AIGC_HOME/jobs/<job id>/."""
        args: dict = {"request": request.model_dump(mode="json"), "mode": mode, "source": source}
        for name, image in (("init", init), ("mask", mask)):
            if image is not None:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                write_atomic(self.jobs_dir / job_id / f"{name}.png", buffer.getvalue())
                args[name] = f"{name}.png"
        return args

    def _drop_inputs(self, job: Job) -> None:
        # A job left queued at shutdown has ended for its waiter only: its inputs stay for the next start.
        if job.state != "queued":
            shutil.rmtree(self.jobs_dir / job.id, ignore_errors=True)

    def resume(self, job_id: str, args: dict) -> Job:
        """Submit a recorded job again after a restart (JobQueue.recover), under its own id: the same
        checks and the same path as a new request."""
        inputs = {}
        for name in ("init", "mask"):
            if args.get(name):
                path = self.jobs_dir / job_id / args[name]
                if not path.is_file():
                    raise NotFound(f"the job's {name} image {path} is gone")
                inputs[name] = Image.open(path)
                inputs[name].load()
        request = ImageRequest(**args["request"])
        return self.submit(
            request,
            args["mode"],
            init_image=inputs.get("init"),
            mask=inputs.get("mask"),
            source=args["source"],
            job_id=job_id,
        )

    def recover_files(self) -> dict[str, int]:
        """At start: finish or remove what a killed process left under outputs (see storage/files.py),
        and remove the input images of jobs that have ended. Returns the counts, for the log."""
        recorded = {row["path"] for row in self.db.conn.execute("SELECT path FROM images")}
        # A PNG whose record was committed but whose rename the kill prevented is complete: put in place.
        removed, finished = clean_stale(self.outputs_dir, finish=lambda final: str(final) in recorded)
        ended = 0
        if self.jobs_dir.is_dir():
            for folder in self.jobs_dir.iterdir():
                row = self.db.conn.execute("SELECT state FROM jobs WHERE id = ?", (folder.name,)).fetchone()
                if row is None or row["state"] not in ("queued", "running"):
                    shutil.rmtree(folder, ignore_errors=True)
                    ended += 1
        return {
            "temporary files removed": len(removed),
            "images put in place": len(finished),
            "job inputs removed": ended,
        }

    def _plan(self, request: ImageRequest) -> PromptPlan:
        """The prompts each image runs with (styles applied, dynamic prompts drawn); checked here, so
        a bad style or template queues nothing."""
        if not request.styles and request.dynamic_prompts is None:
            return PromptPlan([(request.prompt, request.negative_prompt)] * (request.batch_size * request.n_iter))
        if self.prompt_craft is None:
            raise InvalidRequest("styles and dynamic prompts need the studio's prompt service", param="styles")
        return self.prompt_craft.plan(request)

    def generate(self, request: ImageRequest, mode: Mode = "txt2img", **kwargs) -> GenerationResult:
        """Queue a generation and wait for it."""
        return self.submit(request, mode, **kwargs).wait()

    def _run(
        self,
        job: Job,
        request: ImageRequest,
        mode: Mode,
        info: ModelInfo,
        init: Image.Image | None,
        mask: Image.Image | None,
        keep: bool = True,
        plan: PromptPlan | None = None,
    ) -> GenerationResult:
        plan = plan or PromptPlan([(request.prompt, request.negative_prompt)] * (request.batch_size * request.n_iter))
        engine = self.registry.image_engine(info.id)
        if mode == "img2img" and engine.supports_instruct_edit and not engine.supports_img2img:
            mode = "edit"  # as in A1111: img2img with an InstructPix2Pix checkpoint edits by instruction
        needed = {"img2img": "supports_img2img", "inpaint": "supports_inpaint", "edit": "supports_instruct_edit"}
        if mode in needed and not getattr(engine, needed[mode]):
            hint = " (use an InstructPix2Pix model, e.g. `aigc models pull instruct-pix2pix`)" if mode == "edit" else ""
            raise InvalidRequest(f"model '{info.id}' cannot do {mode}{hint}", param="model")
        if mode == "edit" and request.resize_mode == 3:
            raise InvalidRequest(
                "resize_mode 3 (latent resize) is for img2img and inpaint; an instruction edit takes 0, 1 or 2",
                param="resize_mode",
            )

        reached: dict[int, tuple[int, int]] = {}  # batch -> (last step it ran, steps it would run)
        offset = 0  # the batch number of the current run's first batch

        if request.token_merging_ratio and not engine.supports_token_merging:
            # This engine runs without it, and the record says what ran.
            request = request.model_copy(update={"token_merging_ratio": 0.0})
        skips = request.s_min_uncond and request.cfg_scale > 1 and mode != "edit"
        if not skips or not engine.supports_negative_guidance_skip:
            # Nothing is skipped: without guidance (CFG scale 1) there is no negative prompt's half to skip,
            # and an InstructPix2Pix model (img2img on one edits) never skips, as in A1111.
            request = request.model_copy(update={"s_min_uncond": 0.0, "s_min_uncond_all": False})

        def on_step(step: StepInfo) -> None:
            job.phase = step.phase  # "compiling ..." before a step; cleared by the step that follows
            if step.phase:
                return
            job.step, job.steps, job.batch = step.step, step.total, offset + step.batch
            job.preview = self.labeler.marked_preview(step.preview)
            reached[offset + step.batch] = (step.step, step.total)

        # Images whose prompts differ run one by one, each with its own prompt and the seed it has in the
        # batch (seed + index, as A1111 gives it); otherwise each batch (n_iter) runs on its own with the
        # seeds it has in the whole request, which makes the same pixels as one run of all of them. Each
        # run's images are labeled, written and recorded as soon as they are made, so a server killed
        # during a later batch keeps them. Runs are (what the engine runs, what the record says ran).
        if plan.varies:
            runs = [
                (run, run)
                for run in (
                    request.model_copy(
                        update={
                            "prompt": positive,
                            "negative_prompt": negative,
                            "batch_size": 1,
                            "n_iter": 1,
                            "seed": request.seed + index,
                            "subseed": request.subseed + index,
                        }
                    )
                    for index, (positive, negative) in enumerate(plan.prompts)
                )
            ]
            per_batch = 1
        else:
            positive, negative = plan.prompts[0]
            whole = request.model_copy(update={"prompt": positive, "negative_prompt": negative})
            first = [k * request.batch_size for k in range(request.n_iter)]
            runs = [
                (
                    whole.model_copy(
                        update={
                            "n_iter": 1,
                            # the engine's numbering (with a variation strength only the subseed counts up)
                            "seed": request.seed + (0 if request.subseed_strength else k),
                            "subseed": request.subseed + k,
                        }
                    ),
                    whole,
                )
                for k in first
            ]
            per_batch = request.batch_size
        model_hash = self.registry.model_hash(info)
        result = GenerationResult(
            request=request,
            mode=mode,
            model=info.id,
            model_hash=model_hash,
            job_id=job.id,
            job_timestamp=time.strftime("%Y%m%d%H%M%S"),
            styles=plan.styles,
            template=plan.template,
            negative_template=plan.negative_template,
        )
        day = self.outputs_dir / "images" / time.strftime("%Y-%m-%d")
        runtime: str | None = None  # the engine's answer for the images being saved

        def save(index: int, raw: Image.Image, seed: int, subseed: int, run: ImageRequest) -> None:
            # The record holds the prompts that ran and no styles or dynamic mode, so reusing it makes
            # this very image again; what they were made from is kept beside it.
            fields = {**run.model_dump(), "styles": [], "dynamic_prompts": None, "dynamic_seed": None}
            applied = _fields_as_run(run, mode)
            # An image whose batch was interrupted or skipped part-way records the steps that ran.
            ran = _steps_that_ran(request, mode, *reached.get(index // per_batch, (1, 1)))
            params = params_from_request(
                {
                    **applied,
                    "seed": seed,
                    "subseed": subseed,
                    "sd_model_hash": model_hash,
                    "sd_model_checkpoint": info.id,
                }
            )
            result.extra_generation_params = {
                key: value for key, value in params.items() if key in _EXTRA_KEYS and value is not None
            }
            if "steps_run" in ran:  # the studio's own keys: A1111 records no stop
                params["Steps run"] = ran["steps_run"]
            if "hr_steps_run" in ran:
                params["Hires steps run"] = ran["hr_steps_run"]
            if runtime:  # what ran the UNet, when not PyTorch (the studio's key; A1111 runs PyTorch only)
                params["UNet runtime"] = runtime
            params["Version"] = VERSION
            infotext = format_infotext(run.prompt, run.negative_prompt, params)
            if plan.dynamic is not None:
                # As the sd-dynamic-prompts extension writes them: after the parameter line.
                infotext = add_templates(infotext, plan.template, plan.negative_template)
            image_id = new_id("img")
            labeled = self.labeler.label_image(
                raw, produce_id=image_id, infotext=infotext, mode=mode, source=init, title=f"{image_id}.png"
            )
            image = labeled.image
            path = None
            if keep:
                day.mkdir(parents=True, exist_ok=True)
                path = day / f"{image_id}-{seed}.png"
                # The file is written whole under a hidden name, its record committed, then the file
                # renamed into place: a kill leaves no half-written PNG under a real name, and one
                # between the record and the rename is finished at the next start (recover_files).
                tmp = write_temp(path, labeled.data)
                record = labeled.record
                with self.db.tx() as conn, _removed_on_error(tmp):
                    conn.execute(
                        "INSERT INTO images (id, job_id, path, mode, model, model_hash, prompt, negative_prompt,"
                        " seed, subseed, width, height, params, infotext, created, prompt_template,"
                        " negative_template, styles, labels, nsfw_score, nsfw_action, watermark, owner)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            image_id,
                            job.id,
                            str(path),
                            mode,
                            info.id,
                            model_hash,
                            run.prompt,
                            run.negative_prompt,
                            seed,
                            subseed,
                            image.width,
                            image.height,
                            json.dumps(
                                {**fields, **ran, "seed": seed, "subseed": subseed, "mode": mode}, ensure_ascii=False
                            ),
                            infotext,
                            time.time(),
                            plan.template,
                            plan.negative_template,
                            json.dumps(plan.styles, ensure_ascii=False),
                            json.dumps(record, ensure_ascii=False),
                            record["nsfw_score"],
                            record["nsfw_action"],
                            record["watermark"],
                            principal.owner(),  # the job runs as whoever submitted it
                        ),
                    )
                commit_temp(tmp, path)
            result.images.append(
                GeneratedImage(
                    image_id,
                    path,
                    image,
                    seed,
                    subseed,
                    infotext,
                    run.prompt,
                    run.negative_prompt,
                    data=labeled.data,
                    labels=labeled.record,
                )
            )

        with self.registry.use_image_engine(info.id) as engine:  # a model swap waits for this generation
            for index, (run, recorded) in enumerate(runs):
                offset = index  # on_step numbers this run's batches from here
                if job.control.interrupt.is_set():
                    result.interrupted = True
                    break
                produced = engine.generate(run, mode, init_image=init, mask=mask, on_step=on_step, control=job.control)
                runtime = produced.runtime
                result.interrupted = result.interrupted or produced.interrupted
                job.phase = "labeling"  # the progress readers say why this moment takes a while
                for made in zip(produced.images, produced.seeds, produced.subseeds, strict=False):
                    save(len(result.images), *made, recorded)
        return result

    def list(self, limit: int = 50, query: str | None = None, model: str | None = None) -> list[dict]:
        """Recorded images, newest first; ``query`` matches the prompt or the template it was drawn from,
        ``model`` the model id."""
        owned, owner = mine()
        where, args = ["TRUE" + owned], [*owner]
        if query:
            where.append("(prompt LIKE ? ESCAPE '\\' OR prompt_template LIKE ? ESCAPE '\\')")
            args += [like_pattern(query)] * 2
        if model:
            where.append("model = ?")
            args.append(model)
        sql = "SELECT * FROM images WHERE " + " AND ".join(where)
        rows = self.db.conn.execute(sql + " ORDER BY created DESC LIMIT ?", (*args, limit))
        return [
            {
                **dict(r),
                "params": json.loads(r["params"]),
                "styles": json.loads(r["styles"]),
                "labels": json.loads(r["labels"]) if r["labels"] is not None else None,
            }
            for r in rows
        ]

    def known_watermarks(self) -> dict[int, str]:
        """Every watermark payload the gallery's images carry, mapped to the image's id (what
        ``labels.watermark.detect`` takes as ``known`` to name the image a read payload came from)."""
        owned, owner = mine()
        rows = self.db.conn.execute(
            f"SELECT watermark, id FROM images WHERE watermark IS NOT NULL{owned} ORDER BY created", owner
        )
        return {row["watermark"]: row["id"] for row in rows}

    def file(self, image_id: str) -> Path:
        """The PNG file of a recorded image; NotFound for an id the gallery does not have, or whose file
        is gone from the disk."""
        owned, owner = mine()
        row = self.db.conn.execute(f"SELECT path FROM images WHERE id = ?{owned}", (image_id, *owner)).fetchone()
        if row is None:
            raise NotFound(f"no image with id '{image_id}'")
        path = Path(row["path"])
        if not path.is_file():
            raise NotFound(f"image '{image_id}' is recorded, but its file {path} is no longer there")
        return path

    def delete(self, image_id: str) -> None:
        """Remove an image's record and its file."""
        owned, owner = mine()
        with self.db.tx() as conn:
            row = conn.execute(f"SELECT path FROM images WHERE id = ?{owned}", (image_id, *owner)).fetchone()
            if row is None:
                raise NotFound(f"no image with id '{image_id}'")
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
        Path(row["path"]).unlink(missing_ok=True)

    def may_read_file(self, path: Path) -> bool:
        """Whether the caller may be sent ``path``, a file under the outputs folder: in the local
        studio any; for a signed-in user only the file of one of their images or of their comparisons'
        grids, looked up in the records (a path alone proves nothing)."""
        owned, owner = mine()
        if not owned:
            return True
        target = str(path)
        row = self.db.conn.execute(
            f"SELECT 1 FROM images WHERE path = ?{owned}"
            f" UNION ALL SELECT 1 FROM comparisons WHERE grid_path = ?{owned}",
            (target, *owner, target, *owner),
        ).fetchone()
        return row is not None
