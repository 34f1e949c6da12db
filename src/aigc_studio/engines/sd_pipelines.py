"""The diffusers pipelines under ``DiffusersEngine``: loading, A1111's noise, latents in and out, tiling.

- Loading: a diffusers folder, or one original-layout ``.safetensors``/``.ckpt`` file with its configs
  (beside it, given, or the reference configs of the architecture read from its keys). The txt2img,
  img2img, inpaint and edit pipelines are built on the same loaded modules.
- Noise: ``BatchRNG`` is A1111's per-image generators (seed, variation seed and strength) handed to
  diffusers as its ``generator``; the img2img and inpaint pipelines here take their noise, and their
  starting latents where the engine has them (hires fix, latent resize), from it instead of drawing.
- Latents: the VAE encodes with its distribution's mean (deterministic) and decodes as diffusers does.
- Tiling: circular padding on every convolution of the UNet and the VAE (A1111's ``apply_circular``).
"""

from __future__ import annotations

import inspect
import json
from contextlib import contextmanager
from pathlib import Path

import torch

from . import diffusers_setup  # noqa: F401  (first: see there)

# isort: split
from diffusers import (
    DiffusionPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image

from ..images.checkpoint_keys import detect_architecture
from ..images.hashing import is_weight_file, weight_variant
from ..images.sd_configs import load_single_file, reference_config_dir

__all__ = [
    "KINDS",
    "ROLES",
    "BatchRNG",
    "circular_padding",
    "decode_latents",
    "encode_images",
    "load_pipeline",
    "pipeline_classes",
    "pipeline_on",
]


# ---------------------------------------------------------------------------------------------------
# Noise


def _slerp(value: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's spherical interpolation of two noise tensors of one image, (C, H, W), normed along H."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:  # nearly parallel: a straight line is as good and avoids 0/0
        return low * (1 - value) + high * value
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    return (torch.sin((1.0 - value) * omega) / sin_omega).unsqueeze(1) * low + (
        torch.sin(value * omega) / sin_omega
    ).unsqueeze(1) * high


class BatchRNG(list):
    """A1111's random numbers for one batch, in the form diffusers takes a ``generator``.

    A list of CPU generators, one per image seeded with its seed; diffusers' ancestral samplers draw
    from them image by image. ``noise`` holds each generator's first draw (of ``shape``), slerped toward
    the image's subseed noise by the variation strength — A1111's ``ImageRNG``, which hires fix makes
    anew at the upscaled shape. The pipelines below read, where diffusers would draw or encode:
    ``noise``; ``fill``, ``(inpainting_fill, latent mask)`` for fills 2 and 3; ``init_latents``, the
    latents to start from instead of encoding the image; ``from_noise``, start an inpainting model from
    pure noise (txt2img on it).
    """

    def __init__(self, seeds, subseeds, subseed_strength: float, shape, fill=None):
        super().__init__(torch.Generator("cpu").manual_seed(seed) for seed in seeds)
        first = []
        for generator, subseed in zip(self, subseeds, strict=True):
            noise = torch.randn(shape, generator=generator)
            if subseed_strength:
                sub_noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(subseed))
                noise = _slerp(subseed_strength, noise, sub_noise)
            first.append(noise)
        self.noise = torch.stack(first)
        self.fill = fill
        self.init_latents: torch.Tensor | None = None
        self.from_noise = False

    def start(self, image_latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The latents an img2img/inpaint run noises: the image's, the masked area set per ``fill``."""
        if self.fill is None:
            return image_latents
        fill, mask = self.fill
        mask = mask.to(image_latents)
        return image_latents * (1 - mask) + (noise * mask if fill == 2 else 0)


# ---------------------------------------------------------------------------------------------------
# Latents in and out


@contextmanager
def _vae_precision(pipe):
    """Run the VAE in float32 where diffusers does: SDXL's (``force_upcast``) overflows in float16."""
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and vae.config.force_upcast and hasattr(pipe, "text_encoder_2")
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        yield vae.dtype
    finally:
        if upcast:
            vae.to(dtype=torch.float16)


def _latents_mean_std(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        return None
    return tuple(torch.tensor(v).view(1, -1, 1, 1).to(like) for v in (mean, std))


def _encode_mean(pipe, image: torch.Tensor) -> torch.Tensor:
    """Scaled VAE latents of ``image`` from the latent distribution's mean: deterministic, no random draw."""
    with _vae_precision(pipe) as dtype:
        latents = pipe.vae.encode(image.to(dtype)).latent_dist.mode().to(image.dtype)
    scaling = pipe.vae.config.scaling_factor
    if (mean_std := _latents_mean_std(pipe.vae, latents)) is not None:
        return (latents - mean_std[0]) * scaling / mean_std[1]
    return latents * scaling


def encode_images(pipe, images: list[Image.Image], device, dtype) -> torch.Tensor:
    """PIL images (one size; diffusers rounds it down to a multiple of 8) -> scaled latents, a batch."""
    pixels = pipe.image_processor.preprocess(images).to(device=device, dtype=dtype)
    return _encode_mean(pipe, pixels)


def decode_latents(pipe, latents: torch.Tensor) -> list[Image.Image]:
    """Latents to images, as diffusers' pipelines decode them (one path, finished or stopped early)."""
    scaling = pipe.vae.config.scaling_factor
    with _vae_precision(pipe) as dtype:
        latents = latents.to(dtype)
        if (mean_std := _latents_mean_std(pipe.vae, latents)) is not None:
            latents = latents * mean_std[1] / scaling + mean_std[0]
        else:
            latents = latents / scaling
        images = pipe.vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(images, output_type="pil")


@contextmanager
def circular_padding(pipe, enabled: bool):
    """Seamless tiling while in the block: every Conv2d of the UNet and the VAE pads circularly, so the
    picture continues across its edges; the padding modes are restored after."""
    if not enabled:
        yield
        return
    convs = [m for part in (pipe.unet, pipe.vae) for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    before = [conv.padding_mode for conv in convs]
    for conv in convs:
        conv.padding_mode = "circular"
    try:
        yield
    finally:
        for conv, mode in zip(convs, before, strict=True):
            conv.padding_mode = mode


# ---------------------------------------------------------------------------------------------------
# Pipelines whose first latents come from the engine


class _Img2ImgFromEngine:
    """img2img whose noise is ``generator.noise`` and whose start is ``generator.init_latents`` when set."""

    def prepare_latents(
        self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None, add_noise=True
    ):
        if generator.init_latents is not None:
            latents = generator.init_latents.to(device=device, dtype=dtype)
        else:
            latents = _encode_mean(self, image.to(device=device, dtype=dtype))
        latents = latents.repeat(batch_size * num_images_per_prompt // latents.shape[0], 1, 1, 1)
        noise = generator.noise.to(device=device, dtype=dtype)
        return self.scheduler.add_noise(generator.start(latents, noise), noise, timestep)


class _InpaintFromEngine:
    """Inpainting whose noise is ``generator.noise``, whose start honours ``inpainting_fill`` and
    ``generator.init_latents``, and which starts from the noised image even at strength 1 (as A1111:
    only txt2img on an inpainting model, ``generator.from_noise``, starts from pure noise)."""

    def prepare_latents(
        self,
        batch_size,
        num_channels_latents,
        height,
        width,
        dtype,
        device,
        generator,
        latents=None,
        image=None,
        timestep=None,
        is_strength_max=True,
        add_noise=True,
        return_noise=False,
        return_image_latents=False,
    ):
        noise = generator.noise.to(device=device, dtype=dtype)
        image_latents = None
        if return_image_latents or not generator.from_noise:
            if generator.init_latents is not None:
                image_latents = generator.init_latents.to(device=device, dtype=dtype)
            else:
                image_latents = _encode_mean(self, image.to(device=device, dtype=dtype))
            image_latents = image_latents.repeat(batch_size // image_latents.shape[0], 1, 1, 1)
        if generator.from_noise:
            latents = noise * self.scheduler.init_noise_sigma
        else:
            latents = self.scheduler.add_noise(generator.start(image_latents, noise), noise, timestep)
        return (latents, *([noise] if return_noise else []), *([image_latents] if return_image_latents else []))

    def _encode_vae_image(self, image, generator=None):  # the masked image a 9-channel UNet is conditioned on
        return _encode_mean(self, image)


class _SDImg2Img(_Img2ImgFromEngine, StableDiffusionImg2ImgPipeline):
    pass


class _SDInpaint(_InpaintFromEngine, StableDiffusionInpaintPipeline):
    pass


class _SDXLImg2Img(_Img2ImgFromEngine, StableDiffusionXLImg2ImgPipeline):
    pass


class _SDXLInpaint(_InpaintFromEngine, StableDiffusionXLInpaintPipeline):
    pass


# pipeline role -> class; txt2img and edit take the engine's noise as ``latents=``
_SD_PIPELINES = {
    "txt2img": StableDiffusionPipeline,
    "img2img": _SDImg2Img,
    "inpaint": _SDInpaint,
    "edit": StableDiffusionInstructPix2PixPipeline,
}
_SDXL_PIPELINES = {"txt2img": StableDiffusionXLPipeline, "img2img": _SDXLImg2Img, "inpaint": _SDXLInpaint}
# UNet input channels -> which pipeline role serves each mode. A 9-channel model does everything through
# its inpainting pipeline, with a full mask for txt2img/img2img, as A1111 conditions it.
ROLES = {
    4: {"txt2img": "txt2img", "img2img": "img2img", "inpaint": "inpaint"},
    9: {"txt2img": "inpaint", "img2img": "inpaint", "inpaint": "inpaint"},
    8: {"edit": "edit"},
}
KINDS = {4: "standard", 9: "inpainting", 8: "InstructPix2Pix"}


def pipeline_classes(is_sdxl: bool) -> dict[str, type]:
    """Pipeline role -> class for an SD or SDXL model."""
    return _SDXL_PIPELINES if is_sdxl else _SD_PIPELINES


def folder_variant(path: Path, index: dict) -> str | None:
    """The weight variant a diffusers folder must be loaded with: the one its components hold only.

    A folder pulled with the fp16 files alone (``unet/diffusion_pytorch_model.fp16.safetensors``, ...)
    fails to load without ``variant="fp16"``; diffusers does not look for a variant it is not told of.
    A component that has plain weights needs none; diffusers falls back to them for the rest.
    """
    needed = set()
    for component, spec in index.items():
        if component.startswith("_") or component == "safety_checker" or not (isinstance(spec, list) and spec[:1]):
            continue
        if spec[0] is None:  # a component the pipeline does without ([null, null])
            continue
        variants = {weight_variant(f.name) for f in (path / component).glob("*") if is_weight_file(f.name)}
        if variants and None not in variants:
            needed |= variants
    if len(needed) > 1:
        raise ValueError(
            f"{path}: its components hold weights of different variants only ({', '.join(sorted(needed))}), "
            "so which to load is unclear; keep one variant's files (or the plain ones) in each component folder"
        )
    return needed.pop() if needed else None


def load_pipeline(
    path: Path,
    config_dir: Path | None,
    dtype: torch.dtype,
    prediction_type: str | None = None,
    variant: str | None = None,
):
    """Load a diffusers folder (with ``variant``'s weights, or the variant its components hold only) or an
    original-layout single file (see ``DiffusersEngine``)."""
    if path.is_dir():
        index_file = path / "model_index.json"
        if not index_file.is_file():
            raise FileNotFoundError(f"{path} is not a diffusers model folder: it has no model_index.json")
        index = json.loads(index_file.read_text(encoding="utf-8"))
        # No safety checker runs (as in A1111): diffusers' would black out images it flags, and no
        # NSFW check of the studio's own exists yet
        no_checker = {"safety_checker": None, "requires_safety_checker": False}
        extra = no_checker if "safety_checker" in index else {}
        # fp16 weights load upcast to ``dtype`` (float32 on the CPU).
        variant = variant or folder_variant(path, index)
        if variant:
            extra["variant"] = variant
        return DiffusionPipeline.from_pretrained(path, local_files_only=True, dtype=dtype, **extra)
    if path.suffix.lower() not in (".safetensors", ".ckpt"):
        raise ValueError(f"{path.name}: a model must be a diffusers folder or a .safetensors / .ckpt file")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    # A diffusers config folder beside the checkpoint, named after it ("model-config/" for
    # "model.safetensors"), describes it exactly — as A1111 reads a "model.yaml" placed beside it.
    beside = path.with_name(f"{path.stem}-config")
    if (beside / "model_index.json").is_file():
        config_dir = beside
    elif config_dir is None or not (config_dir / "model_index.json").is_file():
        arch = detect_architecture(path, prediction_type)
        config_dir = reference_config_dir(arch, config_dir or path.parent / ".aigc-sd-configs")
    return load_single_file(path, config_dir, dtype=dtype)


def pipeline_on(pipeline_class: type, base: DiffusionPipeline) -> DiffusionPipeline:
    """A ``pipeline_class`` sharing ``base``'s loaded modules and settings: ``from_pipe`` without the cast
    to float32 it does unless told a dtype (and the warning that cast logs for every module)."""
    accepted = inspect.signature(pipeline_class.__init__).parameters
    settings = {name: value for name, value in base.config.items() if not name.startswith("_")}
    arguments = {name: value for name, value in {**settings, **base.components}.items() if name in accepted}
    if "requires_safety_checker" in accepted:
        arguments["requires_safety_checker"] = False
    pipe = pipeline_class(**arguments)
    pipe.set_progress_bar_config(disable=True)
    return pipe
