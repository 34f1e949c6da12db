"""Stable Diffusion through diffusers, with AUTOMATIC1111's parameters, seeds and prompt syntax.

``DiffusersEngine`` loads SD 1.x/2.x, SDXL (and Turbo), LCM, InstructPix2Pix (8-channel UNet) and
inpainting (9-channel UNet) models from a diffusers folder, or from one original-layout
``.safetensors``/``.ckpt`` file as A1111 keeps them. It loads the weights once and builds the txt2img,
img2img, inpaint and edit pipelines from the same components.

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
- Prompts: ``(word:1.2)``, ``(word)``, ``[word]`` and ``\\(`` are parsed as A1111 parses them; weighted
  prompts are encoded with compel. Unweighted prompts with clip skip 1 go to diffusers as plain strings,
  so they give exactly what diffusers gives. Prompts are cut at CLIP's 77 tokens; ``BREAK`` is a word.
- Clip skip n: the n-th last CLIP layer's hidden states with the final layer norm (A1111's and diffusers'
  meaning). SDXL ignores it, as A1111 does by default.
- img2img and inpaint: the image is encoded with the VAE's mean (deterministic, draws no random numbers).
  ``denoising_strength`` 0 returns the input unchanged; a strength that leaves less than one step runs
  one (A1111 does too).
- Inpaint: the mask is white where to repaint, blurred by ``mask_blur``; the result is laid over the
  original through the blurred mask (A1111's overlay), so unmasked pixels stay the original's.
  ``inpainting_fill``: 0 "fill" fills the masked area with the colours around it (A1111's
  ``masking.fill``, in pixels) before encoding; 1 "original" starts from the image; 2 "latent noise" and
  3 "latent nothing" set the masked latents to the seed's noise or to zero before noising, as A1111 does.
- Progress: ``on_step`` after every denoising iteration (Heun and DPM2 run 2 × steps − 1 of them).
  ``control.interrupt`` and ``control.skip`` end the current batch at once; its partly denoised images
  are decoded and kept, as A1111 keeps them. Interrupt then stops the run; skip goes on with the next batch.
"""

from __future__ import annotations

import gc
import inspect
import json
import re
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from compel import EmbeddingsProvider, ReturnedEmbeddingsType
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
from PIL import Image, ImageFilter, ImageOps

from ..contracts import Control, ImageRequest, ImageResult, Mode, StepInfo
from ..images.checkpoint_keys import detect_architecture
from ..images.hashing import is_weight_file, weight_variant
from ..images.sd_configs import load_single_file, reference_config_dir
from .image_base import ImageEngine
from .samplers import SchedulerCache

__all__ = ["DiffusersEngine", "parse_prompt_attention"]

# A1111's "Approx cheap" live preview: latent channels -> RGB (sd_vae_approx.cheap_approximation).
_PREVIEW_SD = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
_PREVIEW_SDXL = [
    [0.3448, 0.4168, 0.4395],
    [-0.1953, -0.0290, 0.0250],
    [0.1074, 0.0886, -0.0163],
    [-0.3730, -0.2499, -0.2088],
]


# ---------------------------------------------------------------------------------------------------
# Prompts


_ATTENTION = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split an A1111 prompt into ``(text, weight)`` runs, as A1111's ``prompt_parser`` does.

    ``(a)`` multiplies by 1.1, ``[a]`` divides by 1.1, ``(a:1.5)`` multiplies by 1.5, ``\\(`` is a literal
    bracket; unclosed brackets apply to the end. Neighbouring runs of equal weight are merged.
    """
    runs: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            runs.append([token[1:], 1.0])
        elif token == "(":
            round_brackets.append(len(runs))
        elif token == "[":
            square_brackets.append(len(runs))
        elif weight is not None and round_brackets:
            multiply_from(round_brackets.pop(), float(weight))
        elif token == ")" and round_brackets:
            multiply_from(round_brackets.pop(), 1.1)
        elif token == "]" and square_brackets:
            multiply_from(square_brackets.pop(), 1 / 1.1)
        else:
            runs.append([token, 1.0])
    for start in round_brackets:
        multiply_from(start, 1.1)
    for start in square_brackets:
        multiply_from(start, 1 / 1.1)

    merged: list[list] = []
    for run in runs or [["", 1.0]]:
        if merged and merged[-1][1] == run[1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(text, weight) for text, weight in merged]


def _plain(runs: list[tuple[str, float]]) -> str:
    return "".join(text for text, _ in runs)


class _ClipSkipEmbeddings(EmbeddingsProvider):
    """compel's weighted embeddings from the ``clip_skip``-th last CLIP layer, final layer norm applied.

    compel only knows the last two layers, and reaches the norm through ``text_model``, which
    transformers 5 flattened away (diffusers' own ``clip_skip`` fails the same way).
    """

    def __init__(self, tokenizer, text_encoder, clip_skip: int):
        super().__init__(tokenizer, text_encoder, truncate=True)
        self.clip_skip = clip_skip

    def _encode_token_ids_to_embeddings(self, token_ids, attention_mask=None):
        output = self.text_encoder(token_ids, attention_mask, output_hidden_states=True, return_dict=True)
        final_layer_norm = getattr(self.text_encoder, "text_model", self.text_encoder).final_layer_norm
        return final_layer_norm(output.hidden_states[-self.clip_skip])


class _PromptEncoder:
    """A1111 prompt and negative prompt -> the pipeline's prompt arguments."""

    def __init__(self, pipe, is_sdxl: bool):
        self._pipe = pipe
        self._is_sdxl = is_sdxl
        self._by_clip_skip: dict[int, _ClipSkipEmbeddings] = {}
        self._sdxl_providers: tuple[EmbeddingsProvider, EmbeddingsProvider] | None = None

    def __call__(self, prompt: str, negative_prompt: str, clip_skip: int) -> dict:
        if self._is_sdxl:
            clip_skip = 1  # A1111 leaves SDXL's (penultimate-layer) conditioning alone by default
        positive, negative = parse_prompt_attention(prompt), parse_prompt_attention(negative_prompt)
        if clip_skip == 1 and all(weight == 1.0 for _, weight in positive + negative):
            return {"prompt": _plain(positive), "negative_prompt": _plain(negative) or None}
        if self._is_sdxl:
            return self._sdxl(positive, negative)
        if clip_skip not in self._by_clip_skip:
            pipe = self._pipe
            self._by_clip_skip[clip_skip] = _ClipSkipEmbeddings(pipe.tokenizer, pipe.text_encoder, clip_skip)
        provider = self._by_clip_skip[clip_skip]
        return {"prompt_embeds": _embed(provider, positive), "negative_prompt_embeds": _embed(provider, negative)}

    def _sdxl(self, positive, negative) -> dict:
        if self._sdxl_providers is None:  # both encoders' penultimate layer, unnormalized, as SDXL was trained
            kind = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
            pipe = self._pipe
            self._sdxl_providers = (
                EmbeddingsProvider(pipe.tokenizer, pipe.text_encoder, returned_embeddings_type=kind),
                EmbeddingsProvider(pipe.tokenizer_2, pipe.text_encoder_2, returned_embeddings_type=kind),
            )
        first, second = self._sdxl_providers

        def encode(runs):  # the pooled embedding (second encoder) is of the text without weights
            embeds = torch.cat([_embed(first, runs), _embed(second, runs)], dim=-1)
            return embeds, second.get_pooled_embeddings([_plain(runs)])

        embeds, pooled = encode(positive)
        if not _plain(negative) and getattr(self._pipe.config, "force_zeros_for_empty_prompt", True):
            negative_embeds, negative_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)  # as diffusers
        else:
            negative_embeds, negative_pooled = encode(negative)
        return {
            "prompt_embeds": embeds,
            "pooled_prompt_embeds": pooled,
            "negative_prompt_embeds": negative_embeds,
            "negative_pooled_prompt_embeds": negative_pooled,
        }


def _embed(provider, runs: list[tuple[str, float]]) -> torch.Tensor:
    texts, weights = zip(*runs, strict=True)
    return provider.get_embeddings_for_weighted_prompt_fragments([list(texts)], [list(weights)], device=provider.device)


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


class _BatchRNG(list):
    """A1111's random numbers for one batch, in the form diffusers takes a ``generator``.

    A list of CPU generators, one per image seeded with its seed; diffusers' ancestral samplers draw
    from them image by image. ``noise`` holds each generator's first draw, slerped toward the image's
    subseed noise by the variation strength. ``fill`` is ``(inpainting_fill, latent mask)`` for fills 2
    and 3. The pipelines below read ``noise`` and ``fill`` where diffusers would draw its own noise.
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

    def start(self, image_latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The latents an img2img/inpaint run noises: the image's, the masked area set per ``fill``."""
        if self.fill is None:
            return image_latents
        fill, mask = self.fill
        mask = mask.to(image_latents)
        return image_latents * (1 - mask) + (noise * mask if fill == 2 else 0)


# ---------------------------------------------------------------------------------------------------
# Pipelines whose first latents come from the engine


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


class _Img2ImgFromEngine:
    """img2img whose noise is ``generator.noise`` (a ``_BatchRNG``) instead of a fresh draw."""

    def prepare_latents(
        self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None, add_noise=True
    ):
        latents = _encode_mean(self, image.to(device=device, dtype=dtype))
        latents = latents.repeat(batch_size * num_images_per_prompt // latents.shape[0], 1, 1, 1)
        noise = generator.noise.to(device=device, dtype=dtype)
        return self.scheduler.add_noise(generator.start(latents, noise), noise, timestep)


class _InpaintFromEngine:
    """Inpainting whose noise is ``generator.noise`` and whose start honours ``inpainting_fill``."""

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
        if return_image_latents or not is_strength_max:
            image_latents = _encode_mean(self, image.to(device=device, dtype=dtype))
            image_latents = image_latents.repeat(batch_size // image_latents.shape[0], 1, 1, 1)
        if is_strength_max:
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
_ROLES = {
    4: {"txt2img": "txt2img", "img2img": "img2img", "inpaint": "inpaint"},
    9: {"txt2img": "inpaint", "img2img": "inpaint", "inpaint": "inpaint"},
    8: {"edit": "edit"},
}
_KINDS = {4: "standard", 9: "inpainting", 8: "InstructPix2Pix"}


def _folder_variant(path: Path, index: dict) -> str | None:
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


def _load_pipeline(
    path: Path,
    config_dir: Path | None,
    dtype: torch.dtype,
    prediction_type: str | None = None,
    variant: str | None = None,
):
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
        variant = variant or _folder_variant(path, index)
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


def _pipeline_on(pipeline_class: type, base: DiffusionPipeline) -> DiffusionPipeline:
    """A ``pipeline_class`` sharing ``base``'s loaded modules and settings: ``from_pipe`` without the cast
    to float32 it does unless told a dtype (and the warning that cast logs for every module)."""
    accepted = inspect.signature(pipeline_class.__init__).parameters
    settings = {name: value for name, value in base.config.items() if not name.startswith("_")}
    arguments = {name: value for name, value in {**settings, **base.components}.items() if name in accepted}
    if "requires_safety_checker" in accepted:
        arguments["requires_safety_checker"] = False
    return pipeline_class(**arguments)


# ---------------------------------------------------------------------------------------------------
# The engine


class _StopBatch(Exception):
    """Raised from the step callback to end a batch now; carries the latents reached."""

    def __init__(self, latents: torch.Tensor):
        super().__init__("batch stopped")
        self.latents = latents


@dataclass
class _Run:
    """What every batch of one ``generate`` call shares."""

    pipe: DiffusionPipeline
    request: ImageRequest
    arguments: dict  # the pipeline's mode-specific arguments
    takes_latents: bool  # txt2img and edit pipelines take the initial noise as ``latents=``
    on_step: Callable[[StepInfo], None]
    control: Control
    unchanged: Image.Image | None = None  # denoising strength 0: the answer is the input
    overlay: tuple[Image.Image, Image.Image] | None = None  # inpaint: (original, blurred mask)
    fill: tuple[int, torch.Tensor] | None = None


class DiffusersEngine(ImageEngine):
    """A Stable Diffusion model loaded once, generating with A1111's parameters (see the module doc)."""

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
        (process-wide) number of CPU threads.
        """
        super().__init__(model_id)
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        config_dir = Path(config_dir) if config_dir is not None else None
        base = _load_pipeline(Path(path), config_dir, self.dtype, prediction_type, variant).to(self.device)
        self.is_sdxl = "text_encoder_2" in base.components
        self.unet_in_channels = in_channels = base.unet.config.in_channels
        if in_channels not in _ROLES or (self.is_sdxl and in_channels == 8):
            family = "SDXL" if self.is_sdxl else "SD"
            raise ValueError(f"{model_id}: an {family} UNet with {in_channels} input channels is not supported")
        self.kind = _KINDS[in_channels]
        classes = _SDXL_PIPELINES if self.is_sdxl else _SD_PIPELINES
        built: dict[str, DiffusionPipeline] = {}
        self._pipes: dict[str, DiffusionPipeline] = {}
        for mode, role in _ROLES[in_channels].items():
            if role not in built:
                built[role] = _pipeline_on(classes[role], base)
                built[role].set_progress_bar_config(disable=True)
            self._pipes[mode] = built[role]
        self.supports_txt2img = "txt2img" in self._pipes
        self.supports_img2img = "img2img" in self._pipes
        self.supports_inpaint = "inpaint" in self._pipes
        self.supports_instruct_edit = "edit" in self._pipes
        self.native_inpaint = in_channels == 9  # an inpainting model; a standard one inpaints with its 4 channels
        self._schedulers = SchedulerCache(base.scheduler.config)
        self._prompts = _PromptEncoder(base, self.is_sdxl)
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
        with self._lock, torch.no_grad():
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
        return result

    def _prepare(self, request, mode, init_image, mask, on_step, control) -> _Run:
        if mode != "txt2img" and init_image is None:
            raise ValueError(f"{mode} needs an init_image")
        if mode == "inpaint" and mask is None:
            raise ValueError("inpaint needs a mask (white where to repaint)")
        for name, image in (("init_image", init_image), ("mask", mask)):
            if image is not None and image.size != (request.width, request.height):
                size = f"{request.width}x{request.height}"
                raise ValueError(f"{name} is {image.width}x{image.height}, the request {size}")
        pipe = self._pipes[mode]
        pipe.scheduler = self._schedulers.get(request.sampler_name, request.scheduler, eta=request.eta)[0]
        size = {"height": request.height, "width": request.width}
        run = _Run(pipe, request, size, mode in ("txt2img", "edit") and not self.native_inpaint, on_step, control)
        strength = request.denoising_strength
        if int(request.steps * strength) == 0:  # diffusers would run no step at all; A1111 runs one
            strength = min(1.0, 1.5 / request.steps)
        if mode == "edit":
            run.arguments = {"image": init_image, "image_guidance_scale": request.image_cfg_scale}
        elif mode in ("img2img", "inpaint") and request.denoising_strength == 0:
            run.unchanged = init_image
        elif mode == "img2img" and not self.native_inpaint:
            run.arguments = {"image": init_image, "strength": strength}
        elif mode == "inpaint":
            blurred = mask.convert("L")
            if request.mask_blur:
                blurred = blurred.filter(ImageFilter.GaussianBlur(request.mask_blur))
            image = _fill(init_image, blurred) if request.inpainting_fill == 0 else init_image
            run.arguments.update(image=image, mask_image=blurred, strength=strength)
            run.overlay = (init_image, blurred)
            if request.inpainting_fill in (2, 3):  # A1111 rounds the latent-size mask
                latent_size = (request.width // pipe.vae_scale_factor, request.height // pipe.vae_scale_factor)
                latent_mask = np.asarray(blurred.resize(latent_size), dtype=np.float32) / 255
                run.fill = (request.inpainting_fill, torch.from_numpy(latent_mask).round()[None, None])
        elif self.native_inpaint:  # txt2img / img2img on an inpainting model: all of it is masked
            white = Image.new("L", (request.width, request.height), 255)
            image = init_image if mode == "img2img" else Image.new("RGB", white.size, (127, 127, 127))
            run.arguments.update(image=image, mask_image=white, strength=strength if mode == "img2img" else 1.0)
        run.arguments.update(self._prompts(request.prompt, request.negative_prompt, request.clip_skip))
        return run

    def _run_batch(self, run: _Run, batch: int, seeds: list[int], subseeds: list[int]) -> list[Image.Image]:
        request, pipe = run.request, run.pipe
        if run.unchanged is not None:
            return [run.unchanged.copy() for _ in seeds]
        shape = (
            pipe.vae.config.latent_channels,
            request.height // pipe.vae_scale_factor,
            request.width // pipe.vae_scale_factor,
        )
        rng = _BatchRNG(seeds, subseeds, request.subseed_strength, shape, run.fill)
        if hasattr(pipe.scheduler, "noise_sampler_seed"):  # DPM++ SDE / 2M SDE: one Brownian tree per image,
            pipe.scheduler.noise_sampler_seed = list(seeds)  # seeded with its seed, as A1111 seeds them
        arguments = dict(run.arguments)
        if run.takes_latents:
            arguments["latents"] = rng.noise.to(device=self.device, dtype=self.dtype)

        def on_step_end(pipe, index, timestep, tensors):
            latents = tensors["latents"]
            info = StepInfo(index + 1, pipe.num_timesteps, batch, preview=lambda: self._preview(latents))
            run.on_step(info)
            if run.control.interrupt.is_set() or run.control.skip.is_set():
                run.control.skip.clear()
                raise _StopBatch(latents)
            return tensors

        try:
            latents = pipe(
                num_inference_steps=request.steps,
                guidance_scale=request.cfg_scale,
                num_images_per_prompt=request.batch_size,
                generator=rng,
                output_type="latent",
                callback_on_step_end=on_step_end,
                **arguments,
            ).images
        except _StopBatch as stop:
            latents = stop.latents
        images = self._decode(pipe, latents)
        if run.overlay is not None:
            original, blurred = run.overlay
            images = [Image.composite(image, original, blurred) for image in images]
        return images

    def _decode(self, pipe, latents: torch.Tensor) -> list[Image.Image]:
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

    def _preview(self, latents: torch.Tensor) -> Image.Image:
        """The batch side by side at latent size (1/8), by a linear map of the latents, no VAE."""
        rgb = torch.einsum("bchw,cr->brhw", latents.detach().float().cpu(), self._preview_factors)
        pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return Image.fromarray(torch.cat(list(pixels), dim=1).numpy())

    def close(self) -> None:
        self._pipes.clear()
        self._prompts = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's ``masking.fill``: the masked area takes the colours around it, blurred in coarse to fine."""
    filled = Image.new("RGBA", image.size)
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return filled.convert("RGB")
