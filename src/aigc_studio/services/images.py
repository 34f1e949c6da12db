"""Images: the product logic of one generation, shared by the CLI, the A1111 and OpenAI APIs and the UI.

``submit`` checks everything that can be checked before any work is queued (model, sizes, images,
mask), fixes the seeds, and queues the job; the job runs the engine, writes each image as a PNG with
A1111's infotext under AIGC_HOME/outputs, and records it for the gallery.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageFilter, UnidentifiedImageError

from .. import __version__
from ..contracts import ImageRequest, Mode, StepInfo
from ..errors import InvalidRequest, NotFound
from ..images.infotext import format_infotext, params_from_request, write_png
from ..models.registry import ModelInfo, Registry
from ..storage.db import Database, like_pattern
from ..storage.history import new_id
from .jobs import Job, JobQueue

VERSION = f"aigc-studio-{__version__}"


@dataclass
class GeneratedImage:
    id: str
    path: Path
    image: Image.Image
    seed: int
    subseed: int
    infotext: str

    def png_base64(self) -> str:
        """The image as the APIs send it: the PNG already written (infotext included), base64."""
        return base64.b64encode(self.path.read_bytes()).decode()


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

    def a1111_info(self) -> dict:
        """The ``info`` object of A1111's API responses (sent as a JSON string)."""
        r = self.request
        seeds = [g.seed for g in self.images] or [r.seed]
        subseeds = [g.subseed for g in self.images] or [r.subseed]
        return {
            "prompt": r.prompt,
            "all_prompts": [r.prompt] * len(seeds),
            "negative_prompt": r.negative_prompt,
            "all_negative_prompts": [r.negative_prompt] * len(seeds),
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
            "denoising_strength": r.denoising_strength if self.mode != "txt2img" else None,
            "image_cfg_scale": r.image_cfg_scale if self.mode == "edit" else None,
            "extra_generation_params": {},
            "index_of_first_image": 0,
            "infotexts": [g.infotext for g in self.images],
            "styles": [],
            "job_timestamp": self.job_timestamp,
            "clip_skip": r.clip_skip,
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
            "interrupted": self.interrupted,
        }


def open_image(data: bytes | Image.Image, what: str) -> Image.Image:
    """A PIL image from bytes, with a clear error for anything that is not a readable image."""
    if isinstance(data, Image.Image):
        return data
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidRequest(f"{what} is not a readable image (PNG, JPEG or WebP): {exc}", param=what) from None


class ImageService:
    def __init__(self, db: Database, registry: Registry, queue: JobQueue, outputs_dir: Path):
        self.db = db
        self.registry = registry
        self.queue = queue
        self.outputs_dir = outputs_dir

    def submit(
        self,
        request: ImageRequest,
        mode: Mode = "txt2img",
        *,
        init_image: Image.Image | None = None,
        mask: Image.Image | None = None,
        source: str = "api",
    ) -> Job:
        """Check and queue a generation; returns the job (``job.wait()`` gives a GenerationResult)."""
        info = self.registry.resolve(request.model or self.registry.default_image_model, kind="image")
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
        # The model's own defaults (SD-Turbo: 1 step, CFG 0) apply to what the user did not set.
        model_defaults = {k: v for k, v in info.defaults.items() if k not in request.model_fields_set}
        if model_defaults:
            request = ImageRequest(**{**request.model_dump(exclude_unset=True), **model_defaults})
        # The seeds are fixed before queueing, so the record says exactly what will run.
        request = request.model_copy(
            update={
                "model": info.id,
                "seed": request.seed if request.seed != -1 else random.randrange(2**32),
                "subseed": request.subseed if request.subseed != -1 else random.randrange(2**32),
            }
        )
        size = (request.width, request.height)
        init = init_image.convert("RGB").resize(size, Image.LANCZOS) if init_image is not None else None
        if mask is not None:
            mask = mask.convert("L").resize(size, Image.NEAREST)
            if request.mask_blur:
                mask = mask.filter(ImageFilter.GaussianBlur(request.mask_blur))

        def work(job: Job) -> GenerationResult:
            return self._run(job, request, mode, info, init, mask)

        return self.queue.submit(
            mode,
            work,
            model=info.id,
            request={**request.model_dump(), "mode": mode},
            source=source,
            batches=request.n_iter,
            steps=request.steps,
        )

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
    ) -> GenerationResult:
        engine = self.registry.image_engine(info.id)
        if mode == "img2img" and engine.supports_instruct_edit and not engine.supports_img2img:
            mode = "edit"  # as in A1111: img2img with an InstructPix2Pix checkpoint edits by instruction
        needed = {"img2img": "supports_img2img", "inpaint": "supports_inpaint", "edit": "supports_instruct_edit"}
        if mode in needed and not getattr(engine, needed[mode]):
            hint = " (use an InstructPix2Pix model, e.g. `aigc models pull instruct-pix2pix`)" if mode == "edit" else ""
            raise InvalidRequest(f"model '{info.id}' cannot do {mode}{hint}", param="model")

        reached: dict[int, tuple[int, int]] = {}  # batch -> (last step it ran, steps it would run)

        def on_step(step: StepInfo) -> None:
            job.step, job.steps, job.batch, job.preview = step.step, step.total, step.batch, step.preview
            reached[step.batch] = (step.step, step.total)

        produced = engine.generate(request, mode, init_image=init, mask=mask, on_step=on_step, control=job.control)
        model_hash = self.registry.model_hash(info)
        result = GenerationResult(
            request=request,
            mode=mode,
            model=info.id,
            model_hash=model_hash,
            interrupted=produced.interrupted,
            job_id=job.id,
            job_timestamp=time.strftime("%Y%m%d%H%M%S"),
        )
        day = self.outputs_dir / "images" / time.strftime("%Y-%m-%d")
        day.mkdir(parents=True, exist_ok=True)
        fields = request.model_dump()
        for index, (image, seed, subseed) in enumerate(
            zip(produced.images, produced.seeds, produced.subseeds, strict=False)
        ):
            # An image whose batch was interrupted or skipped part-way records the steps that ran.
            ran, total = reached.get(index // request.batch_size, (request.steps, request.steps))
            steps = ran if ran < total else request.steps
            params = params_from_request(
                {
                    **fields,
                    "steps": steps,
                    "seed": seed,
                    "subseed": subseed,
                    "sd_model_hash": model_hash,
                    "sd_model_checkpoint": info.id,
                    "denoising_strength": request.denoising_strength if mode in ("img2img", "inpaint") else None,
                    "image_cfg_scale": request.image_cfg_scale if mode == "edit" else None,
                }
            )
            if mode == "inpaint":
                params["Mask blur"] = request.mask_blur
            params["Version"] = VERSION
            infotext = format_infotext(request.prompt, request.negative_prompt, params)
            image_id = new_id("img")
            path = day / f"{image_id}-{seed}.png"
            tmp = path.with_suffix(".tmp")
            write_png(image, tmp, infotext)
            os.replace(tmp, path)  # a crash never leaves a half-written PNG under its real name
            with self.db.tx() as conn:
                conn.execute(
                    "INSERT INTO images (id, job_id, path, mode, model, model_hash, prompt, negative_prompt, seed,"
                    " subseed, width, height, params, infotext, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        image_id,
                        job.id,
                        str(path),
                        mode,
                        info.id,
                        model_hash,
                        request.prompt,
                        request.negative_prompt,
                        seed,
                        subseed,
                        image.width,
                        image.height,
                        json.dumps(
                            {**fields, "steps": steps, "seed": seed, "subseed": subseed, "mode": mode},
                            ensure_ascii=False,
                        ),
                        infotext,
                        time.time(),
                    ),
                )
            result.images.append(GeneratedImage(image_id, path, image, seed, subseed, infotext))
        return result

    def list(self, limit: int = 50, query: str | None = None, model: str | None = None) -> list[dict]:
        """Recorded images, newest first; ``query`` matches the prompt, ``model`` the model id."""
        where, args = [], []
        if query:
            where.append("prompt LIKE ? ESCAPE '\\'")
            args.append(like_pattern(query))
        if model:
            where.append("model = ?")
            args.append(model)
        sql = "SELECT * FROM images" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.db.conn.execute(sql + " ORDER BY created DESC LIMIT ?", (*args, limit))
        return [{**dict(r), "params": json.loads(r["params"])} for r in rows]

    def delete(self, image_id: str) -> None:
        """Remove an image's record and its file."""
        with self.db.tx() as conn:
            row = conn.execute("SELECT path FROM images WHERE id = ?", (image_id,)).fetchone()
            if row is None:
                raise NotFound(f"no image with id '{image_id}'")
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
        Path(row["path"]).unlink(missing_ok=True)
