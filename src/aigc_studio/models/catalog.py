"""The catalog: models the studio knows how to pull from the Hugging Face Hub, as plain data.

An entry names a hub repo, the exact files (or, for a diffusers folder, the file patterns) worth
downloading, and the settings the model was made for. ``aigc models pull <id>`` fetches one with
:func:`aigc_studio.models.pull.pull`; the registry then adds the local copy like any other model.

Image models are diffusers folders, with only the fp16 weights where the repo has them (half the
download): the registry records ``variant`` and the engine loads the folder offline with
``from_pretrained(folder, variant="fp16")``, upcast to float32 on the CPU. Safety-checker weights are
never pulled and engines pass ``safety_checker=None``: as in A1111, no safety checker runs.

The file names are those the repos list: the fp16 weights of SD-Turbo, SDXL-Turbo and SD 1.5 were
checked against their hub listings as quoted in public download scripts (tests/test_pull.py
``HUB_LAYOUTS`` holds the layouts); the float32 names of LCM and InstructPix2Pix are the standard
converted-repo ones, not checked from here. A wrong name is still safe: a pattern that matches
nothing, or a component of ``model_index.json`` left without files or without weights in the entry's
variant, stops the pull with a message before the large files, instead of giving a folder that fails
to load later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from ..errors import ModelNotFound

__all__ = ["CATALOG", "CatalogEntry", "NotInCatalog", "find"]

Kind = Literal["text", "image"]
Engine = Literal["llamacpp", "diffusers"]


@dataclass(frozen=True)
class CatalogEntry:
    """One pullable model. ``files`` (exact repo paths) or ``allow_patterns`` (fnmatch), never both."""

    id: str
    kind: Kind
    engine: Engine
    repo_id: str
    size_bytes: int  # approximate download size, for "this needs 2.6 GB" before pulling
    license: str
    description: str
    revision: str = "main"
    files: tuple[str, ...] = ()
    allow_patterns: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    # Settings the model was trained for, with the names ImageRequest / TextOptions use.
    defaults: dict[str, object] = field(default_factory=dict, hash=False)
    architecture: str | None = None  # "sd15", "sd21", "sdxl", "sd15-pix2pix", "qwen2", ...
    variant: str | None = None  # diffusers weight variant to load, e.g. "fp16"
    # The languages a text model writes well (ISO 639-1, as the studio's templates name them: "en", "zh");
    # empty when not stated. The writing and editing tools warn when a text's language is not among them.
    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.files) == bool(self.allow_patterns):
            raise ValueError(f"catalog entry '{self.id}': give either files or allow_patterns, not both/neither")

    @property
    def is_folder(self) -> bool:
        """True when the pull gives a folder (a diffusers model), False when it gives one file."""
        return bool(self.allow_patterns) or len(self.files) > 1

    def as_dict(self) -> dict[str, object]:
        """The entry as JSON-ready data, with ``is_folder``."""
        return {**asdict(self), "is_folder": self.is_folder}


def _diffusers_files(*components: str, weights: dict[str, str], extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Patterns for a diffusers folder: model_index, each component's config, the chosen weights."""
    patterns = ["model_index.json", "scheduler/scheduler_config.json", *extra]
    for component in components:
        if component.startswith("tokenizer"):
            patterns.append(f"{component}/*")
        else:
            patterns += [f"{component}/config.json", f"{component}/{weights[component]}"]
    return tuple(patterns)


_UNET_FP16 = "diffusion_pytorch_model.fp16.safetensors"
_CLIP_FP16 = "model.fp16.safetensors"
_UNET = "diffusion_pytorch_model.safetensors"
_CLIP = "model.safetensors"
_SD_FP16 = {"unet": _UNET_FP16, "vae": _UNET_FP16, "text_encoder": _CLIP_FP16, "text_encoder_2": _CLIP_FP16}
_SD_FP32 = {"unet": _UNET, "vae": _UNET, "text_encoder": _CLIP}
_SD_PARTS = ("tokenizer", "text_encoder", "unet", "vae")
_FEATURE_EXTRACTOR = ("feature_extractor/preprocessor_config.json",)

# Qwen2.5's model card: "multilingual support for over 29 languages, including Chinese, English, French,
# Spanish, Portuguese, German, Italian, Russian, Japanese, Korean, Vietnamese, Thai, Arabic, and more".
QWEN_LANGUAGES = ("zh", "en", "fr", "es", "pt", "de", "it", "ru", "ja", "ko", "vi", "th", "ar")

CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        id="sd-turbo",
        aliases=("sdturbo", "stabilityai/sd-turbo"),
        kind="image",
        engine="diffusers",
        repo_id="stabilityai/sd-turbo",
        # fp16: unet 1.73 GB, text_encoder 681 MB, vae 167 MB
        allow_patterns=_diffusers_files(*_SD_PARTS, weights=_SD_FP16),
        variant="fp16",
        size_bytes=2_580_000_000,
        license="sai-nc-community (Stability AI Non-Commercial Research Community License)",
        description="SD 2.1 distilled for 1-4 steps at 512x512; CFG must stay 0.",
        defaults={"steps": 1, "cfg_scale": 0.0, "sampler_name": "Euler a", "width": 512, "height": 512},
        architecture="sd21",
    ),
    CatalogEntry(
        id="sdxl-turbo",
        aliases=("sdxlturbo", "stabilityai/sdxl-turbo"),
        kind="image",
        engine="diffusers",
        repo_id="stabilityai/sdxl-turbo",
        # fp16: unet 5.14 GB, text_encoder 246 MB, text_encoder_2 1.39 GB, vae 167 MB
        allow_patterns=_diffusers_files(
            "tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "unet", "vae", weights=_SD_FP16
        ),
        variant="fp16",
        size_bytes=6_940_000_000,
        license="sai-nc-community (Stability AI Non-Commercial Research Community License)",
        description="SDXL distilled for 1-4 steps at 512x512; CFG must stay 0.",
        defaults={"steps": 1, "cfg_scale": 0.0, "sampler_name": "Euler a", "width": 512, "height": 512},
        architecture="sdxl",
    ),
    CatalogEntry(
        id="sd15",
        aliases=("sd-1.5", "stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        kind="image",
        engine="diffusers",
        repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        # The fp16 diffusers folder (unet, vae and text_encoder each have a *.fp16.safetensors) is the
        # same ~2.1 GB as v1-5-pruned-emaonly-fp16.safetensors; its safety checker is left out.
        allow_patterns=_diffusers_files(*_SD_PARTS, weights=_SD_FP16, extra=_FEATURE_EXTRACTOR),
        variant="fp16",
        size_bytes=2_130_000_000,
        license="creativeml-openrail-m",
        description="Stable Diffusion 1.5, the base most community models and LoRAs build on; 512x512.",
        defaults={"steps": 20, "cfg_scale": 7.0, "sampler_name": "Euler a", "width": 512, "height": 512},
        architecture="sd15",
    ),
    CatalogEntry(
        id="lcm-dreamshaper-v7",
        aliases=("lcm", "lcm-dreamshaper", "SimianLuo/LCM_Dreamshaper_v7"),
        kind="image",
        engine="diffusers",
        repo_id="SimianLuo/LCM_Dreamshaper_v7",
        # No fp16 weights in this repo: float32 safetensors (unet 3.44 GB). The ONNX export beside them
        # (unet/model.onnx + model.onnx_data, another 3.4 GB) is left out.
        allow_patterns=_diffusers_files(*_SD_PARTS, weights=_SD_FP32, extra=_FEATURE_EXTRACTOR),
        size_bytes=4_270_000_000,
        license="mit",
        description="Latent Consistency Model distilled from Dreamshaper v7 (SD 1.5): good images in 4 steps.",
        # The guidance scale is embedded in the distilled UNet (w-embedding), so the usual value is 8, not
        # the 1-2 used with LCM-LoRA; LCMScheduler ignores the negative prompt.
        defaults={"steps": 4, "cfg_scale": 8.0, "sampler_name": "LCM", "width": 512, "height": 512},
        architecture="sd15",
    ),
    CatalogEntry(
        id="instruct-pix2pix",
        aliases=("pix2pix", "ip2p", "timbrooks/instruct-pix2pix"),
        kind="image",
        engine="diffusers",
        repo_id="timbrooks/instruct-pix2pix",
        # float32 safetensors (an fp16 set could not be confirmed from here)
        allow_patterns=_diffusers_files(*_SD_PARTS, weights=_SD_FP32, extra=_FEATURE_EXTRACTOR),
        size_bytes=4_270_000_000,
        license="mit",
        description="Edits an image by instruction ('make it winter'); SD 1.5 with an 8-channel UNet.",
        defaults={"steps": 10, "cfg_scale": 7.5, "image_cfg_scale": 1.5, "sampler_name": "Euler a"},
        architecture="sd15-pix2pix",
    ),
    CatalogEntry(
        id="qwen2.5-0.5b-instruct",
        aliases=("qwen2.5-0.5b", "qwen-0.5b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF"),
        kind="text",
        engine="llamacpp",
        repo_id="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        files=("qwen2.5-0.5b-instruct-q4_k_m.gguf",),
        size_bytes=491_000_000,
        license="apache-2.0",
        description="Qwen2.5 0.5B chat, Q4_K_M: small and quick, Chinese and English, 32k context.",
        defaults={"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repeat_penalty": 1.05},
        architecture="qwen2",
        languages=QWEN_LANGUAGES,
    ),
    CatalogEntry(
        id="qwen2.5-1.5b-instruct",
        aliases=("qwen2.5-1.5b", "qwen-1.5b", "Qwen/Qwen2.5-1.5B-Instruct-GGUF"),
        kind="text",
        engine="llamacpp",
        repo_id="Qwen/Qwen2.5-1.5B-Instruct-GGUF",
        files=("qwen2.5-1.5b-instruct-q4_k_m.gguf",),
        size_bytes=1_120_000_000,
        license="apache-2.0",
        description="Qwen2.5 1.5B chat, Q4_K_M: noticeably better than 0.5B, still fine on a laptop CPU.",
        defaults={"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repeat_penalty": 1.05},
        architecture="qwen2",
        languages=QWEN_LANGUAGES,
    ),
)


class NotInCatalog(ModelNotFound):
    """A name that is neither an id nor an alias of a catalog entry."""

    def __init__(self, name: str, entries: tuple[CatalogEntry, ...] = CATALOG):
        super().__init__(name)
        listing = ", ".join(f"{e.id} ({e.kind}, ~{e.size_bytes / 1e9:.1f} GB)" for e in entries)
        self.message = f"'{name}' is not in the model catalog; known: {listing}"
        self.args = (self.message,)


def find(name: str) -> CatalogEntry:
    """The catalog entry whose id or alias is ``name`` (case-insensitive); raises NotInCatalog."""
    wanted = name.strip().lower()
    for entry in CATALOG:
        if wanted == entry.id.lower() or wanted in (alias.lower() for alias in entry.aliases):
            return entry
    raise NotInCatalog(name)
