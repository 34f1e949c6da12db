"""The image-engine contract.

An image engine turns an ``ImageRequest`` (declared in ``aigc_studio.contracts`` with every A1111
parameter) into images and reports each denoising step. It knows nothing of jobs, files, infotext, HTTP
or the UI.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from ..contracts import Control, ImageRequest, ImageResult, Mode, StepInfo

__all__ = ["ImageEngine"]


class ImageEngine(ABC):
    """A loaded image model. Capability flags are plain attributes."""

    supports_txt2img = True
    supports_img2img = False
    supports_inpaint = False
    supports_instruct_edit = False
    supports_negative_prompt = True
    # Honours ImageRequest.token_merging_ratio; the record of an engine that does not says it ran without.
    supports_token_merging = False
    # Honours ImageRequest.s_min_uncond (A1111's NGMS); the record of an engine that does not says 0.
    supports_negative_guidance_skip = False
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
        (never -1). ``init_image`` and ``mask`` are PIL images at the caller's size (the same for both);
        the engine fits them to the request as A1111 does (``images.masking.prepare_init``: resize mode,
        mask invert and blur, "Only masked"), so an output may have the input's size ("Only masked") or
        the hires-fix size (``enable_hr``) rather than the request's.
        """

    def close(self) -> None:  # noqa: B027 - optional: an engine with nothing to free keeps it
        """Free the model's memory."""
