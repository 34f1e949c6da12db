"""The image-engine contract, and the image parameters declared once with AUTOMATIC1111's names.

An image engine turns an ``ImageRequest`` into images and reports each denoising step. It knows
nothing of jobs, files, infotext, HTTP or the UI. ``ImageRequest`` is the single declaration of every
parameter: its limits and descriptions feed the A1111 API schema, the CLI options and the UI.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A1111's sampler names, in its order. Every image engine maps each one to its own solver.
SAMPLERS: tuple[str, ...] = (
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2S a", "Euler a", "Euler", "LMS", "Heun", "DPM2",
    "DPM2 a", "DDIM", "PLMS", "UniPC", "LCM",
)  # fmt: skip
# A1111's schedule types: API name -> label (the label is what infotext writes as "Schedule type").
SCHEDULERS: dict[str, str] = {
    "automatic": "Automatic",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
}
# A1111's inpainting_fill values: what the masked area starts from.
INPAINTING_FILL = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}

Mode = Literal["txt2img", "img2img", "inpaint", "edit"]


def _canonical(value: str, choices: list[str], what: str) -> str:
    for choice in choices:
        if value.strip().lower() == choice.lower():
            return choice
    raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(choices)}")


class ImageRequest(BaseModel):
    """One generation request, with A1111's field names, defaults and meaning."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field("", max_length=20_000, description="What to draw. (word:1.2) raises a word's weight.")
    negative_prompt: str = Field("", max_length=20_000, description="What to keep out of the image.")
    steps: int = Field(20, ge=1, le=150, description="Denoising steps.")
    sampler_name: str = Field("Euler a", description="Sampler, by A1111's name: " + ", ".join(SAMPLERS) + ".")
    scheduler: str = Field("Automatic", description="Schedule type: " + ", ".join(SCHEDULERS.values()) + ".")
    cfg_scale: float = Field(7.0, ge=0, le=30, description="How strongly the prompt steers (CFG scale).")
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="Seed; -1 picks one at random (and records it).")
    subseed: int = Field(-1, ge=-1, le=2**32 - 1, description="Variation seed; -1 picks one at random.")
    subseed_strength: float = Field(0.0, ge=0, le=1, description="How far toward the variation seed (0: none).")
    width: int = Field(512, ge=64, le=2048, multiple_of=8, description="Width in pixels, a multiple of 8.")
    height: int = Field(512, ge=64, le=2048, multiple_of=8, description="Height in pixels, a multiple of 8.")
    batch_size: int = Field(1, ge=1, le=16, description="Images per batch (generated together).")
    n_iter: int = Field(1, ge=1, le=100, description="Batches, one after another (A1111's batch count).")
    denoising_strength: float = Field(0.75, ge=0, le=1, description="img2img: how much to change (0: nothing).")
    mask_blur: int = Field(4, ge=0, le=64, description="Inpainting: blur of the mask edge, in pixels.")
    inpainting_fill: int = Field(1, ge=0, le=3, description="Inpainting: masked area starts from 0 fill, "
                                 "1 original, 2 latent noise, 3 latent nothing.")  # fmt: skip
    inpaint_full_res: bool = Field(False, description="Inpainting: accepted for A1111 compatibility; "
                                   "the whole image is always inpainted.")  # fmt: skip
    image_cfg_scale: float = Field(1.5, ge=0, le=30, description="Instruction edit: how closely to keep the input.")
    clip_skip: int = Field(1, ge=1, le=12, description="Stop the text encoder this many layers early (1: off).")
    model: str | None = Field(None, description="Image model id or alias; unset: the default image model.")

    @field_validator("sampler_name")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        return _canonical(value, list(SAMPLERS), "sampler")

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        key = value.strip().lower().replace(" ", "_")
        if key in SCHEDULERS:
            return SCHEDULERS[key]
        return _canonical(value, list(SCHEDULERS.values()), "schedule type")

    @model_validator(mode="after")
    def _not_too_many_pixels(self) -> ImageRequest:
        if self.batch_size * self.width * self.height > 16 * 1024 * 1024:
            raise ValueError("batch_size × width × height must be at most 16 megapixels per batch")
        return self


@dataclass
class StepInfo:
    """Progress of one denoising step, handed to ``on_step``."""

    step: int  # 1-based, within the current batch
    total: int
    batch: int  # 0-based index of the batch (n_iter)
    # Returns a small preview of the current latents, or None; cheap, but only call it when shown.
    preview: Callable[[], object | None] = lambda: None


@dataclass
class Control:
    """Set by the job queue while an engine runs: ``interrupt`` stops everything, ``skip`` the current batch."""

    interrupt: threading.Event = field(default_factory=threading.Event)
    skip: threading.Event = field(default_factory=threading.Event)


@dataclass
class ImageResult:
    images: list  # PIL.Image.Image, batch order
    seeds: list[int]  # the seed of each image (A1111: seed + index)
    subseeds: list[int]
    interrupted: bool = False


class ImageEngine(ABC):
    """A loaded image model. Capability flags are plain attributes."""

    supports_txt2img = True
    supports_img2img = False
    supports_inpaint = False
    supports_instruct_edit = False
    supports_negative_prompt = True
    max_size = 2048

    def __init__(self, model_id: str):
        self.model_id = model_id

    @abstractmethod
    def generate(
        self,
        request: ImageRequest,
        mode: Mode,
        *,
        init_image: object | None = None,
        mask: object | None = None,
        on_step: Callable[[StepInfo], None] = lambda info: None,
        control: Control | None = None,
    ) -> ImageResult:
        """Generate ``batch_size × n_iter`` images. ``request.seed`` and ``subseed`` are already fixed
        (never -1). ``init_image`` and ``mask`` are PIL images of the request's size.
        """

    def close(self) -> None:
        """Free the model's memory."""
