"""Loading single-file Stable Diffusion checkpoints with no hub: ``load_single_file``, and the config
folders it needs (``export_config_dir`` from a diffusers folder; ``reference_config_dir`` for users' real
checkpoints, written once into a cache from the reference configs and CLIP's tokenizer).

Findings on single-file loading without a hub (diffusers 0.42.1, transformers 5.24):

- ``Pipeline.from_single_file(path)`` with no ``config`` guesses the architecture from the keys
  (``single_file_utils.infer_diffusers_model_type``: SD1 → ``stable-diffusion-v1-5/stable-diffusion-v1-5``,
  9 input channels → the inpainting repo, 8 → ``timbrooks/instruct-pix2pix``, SDXL, ...) and downloads
  that repo's ``*.json``/``*.txt`` with ``snapshot_download``. With ``local_files_only=True`` and nothing
  in the HF cache it warns and downloads anyway; with ``original_config=<yaml>`` it goes the "legacy"
  way, which still fetches the tokenizer from ``openai/clip-vit-large-patch14``. Neither works offline.
- What works: ``Pipeline.from_single_file(str(path), config=str(local_dir), local_files_only=True)``.
  A ``config`` that is an existing directory is used as is, with no hub call. Weights then come from the
  file (UNet, VAE, CLIP text encoders, converted on load); only configs come from the directory.
- The directory needs: ``model_index.json``; ``unet/config.json``; ``vae/config.json``;
  ``text_encoder/config.json``; ``scheduler/scheduler_config.json``; ``tokenizer/`` with ``vocab.json``,
  ``merges.txt`` and ``tokenizer_config.json`` (``model_max_length: 77`` matters: without it prompts are
  not padded/truncated to CLIP's 77 positions). SDXL adds ``text_encoder_2/config.json`` and
  ``tokenizer_2/`` (same vocab, ``pad_token "!"``). List ``safety_checker``/``feature_extractor`` as
  ``[null, null]`` in ``model_index.json`` or they need a ``preprocessor_config.json`` too.
- For users' real checkpoints the studio ships these JSON configs for known architectures
  (``write_reference_config_dir``: SD1.x, SD1.x inpainting, InstructPix2Pix, SD2.x 768-v / 512 base /
  inpainting, SDXL base; 2.7 KB of JSON
  for SD1.5, 3.7 KB for SDXL) plus OpenAI's CLIP BPE tokenizer: vocab.json (0.96 MB) and merges.txt
  (0.52 MB), which ``write_clip_tokenizer`` derives exactly from ``bpe_simple_vocab_16e6.txt.gz`` (1.36 MB,
  MIT) that the PyPI package ``open-clip-torch`` ships (install it ``--no-deps``, find it with
  ``find_spec``). Checked: the configs give the real parameter counts, and 2.1 GB SD1.5 / 6.9 GB SDXL
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "CLIP_MAX_LENGTH",
    "END_TOKEN",
    "REFERENCE_ARCHS",
    "SD_SCHEDULER",
    "START_TOKEN",
    "bytes_to_unicode",
    "clip_bpe_file",
    "export_config_dir",
    "load_single_file",
    "reference_config_dir",
    "write_clip_tokenizer",
    "write_reference_config_dir",
    "write_tokenizer_files",
]

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
CLIP_MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable character, printable bytes to themselves."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(kept)
    shifted = 0
    for byte in range(256):
        if byte not in kept:
            kept.append(byte)
            codes.append(256 + shifted)
            shifted += 1
    return {byte: chr(code) for byte, code in zip(kept, codes, strict=True)}


def write_tokenizer_files(
    folder: Path, vocab: dict[str, int], merges: list[tuple[str, str]], pad_token: str = END_TOKEN
) -> None:
    """Write the four files a hub SD tokenizer folder has, in the hub's format."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    (folder / "merges.txt").write_text(merges_text, encoding="utf-8")
    special = {"bos_token": START_TOKEN, "eos_token": END_TOKEN, "unk_token": END_TOKEN, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": CLIP_MAX_LENGTH,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def write_clip_tokenizer(bpe_gz: str | Path, folder: str | Path, pad_token: str = END_TOKEN) -> Path:
    """Write OpenAI CLIP's tokenizer (``openai/clip-vit-large-patch14``, 49408 tokens) into ``folder``.

    ``bpe_gz`` is CLIP's ``bpe_simple_vocab_16e6.txt.gz``, shipped by the PyPI package ``open-clip-torch``
    (``open_clip/``). The vocabulary is built as CLIP's ``SimpleTokenizer`` builds it. SDXL's second
    tokenizer is the same with ``pad_token="!"``.
    """
    with gzip.open(bpe_gz, "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    alphabet = list(bytes_to_unicode().values())
    tokens = [*alphabet, *(symbol + "</w>" for symbol in alphabet), *("".join(m) for m in merges)]
    vocab = {token: i for i, token in enumerate([*tokens, START_TOKEN, END_TOKEN])}
    folder = Path(folder)
    write_tokenizer_files(folder, vocab, merges, pad_token=pad_token)
    return folder


SD_SCHEDULER = {  # stable-diffusion-v1-5's scheduler_config.json, less "clip_sample": false (PNDM ignores it)
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


# ---------------------------------------------------------------------------------------------------
# Configs of real architectures, for users' single-file checkpoints (values of the hub repos' configs).

_SD15_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
_SDXL_UNET = {
    **_SD15_UNET,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
_SD_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
_SDXL_VAE = {**_SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
_CLIP_L = {  # openai/clip-vit-large-patch14's text model; eos_token_id 2 selects the argmax pooling it was trained with
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
_CLIP_BIGG = {  # laion CLIP-ViT-bigG-14's text model, SDXL's second encoder
    **_CLIP_L,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
_OPEN_CLIP_H = {  # laion CLIP-ViT-H-14's text model less its last layer, as SD2 uses it (penultimate layer's tokens)
    **_CLIP_L,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "hidden_act": "gelu",
    "projection_dim": 512,
}
_SD2_UNET = {  # stabilityai/stable-diffusion-2-1-base; the 768-v model differs in sample_size and upcast_attention
    **_SD15_UNET,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "upcast_attention": False,
    "use_linear_projection": True,
}
_SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "sample_max_value": 1.0,
    "skip_prk_steps": True,
}
_SD15_SCHEDULER = {"_class_name": "PNDMScheduler", **SD_SCHEDULER, "clip_sample": False}
_SD2_SCHEDULER = {**_SD15_SCHEDULER, "prediction_type": "epsilon"}
_SD2_V_SCHEDULER = {**_SD15_SCHEDULER, "_class_name": "DDIMScheduler", "prediction_type": "v_prediction"}
_REFERENCE_ARCHS = {
    # arch -> (pipeline class, UNet config, VAE config, scheduler config); SDXL adds the second encoder
    "sd15": ("StableDiffusionPipeline", _SD15_UNET, _SD_VAE, _SD15_SCHEDULER),
    "sd15-inpainting": ("StableDiffusionInpaintPipeline", {**_SD15_UNET, "in_channels": 9}, _SD_VAE, _SD15_SCHEDULER),
    "sd15-pix2pix": (
        "StableDiffusionInstructPix2PixPipeline",
        {**_SD15_UNET, "in_channels": 8},
        _SD_VAE,
        {**_SD15_SCHEDULER, "_class_name": "EulerAncestralDiscreteScheduler"},
    ),
    # SD2.x: OpenCLIP ViT-H text encoder; "sd21" is the 768 px v-prediction model, "sd21-base" the 512 px
    # epsilon one (checkpoint_keys.detect_architecture says which a file is)
    "sd21": (
        "StableDiffusionPipeline",
        {**_SD2_UNET, "sample_size": 96, "upcast_attention": True},
        {**_SD_VAE, "sample_size": 768},
        _SD2_V_SCHEDULER,
    ),
    "sd21-base": ("StableDiffusionPipeline", _SD2_UNET, _SD_VAE, _SD2_SCHEDULER),
    "sd2-inpainting": ("StableDiffusionInpaintPipeline", {**_SD2_UNET, "in_channels": 9}, _SD_VAE, _SD2_SCHEDULER),
    "sdxl": ("StableDiffusionXLPipeline", _SDXL_UNET, _SDXL_VAE, _SDXL_SCHEDULER),
    "sdxl-inpainting": (
        "StableDiffusionXLInpaintPipeline",
        {**_SDXL_UNET, "in_channels": 9},
        _SDXL_VAE,
        _SDXL_SCHEDULER,
    ),
}
REFERENCE_ARCHS = tuple(_REFERENCE_ARCHS)


def write_reference_config_dir(arch: str, config_dir: str | Path, clip_tokenizer_dir: str | Path) -> Path:
    """Write the config folder that ``load_single_file`` needs for a user's real checkpoint of ``arch``.

    ``arch`` is one of ``REFERENCE_ARCHS``. ``clip_tokenizer_dir``
    holds CLIP's tokenizer files (``write_clip_tokenizer``); they are copied, not linked.
    """
    if arch not in _REFERENCE_ARCHS:
        raise ValueError(f"arch must be one of {', '.join(REFERENCE_ARCHS)}, got {arch!r}")
    # Imported here, not at the top: the architecture detector (checkpoint_keys) reads REFERENCE_ARCHS
    # when a model is added, which should not cost the seconds diffusers and transformers take to import.
    import diffusers
    from transformers import CLIPTextConfig

    pipeline_name, unet, vae, scheduler = _REFERENCE_ARCHS[arch]
    config_dir = Path(config_dir)
    version = {"_diffusers_version": diffusers.__version__}

    def write_json(relative: str, data: dict) -> None:
        path = config_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    index = {
        "_class_name": pipeline_name,
        **version,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "scheduler": ["diffusers", scheduler["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    write_json("unet/config.json", {"_class_name": "UNet2DConditionModel", **version, **unet})
    write_json("vae/config.json", {"_class_name": "AutoencoderKL", **version, **vae})
    write_json("scheduler/scheduler_config.json", {**scheduler, **version})
    text_encoder = _OPEN_CLIP_H if arch.startswith("sd2") else _CLIP_L
    CLIPTextConfig(**text_encoder, architectures=["CLIPTextModel"]).save_pretrained(config_dir / "text_encoder")
    shutil.copytree(clip_tokenizer_dir, config_dir / "tokenizer", dirs_exist_ok=True)
    if arch.startswith("sd2"):  # OpenCLIP's tokenizer pads with 0, which is "!" in CLIP's vocabulary
        _set_pad_token(config_dir / "tokenizer", "!")
    if arch.startswith("sdxl"):
        index.update(
            force_zeros_for_empty_prompt=True,
            requires_aesthetics_score=False,
            text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
            tokenizer_2=["transformers", "CLIPTokenizer"],
        )
        config = CLIPTextConfig(**_CLIP_BIGG, architectures=["CLIPTextModelWithProjection"])
        config.save_pretrained(config_dir / "text_encoder_2")
        shutil.copytree(clip_tokenizer_dir, config_dir / "tokenizer_2", dirs_exist_ok=True)
        _set_pad_token(config_dir / "tokenizer_2", "!")
    else:
        index.update(safety_checker=[None, None], requires_safety_checker=False)
    write_json("model_index.json", index)
    return config_dir


def _set_pad_token(tokenizer_dir: Path, pad_token: str) -> None:
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = tokenizer_dir / name
        data = json.loads(path.read_text(encoding="utf-8"))
        data["pad_token"] = pad_token
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def export_config_dir(diffusers_folder: str | Path, config_dir: str | Path) -> Path:
    """Copy a diffusers folder's configs and tokenizer files, not its weights, into ``config_dir``.

    The same files ``from_single_file`` would fetch from the hub (``*.json``, ``*.txt``, ``*.model``).
    """
    diffusers_folder, config_dir = Path(diffusers_folder), Path(config_dir)
    for path in sorted(diffusers_folder.rglob("*")):
        if path.is_file() and path.suffix in {".json", ".txt", ".model"}:
            target = config_dir / path.relative_to(diffusers_folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return config_dir


def load_single_file(path: str | Path, config_dir: str | Path, pipeline_class: type | None = None, **kwargs):
    """Load an original-layout ``.safetensors``/``.ckpt`` into a diffusers pipeline without any hub access.

    ``config_dir`` is a diffusers-layout folder of configs and tokenizer files (``export_config_dir``,
    ``write_reference_config_dir``). ``pipeline_class`` defaults to the one its ``model_index.json``
    names; pass another (e.g. ``StableDiffusionImg2ImgPipeline``) to reuse the same components.
    Other keyword arguments (``dtype``, ...) go to ``from_single_file``.
    """
    config_dir = Path(config_dir)
    if not (config_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{config_dir} has no model_index.json; it must be a diffusers config folder")
    if pipeline_class is None:
        import diffusers

        class_name = json.loads((config_dir / "model_index.json").read_text())["_class_name"]
        pipeline_class = getattr(diffusers, class_name)
    return pipeline_class.from_single_file(str(path), config=str(config_dir), local_files_only=True, **kwargs)


def clip_bpe_file() -> Path:
    """CLIP's ``bpe_simple_vocab_16e6.txt.gz`` from the installed ``open-clip-torch``, found without importing it."""
    spec = importlib.util.find_spec("open_clip")
    path = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise RuntimeError(
            "loading a single-file Stable Diffusion checkpoint needs CLIP's tokenizer vocabulary "
            "(bpe_simple_vocab_16e6.txt.gz), which ships in the PyPI package open-clip-torch; install it with "
            "`pip install --no-deps open-clip-torch`, or pass config_dir= a diffusers config folder for the model"
        )
    return path


def reference_config_dir(arch: str, cache_dir: str | Path) -> Path:
    """Return ``cache_dir/<arch>``, the config folder for a real checkpoint of ``arch``, writing it once.

    CLIP's tokenizer is written once into ``cache_dir/clip-tokenizer`` from ``clip_bpe_file()``. Each
    folder is written under a temporary name and renamed into place, so a half-written one is never used.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / arch
    if (target / "model_index.json").is_file():
        return target
    tokenizer_dir = _write_once(
        cache_dir / "clip-tokenizer", lambda folder: write_clip_tokenizer(clip_bpe_file(), folder)
    )
    return _write_once(target, lambda folder: write_reference_config_dir(arch, folder, tokenizer_dir))


def _write_once(target: Path, write) -> Path:
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        os.replace(staging, target)
    except OSError:
        if not target.is_dir():  # another process renamed its copy into place first: use that one
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
