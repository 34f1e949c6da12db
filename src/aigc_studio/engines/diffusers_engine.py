"""Stable Diffusion through diffusers, with AUTOMATIC1111's parameters, seeds and prompt syntax.

``DiffusersEngine`` loads SD 1.x/2.x, SDXL (and Turbo), LCM, InstructPix2Pix (8-channel UNet) and
inpainting (9-channel UNet) models from a diffusers folder, or from one original-layout
``.safetensors``/``.ckpt`` file as A1111 keeps them. It loads the weights once and builds the txt2img,
img2img, inpaint and edit pipelines from the same components (``sd_pipelines``).

How A1111's behaviour is reproduced:

- Seeds: image k of a run gets ``seed + k`` and ``subseed + k``; with a variation strength above 0 every
  image keeps ``seed`` and only the subseeds count up, as in A1111 (a batch of variations of one image).
  Each image has its own CPU ``torch.Generator``: its first draw is the initial noise, slerped toward the
  subseed's noise by ``subseed_strength`` (A1111's ``slerp``), and ancestral samplers draw their later
  noise from the same generators, image by image; DPM++ SDE and DPM++ 2M SDE draw theirs from one
  Brownian tree per image seeded with its seed (A1111's ``create_noise_sampler``). All noise is drawn
  on the CPU, so a seed gives the same picture on CPU and GPU (not bit for bit: the GPU computes in
  float16).
- Samplers, schedule types and eta run as A1111 runs them: see ``samplers.py``.
- Prompts of any length, ``BREAK``, ``(word:1.2)`` weighting and clip skip: as A1111 encodes them, in
  chunks of 75 tokens (``sd_prompts``).
- img2img and inpaint: the input is fitted by ``resize_mode`` (3: its latents are resized, bilinear) and
  encoded with the VAE's mean (deterministic). A denoising strength s of n steps runs int(s·n) + 1 of
  them, from that point of the n-step schedule, as A1111 does; ``denoising_strength`` 0 returns the
  input unchanged.
- Inpaint (``images.masking``): the mask is white where to repaint, inverted by
  ``inpainting_mask_invert``, blurred once by ``mask_blur``; "Only masked" (``inpaint_full_res``)
  repaints the mask's box (plus padding, at the request's aspect ratio) at the request's size and
  pastes it back into the input, which keeps its size. The result is laid under the original through
  A1111's overlay mask, so unmasked pixels stay the original's. ``inpainting_fill``: 0 "fill" fills the
  masked area with the colours around it before encoding; 1 "original" starts from the image; 2
  "latent noise" and 3 "latent nothing" set the masked latents to the seed's noise or to zero.
- Hires fix (txt2img, ``enable_hr``): the first pass at width×height; its latents are interpolated to
  the target (the "Latent" upscalers) or decoded, resized with PIL ("Lanczos", "Nearest") and encoded
  again; a target of another aspect ratio is cut from the middle; then an img2img pass of
  ``hr_second_pass_steps`` (0: ``steps``) steps at ``denoising_strength``, with the hires prompts,
  sampler and schedule type, and noise drawn anew from the same per-image seeds at the new size.
- Tiling: circular padding on every convolution of the UNet and the VAE while the run lasts.
- Progress: ``on_step`` after every denoising iteration of both passes (Heun and DPM2 run 2 × steps − 1
  of them). ``control.interrupt`` and ``control.skip`` end the current batch at once; its partly denoised
  images are decoded (brought to the hires size, without its second pass) and kept, as A1111 keeps them.
  Interrupt then stops the run; skip goes on with the next batch.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from ..contracts import Control, ImageRequest, ImageResult, Mode, StepInfo
from ..images.masking import InitInput, prepare_init
from ..images.resize import LATENT_UPSCALE_MODES, HiresSize, hires_size, upscale_image
from .image_base import ImageEngine
from .samplers import SchedulerCache
from .sd_openvino import CONVERTING, OpenVINOModules, UNetCalls
from .sd_pipelines import (
    KINDS,
    ROLES,
    BatchRNG,
    circular_padding,
    decode_latents,
    encode_images,
    load_pipeline,
    pipeline_classes,
    pipeline_on,
)
from .sd_prompts import PromptEncoder, parse_prompt_attention
from .sd_speed import COMPILING, ImageSpeed, UNetCompiler, negative_guidance_skip, token_merging, vae_tiling

log = logging.getLogger(__name__)

__all__ = ["DiffusersEngine", "parse_prompt_attention"]

# A1111's "Approx cheap" live preview: latent channels -> RGB (sd_vae_approx.cheap_approximation).
_PREVIEW_SD = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
_PREVIEW_SDXL = [
    [0.3448, 0.4168, 0.4395],
    [-0.1953, -0.0290, 0.0250],
    [0.1074, 0.0886, -0.0163],
    [-0.3730, -0.2499, -0.2088],
]


def _img2img_steps(steps: int, denoising_strength: float, fixed: bool = False) -> tuple[int, float]:
    """A1111's img2img schedule as diffusers' ``(num_inference_steps, strength)``.

    A1111 (``setup_img2img_steps``) makes a schedule of n steps and runs its last t + 1, where
    t = int(min(s, 0.999)·n); the hires pass (``fixed``) instead makes int(steps / s) and runs exactly
    ``steps``. diffusers runs int(n·strength) of n, so the strength handed over is that count plus a
    half, over n, which int() brings back to the count.
    """
    if fixed:
        total = int(steps / min(denoising_strength, 0.999))
        run = steps
    else:
        total, run = steps, int(min(denoising_strength, 0.999) * steps) + 1
    return total, min(1.0, (run + 0.5) / total)


def _iterations(scheduler, num_inference_steps: int, strength: float) -> int:
    """How many denoising iterations diffusers' img2img loop will run: for progress before it starts."""
    scheduler.set_timesteps(num_inference_steps)
    skipped = num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)
    return len(scheduler.timesteps) - skipped * scheduler.order


class _StopBatch(Exception):
    """Raised from the step callback to end a batch now; carries the latents reached."""

    def __init__(self, latents: torch.Tensor):
        super().__init__("batch stopped")
        self.latents = latents


@dataclass
class _Pass:
    """One sampling pass: its pipeline, scheduler choice and fixed arguments."""

    pipe: DiffusionPipeline
    scheduler: object  # set on the pipeline before the pass: passes may share a pipeline, not a scheduler
    steps: int  # diffusers' num_inference_steps
    arguments: dict = field(default_factory=dict)
    takes_latents: bool = False  # txt2img and edit pipelines take the initial noise as ``latents=``


@dataclass
class _Hires:
    """Hires fix: where to upscale to, with what, and the second pass (None: denoising strength 0)."""

    size: HiresSize
    upscaler: str
    second: _Pass | None
    iterations: int  # of the second pass, known before it runs, for progress


@dataclass
class _Run:
    """What every batch of one ``generate`` call shares."""

    request: ImageRequest
    first: _Pass
    on_step: Callable[[StepInfo], None]
    control: Control
    init: InitInput | None = None  # img2img / inpaint / edit: the prepared input and how results are finished
    unchanged: bool = False  # denoising strength 0: the answer is the input
    init_latents: torch.Tensor | None = None  # resize_mode 3: the input's latents, resized
    fill: tuple[int, torch.Tensor] | None = None
    from_noise: bool = False  # txt2img on an inpainting model
    hires: _Hires | None = None
    runtime: str | None = None  # what ran the UNet when not PyTorch ("OpenVINO 2026.4.1"), for the record
    unet_calls: UNetCalls = field(default_factory=UNetCalls)  # on OpenVINO: how many calls each runtime ran


class _Progress:
    """Steps of one batch, counted across the first pass and hires fix's second."""

    def __init__(self, run: _Run, batch: int):
        self.run, self.batch = run, batch
        self.done = 0  # iterations of passes that have ended
        self.later = run.hires.iterations if run.hires and run.hires.second else 0

    def report(self, index: int, pass_total: int, preview: Callable[[], object | None]) -> None:
        total = self.done + pass_total + self.later
        self.run.on_step(StepInfo(self.done + index + 1, total, self.batch, preview=preview))

    def announce(self, phase: str) -> None:
        """Report work before the next step (compiling), at the steps reached so far."""
        total = self.done + self.later
        self.run.on_step(StepInfo(self.done, max(total, 1), self.batch, phase=phase))

    def pass_ended(self, iterations: int) -> None:
        self.done += iterations
        self.later = 0


class DiffusersEngine(ImageEngine):
    """A Stable Diffusion model loaded once, generating with A1111's parameters (see the module doc)."""

    supports_token_merging = True
    supports_negative_guidance_skip = True

    def __init__(
        self,
        model_id: str,
        path: str | Path,
        *,
        device: str | None = None,
        threads: int = 0,
        config_dir: str | Path | None = None,
        prediction_type: str | None = None,
        variant: str | None = None,
        speed: ImageSpeed | None = None,
    ):
        """Load ``path``: a diffusers folder, or an original-layout ``.safetensors``/``.ckpt`` file.

        ``variant`` is the diffusers weight variant of a folder (``"fp16"`` for
        ``*.fp16.safetensors``); without it, a folder whose components hold only one variant's weights
        loads that variant. The weights are cast to the engine's dtype, so fp16 files run in float32
        on the CPU.

        A single file loads with the configs in ``config_dir`` when that is a diffusers config folder (it
        has ``model_index.json``, like a tiny model's ``-config`` folder). Otherwise its architecture (SD1.x,
        SD1.x inpainting, InstructPix2Pix, SD2.x 768-v / base / inpainting, SDXL, SDXL inpainting) is read
        from its keys (``prediction_type``, ``"v_prediction"`` or ``"epsilon"``, settles SD2.x's; see
        ``checkpoint_keys.detect_architecture``) and the reference
        configs are written once into ``config_dir/<arch>`` (default ``config_dir``: ``.aigc-sd-configs``
        next to the file), which needs CLIP's vocabulary from ``open-clip-torch``. ``device`` defaults
        to CUDA when present (float16 there, float32 on the CPU). ``threads`` > 0 sets torch's
        (process-wide) number of CPU threads (0: as torch has them, at most the physical cores). ``speed`` says which of
        ``sd_speed``'s optimizations apply (default: the measured defaults).
        """
        super().__init__(model_id)
        self.speed = speed = speed or ImageSpeed(threads=threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        config_dir = Path(config_dir) if config_dir is not None else None
        base = load_pipeline(Path(path), config_dir, self.dtype, prediction_type, variant).to(self.device)
        speed.apply(base)
        self._openvino: OpenVINOModules | None = None
        if speed.openvino and self.device.type == "cpu":
            cache = speed.openvino_cache or Path(path).parent / ".aigc-openvino"
            self._openvino = OpenVINOModules(
                base, Path(path), cache, torch.get_num_threads(), streams=speed.openvino_streams
            )
        elif speed.openvino:
            log.info("%s: OpenVINO is for the CPU; on %s the UNet runs on PyTorch", model_id, self.device)
        self._compiler = UNetCompiler(base.unet, speed.compile and self._openvino is None, speed.compile_cache)
        self.is_sdxl = "text_encoder_2" in base.components
        self.unet_in_channels = in_channels = base.unet.config.in_channels
        if in_channels not in ROLES or (self.is_sdxl and in_channels == 8):
            family = "SDXL" if self.is_sdxl else "SD"
            raise ValueError(f"{model_id}: an {family} UNet with {in_channels} input channels is not supported")
        self.kind = KINDS[in_channels]
        classes = pipeline_classes(self.is_sdxl)
        built: dict[str, DiffusionPipeline] = {}
        self._pipes: dict[str, DiffusionPipeline] = {}
        for mode, role in ROLES[in_channels].items():
            if role not in built:
                built[role] = pipeline_on(classes[role], base)
            self._pipes[mode] = built[role]
        self.supports_txt2img = "txt2img" in self._pipes
        self.supports_img2img = "img2img" in self._pipes
        self.supports_inpaint = "inpaint" in self._pipes
        self.supports_instruct_edit = "edit" in self._pipes
        self.native_inpaint = in_channels == 9  # an inpainting model; a standard one inpaints with its 4 channels
        self._schedulers = SchedulerCache(base.scheduler.config)
        self._prompts = PromptEncoder(base, self.is_sdxl)
        self._preview_factors = torch.tensor(_PREVIEW_SDXL if self.is_sdxl else _PREVIEW_SD)
        self._lock = threading.Lock()

    @property
    def pipeline(self) -> DiffusionPipeline:
        """The model's main diffusers pipeline (txt2img; edit for InstructPix2Pix), on the loaded modules."""
        return self._pipes.get("txt2img") or self._pipes["edit"]

    def generate(
        self,
        request: ImageRequest,
        mode: Mode,
        *,
        init_image: Image.Image | None = None,
        mask: Image.Image | None = None,
        on_step: Callable[[StepInfo], None] = lambda info: None,
        control: Control | None = None,
    ) -> ImageResult:
        """Generate ``batch_size × n_iter`` images; see the module doc for how each parameter is honoured."""
        if mode not in self._pipes:
            raise ValueError(f"{self.model_id} ({self.kind} model) can do {', '.join(self._pipes)}, not {mode}")
        if request.seed < 0 or request.subseed < 0:
            raise ValueError("seed and subseed must be fixed (0 or more) before generate; -1 is for the caller")
        count = request.batch_size * request.n_iter
        seeds = [request.seed + (0 if request.subseed_strength else k) for k in range(count)]
        subseeds = [request.subseed + k for k in range(count)]
        result = ImageResult(images=[], seeds=[], subseeds=[])
        with self._lock, torch.inference_mode(), circular_padding(self._pipes[mode], request.tiling):
            run = self._prepare(request, mode, init_image, mask, on_step, control or Control())
            for batch in range(request.n_iter):
                if run.control.interrupt.is_set():
                    break
                run.control.skip.clear()  # a skip that came between batches is for the batch that was running
                part = slice(batch * request.batch_size, (batch + 1) * request.batch_size)
                result.images += self._run_batch(run, batch, seeds[part], subseeds[part])
                result.seeds += seeds[part]
                result.subseeds += subseeds[part]
            result.interrupted = run.control.interrupt.is_set()
        result.runtime = run.runtime
        return result

    # -----------------------------------------------------------------------------------------------
    # Preparing a run

    def _prepare(self, request, mode, init_image, mask, on_step, control) -> _Run:
        if mode != "txt2img" and init_image is None:
            raise ValueError(f"{mode} needs an init_image")
        if mode == "inpaint" and mask is None:
            raise ValueError("inpaint needs a mask (white where to repaint)")
        if request.enable_hr and mode != "txt2img":
            raise ValueError(f"enable_hr: hires fix is for txt2img, not {mode}")
        if request.resize_mode == 3 and mode == "edit":
            raise ValueError("resize_mode 3 (latent resize) is for img2img and inpaint; an edit takes 0, 1 or 2")
        pipe = self._pipes[mode]
        pipe.scheduler = self._schedulers.get(request.sampler_name, request.scheduler, eta=request.eta)[0]
        size = {"height": request.height, "width": request.width}
        first = _Pass(pipe, pipe.scheduler, request.steps, dict(size))
        first.takes_latents = mode in ("txt2img", "edit") and not self.native_inpaint
        run = _Run(request, first, on_step, control)
        if mode != "txt2img":
            run.init = prepare_init(request, init_image, mask if mode == "inpaint" else None)
        if run.init is not None and run.init.latent_resize:
            run.init_latents = self._latent_resize(pipe, run.init.image, request)
        steps, strength = _img2img_steps(request.steps, request.denoising_strength)
        if mode == "edit":
            first.arguments = {"image": run.init.image, "image_guidance_scale": request.image_cfg_scale}
        elif mode in ("img2img", "inpaint") and request.denoising_strength == 0:
            run.unchanged = True
        elif mode == "img2img" and not self.native_inpaint:
            image = run.init_latents if run.init_latents is not None else run.init.image
            first.steps, first.arguments = steps, {"image": image, "strength": strength}
        elif mode == "inpaint":
            image = run.init.image if run.init_latents is None else run.init.original
            first.steps = steps
            first.arguments.update(image=image, mask_image=run.init.mask, strength=strength)
            if request.inpainting_fill in (2, 3):  # A1111 rounds the latent-size mask
                latent_size = (request.width // pipe.vae_scale_factor, request.height // pipe.vae_scale_factor)
                latent_mask = np.asarray(run.init.mask.resize(latent_size), dtype=np.float32) / 255
                run.fill = (request.inpainting_fill, torch.from_numpy(latent_mask).round()[None, None])
        elif self.native_inpaint:  # txt2img / img2img on an inpainting model: all of it is masked
            white = Image.new("L", (request.width, request.height), 255)
            if mode == "img2img":
                image = run.init.image if run.init_latents is None else run.init.original
                first.steps = steps
                first.arguments.update(image=image, mask_image=white, strength=strength)
            else:
                first.arguments.update(image=Image.new("RGB", white.size, (127, 127, 127)), mask_image=white)
                first.arguments["strength"] = 1.0
                run.from_noise = True
        first.arguments.update(self._prompts(request.prompt, request.negative_prompt, request.clip_skip))
        if request.enable_hr:
            run.hires = self._prepare_hires(request, first.arguments)
        return run

    def _latent_resize(self, pipe, image: Image.Image, request: ImageRequest) -> torch.Tensor:
        """resize_mode 3: the input encoded at its own size, its latents resized to the request's (bilinear)."""
        latents = encode_images(pipe, [image], self.device, self.dtype)
        size = (request.height // pipe.vae_scale_factor, request.width // pipe.vae_scale_factor)
        return torch.nn.functional.interpolate(latents, size=size, mode="bilinear")

    def _prepare_hires(self, request: ImageRequest, first_arguments: dict) -> _Hires:
        target = hires_size(request.width, request.height, request.hr_scale, request.hr_resize_x, request.hr_resize_y)
        hires = _Hires(target, request.hr_upscaler, second=None, iterations=0)
        if request.denoising_strength == 0:
            return hires
        pipe = self._pipes["img2img"]
        sampler = request.hr_sampler_name or request.sampler_name
        schedule = request.hr_scheduler or request.scheduler
        steps, strength = _img2img_steps(
            request.hr_second_pass_steps or request.steps, request.denoising_strength, True
        )
        scheduler = self._schedulers.get(sampler, schedule, eta=request.eta)[0]
        second = _Pass(pipe, scheduler, steps, {"strength": strength})
        if self.native_inpaint:  # as txt2img on it: everything masked, nothing of the picture to condition on
            width, height = target.size
            white = Image.new("L", (width, height), 255)
            grey = Image.new("RGB", (width, height), (127, 127, 127))
            second.arguments.update(image=grey, mask_image=white, width=width, height=height)
        prompt = request.hr_prompt or request.prompt
        negative = request.hr_negative_prompt or request.negative_prompt
        if (prompt, negative) == (request.prompt, request.negative_prompt):
            second.arguments.update({k: v for k, v in first_arguments.items() if k.endswith("prompt_embeds")})
        else:
            second.arguments.update(self._prompts(prompt, negative, request.clip_skip))
        hires.second = second
        hires.iterations = _iterations(scheduler, steps, strength)
        return hires

    # -----------------------------------------------------------------------------------------------
    # Running a batch

    def _run_batch(self, run: _Run, batch: int, seeds: list[int], subseeds: list[int]) -> list[Image.Image]:
        request, pipe = run.request, run.first.pipe
        if run.unchanged:
            return [run.init.original.copy() for _ in seeds]
        shape = (
            pipe.vae.config.latent_channels,
            request.height // pipe.vae_scale_factor,
            request.width // pipe.vae_scale_factor,
        )
        rng = BatchRNG(seeds, subseeds, request.subseed_strength, shape, run.fill)
        rng.init_latents, rng.from_noise = run.init_latents, run.from_noise
        progress = _Progress(run, batch)
        latents, stopped = self._sample(run, run.first, rng, progress)
        if run.hires is not None:
            latents = self._hires_pass(run, latents, seeds, subseeds, progress, stopped)
        images = self._decode(pipe, latents, request)
        return [run.init.finish(image) for image in images] if run.init is not None else images

    def _sample(
        self, run: _Run, step: _Pass, rng: BatchRNG, progress: _Progress, **batch_arguments
    ) -> tuple[torch.Tensor, bool]:
        """Run one pass; returns its latents and whether interrupt or skip stopped it."""
        pipe = step.pipe
        pipe.scheduler = step.scheduler
        if hasattr(pipe.scheduler, "noise_sampler_seed"):  # DPM++ SDE / 2M SDE: one Brownian tree per image,
            pipe.scheduler.noise_sampler_seed = [int(g.initial_seed()) for g in rng]  # seeded with its seed
        arguments = {**step.arguments, **batch_arguments}
        if step.takes_latents:
            arguments["latents"] = rng.noise.to(device=self.device, dtype=self.dtype)
        iterations = 0

        def on_step_end(pipe, index, timestep, tensors):
            nonlocal iterations
            latents = tensors["latents"]
            iterations = index + 1
            progress.report(index, pipe.num_timesteps, preview=lambda: self._preview(latents))
            if run.control.interrupt.is_set() or run.control.skip.is_set():
                run.control.skip.clear()
                raise _StopBatch(latents)
            return tensors

        def call() -> torch.Tensor:
            return pipe(
                num_inference_steps=step.steps,
                guidance_scale=run.request.cfg_scale,
                num_images_per_prompt=run.request.batch_size,
                generator=rng,
                output_type="latent",
                callback_on_step_end=on_step_end,
                **arguments,
            ).images

        if self._compiler.pending:  # the first call compiles for minutes: say so rather than sit at step 0
            progress.announce(COMPILING)
        openvino = self._openvino_for(run.request, progress.announce)
        calls = UNetCalls()
        try:
            # An InstructPix2Pix UNet guides by image and text (three predictions): A1111 never skips there.
            ngms = 0.0 if self.supports_instruct_edit else run.request.s_min_uncond
            with (
                openvino.unet(pipe.unet) if openvino is not None else nullcontext(calls) as calls,
                token_merging(pipe.unet, run.request.token_merging_ratio),
                negative_guidance_skip(pipe, ngms, run.request.s_min_uncond_all),
            ):
                latents = self._compiler.run(call)
            stopped = False
        except _StopBatch as stop:
            latents, stopped = stop.latents, True
        finally:
            if openvino is not None:  # what ran the UNet, over both passes of hires fix
                run.unet_calls.add(calls)
                run.runtime = openvino.describe(run.unet_calls)
        progress.pass_ended(iterations)
        return latents, stopped

    def _hires_pass(self, run, latents, seeds, subseeds, progress, stopped: bool) -> torch.Tensor:
        """Upscale the first pass's latents to the hires size and, unless the batch was stopped or the
        strength is 0, denoise them again there (A1111's ``sample_hr_pass``)."""
        hires, pipe = run.hires, run.first.pipe
        target = hires.size
        latent_size = (target.upscale_to_y // pipe.vae_scale_factor, target.upscale_to_x // pipe.vae_scale_factor)
        if hires.upscaler in LATENT_UPSCALE_MODES:
            mode = LATENT_UPSCALE_MODES[hires.upscaler]
            latents = torch.nn.functional.interpolate(latents, size=latent_size, **mode)
        else:
            images = self._decode(pipe, latents, run.request)
            images = [
                upscale_image(image, target.upscale_to_x, target.upscale_to_y, hires.upscaler) for image in images
            ]
            latents = encode_images(pipe, images, self.device, self.dtype)
        cut_x, cut_y = target.truncate_x, target.truncate_y  # crop to fill: the middle of the larger picture
        latents = latents[
            :, :, cut_y // 2 : latents.shape[2] - (cut_y + 1) // 2, cut_x // 2 : latents.shape[3] - (cut_x + 1) // 2
        ]
        second = hires.second
        if stopped or second is None:
            return latents
        rng = BatchRNG(seeds, subseeds, run.request.subseed_strength, tuple(latents.shape[1:]))
        rng.init_latents = latents
        # an img2img pipeline reads 4-channel input as latents; an inpainting one has its image already
        image = {} if self.native_inpaint else {"image": latents}
        return self._sample(run, second, rng, progress, **image)[0]

    def _decode(self, pipe, latents: torch.Tensor, request: ImageRequest) -> list[Image.Image]:
        """Latents to images; in tiles above the speed settings' size, bounding the VAE's memory (never
        with seamless tiling, whose circular padding the tiles would break)."""
        height, width = (side * pipe.vae_scale_factor for side in latents.shape[-2:])
        limit = 0 if request.tiling else self.speed.vae_tile_above
        openvino = self._openvino_for(request)
        with (
            vae_tiling(pipe.vae, width, height, limit),
            openvino.decoder(pipe.vae) if openvino is not None else nullcontext(),
        ):
            return decode_latents(pipe, latents)

    def _openvino_for(self, request: ImageRequest, announce=lambda phase: None) -> OpenVINOModules | None:
        """OpenVINO's modules, made ready on first use (``announce`` says so first), when they may run this
        request: not with seamless tiling (circular padding is PyTorch's) nor token merging (it patches
        PyTorch's attention); None when PyTorch runs it."""
        openvino = self._openvino
        if openvino is None or request.tiling or request.token_merging_ratio:
            return None
        if openvino.pending:
            announce(CONVERTING)
            openvino.prepare()
        return openvino if openvino.ready else None

    def _preview(self, latents: torch.Tensor) -> Image.Image:
        """The batch side by side at latent size (1/8), by a linear map of the latents, no VAE."""
        rgb = torch.einsum("bchw,cr->brhw", latents.detach().float().cpu(), self._preview_factors)
        pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return Image.fromarray(torch.cat(list(pixels), dim=1).numpy())

    def close(self) -> None:
        self._openvino = None
        self._pipes.clear()
        self._prompts = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
