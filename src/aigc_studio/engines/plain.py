"""A plain image engine: no weights, deterministic pictures from the seed and the prompt.

Ships in the package so tests and demos of what is not about the model (jobs, files, infotext, HTTP,
CLI, UI) run in milliseconds. It honours the contract in everything that a caller can check without a
model: seeds, variation seeds, batches, steps (both passes of hires fix), progress, interrupt and skip,
sizes (hires fix gives the upscaled size, "Only masked" the input's), img2img strength, resize modes and
inpainting masks (inverted, blurred and pasted back as the diffusers engine does, through
``images.masking``). Its pictures are noise tinted by the prompt; tiling does not change them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..contracts import Control, ImageRequest, ImageResult, Mode, StepInfo
from ..images.masking import prepare_init
from ..images.resize import hires_size
from .image_base import ImageEngine


def _noise(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


class PlainEngine(ImageEngine):
    supports_img2img = True
    supports_inpaint = True
    supports_instruct_edit = True

    def __init__(self, model_id: str = "plain", step_delay: float = 0.0):
        super().__init__(model_id)
        self.step_delay = step_delay

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
        control = control or Control()
        h, w = request.height, request.width
        steps = request.steps
        if request.enable_hr and mode == "txt2img":
            hires = hires_size(
                request.width, request.height, request.hr_scale, request.hr_resize_x, request.hr_resize_y
            )
            w, h = hires.size
            if request.denoising_strength:
                steps += request.hr_second_pass_steps or request.steps
        init = None
        if mode != "txt2img" and init_image is not None:
            init = prepare_init(request, init_image, mask if mode == "inpaint" else None)
        tint = np.frombuffer(hashlib.sha256(request.prompt.encode()).digest()[:3], dtype=np.uint8) / 255.0
        images, seeds, subseeds = [], [], []
        for batch in range(request.n_iter):
            if control.interrupt.is_set():
                break
            for step in range(1, steps + 1):
                if control.interrupt.is_set() or control.skip.is_set():
                    break
                if self.step_delay:
                    time.sleep(self.step_delay)
                on_step(StepInfo(step, steps, batch, preview=lambda: Image.new("RGB", (8, 8), "gray")))
            if control.skip.is_set():
                control.skip.clear()
            for k in range(request.batch_size):
                index = batch * request.batch_size + k
                # A1111: with a variation strength the seed stays and only the variation seed counts up.
                seed = request.seed + (index if not request.subseed_strength else 0)
                subseed = request.subseed + index
                pixels = _noise(seed, h, w)
                if request.subseed_strength:
                    t = request.subseed_strength
                    pixels = (1 - t) * pixels + t * _noise(subseed, h, w)
                pixels = 0.5 * pixels + 0.5 * tint
                if init is not None:
                    base = np.asarray(init.image.convert("RGB").resize((w, h)), dtype=np.float32) / 255.0
                    strength = request.denoising_strength if mode != "edit" else 0.5
                    pixels = (1 - strength) * base + strength * pixels
                    if init.mask is not None:
                        m = (np.asarray(init.mask, dtype=np.float32) / 255.0)[..., None]
                        pixels = (1 - m) * base + m * pixels
                image = Image.fromarray((pixels * 255).round().astype(np.uint8), "RGB")
                images.append(init.finish(image) if init is not None else image)
                seeds.append(seed)
                subseeds.append(subseed)
        return ImageResult(images, seeds, subseeds, interrupted=control.interrupt.is_set())
