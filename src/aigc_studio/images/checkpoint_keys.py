"""Stable Diffusion checkpoint key layouts: diffusers -> original (CompVis / A1111) conversion, and
telling a checkpoint's architecture from its keys and shapes — the studio's one architecture detector,
used by the engine's single-file loading, by ``registry.add`` (what a model can do) and by the A1111
import.

diffusers ships only the original -> diffusers direction (``loaders/single_file_utils.convert_ldm_*``);
tests check that it maps ``to_original_checkpoint``'s output back exactly. Detection reads a
``.safetensors`` file's JSON header only (no torch, no weights), so adding or scanning models stays quick.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from .sd_configs import REFERENCE_ARCHS

if TYPE_CHECKING:
    import torch

__all__ = [
    "arch_in_channels",
    "checkpoint_shapes",
    "detect_architecture",
    "safetensors_header",
    "to_original_checkpoint",
]


def _unet_prefixes(config) -> list[tuple[str, str]]:
    """(diffusers prefix, original prefix) for every block of a UNet2DConditionModel config."""
    per_level = config["layers_per_block"] + 1  # resnets per level in the original; +1 is the down/upsampler
    prefixes = [
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("add_embedding.linear_1.", "label_emb.0.0."),
        ("add_embedding.linear_2.", "label_emb.0.2."),
        ("conv_in.", "input_blocks.0.0."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    levels = len(config["down_block_types"])
    for level, block_type in enumerate(config["down_block_types"]):
        for j in range(config["layers_per_block"]):
            index = 1 + level * per_level + j
            prefixes.append((f"down_blocks.{level}.resnets.{j}.", f"input_blocks.{index}.0."))
            if "CrossAttn" in block_type:
                prefixes.append((f"down_blocks.{level}.attentions.{j}.", f"input_blocks.{index}.1."))
        if level < levels - 1:
            index = 1 + level * per_level + config["layers_per_block"]
            prefixes.append((f"down_blocks.{level}.downsamplers.0.conv.", f"input_blocks.{index}.0.op."))
    for level, block_type in enumerate(config["up_block_types"]):
        has_attention = "CrossAttn" in block_type
        for j in range(per_level):
            index = level * per_level + j
            prefixes.append((f"up_blocks.{level}.resnets.{j}.", f"output_blocks.{index}.0."))
            if has_attention:
                prefixes.append((f"up_blocks.{level}.attentions.{j}.", f"output_blocks.{index}.1."))
        if level < levels - 1:
            index = level * per_level + per_level - 1
            prefixes.append((f"up_blocks.{level}.upsamplers.0.", f"output_blocks.{index}.{2 if has_attention else 1}."))
    return prefixes


_UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}


def _vae_prefixes(config) -> list[tuple[str, str]]:
    """(diffusers prefix, original prefix) for every block of an AutoencoderKL config."""
    levels = len(config["down_block_types"])
    prefixes = [
        (f"{part}.{name}.", f"{part}.{name}.") for part in ("encoder", "decoder") for name in ("conv_in", "conv_out")
    ]
    prefixes += [("quant_conv.", "quant_conv."), ("post_quant_conv.", "post_quant_conv.")]
    for part in ("encoder", "decoder"):
        prefixes += [
            (f"{part}.conv_norm_out.", f"{part}.norm_out."),
            (f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1."),
            (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2."),
            (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."),
        ]
    for level in range(levels):
        for j in range(config["layers_per_block"]):
            prefixes.append((f"encoder.down_blocks.{level}.resnets.{j}.", f"encoder.down.{level}.block.{j}."))
        # the original decoder counts its levels from the bottom
        for j in range(config["layers_per_block"] + 1):
            prefixes.append((f"decoder.up_blocks.{level}.resnets.{j}.", f"decoder.up.{levels - 1 - level}.block.{j}."))
        if level < levels - 1:
            prefixes.append((f"encoder.down_blocks.{level}.downsamplers.0.", f"encoder.down.{level}.downsample."))
            prefixes.append((f"decoder.up_blocks.{level}.upsamplers.0.", f"decoder.up.{levels - 1 - level}.upsample."))
    return prefixes


_VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}


def _rename(state_dict, prefixes, inner_rename, what: str) -> dict[str, torch.Tensor]:
    """Map each key by its longest matching prefix; ``inner_rename(prefix, rest)`` renames inside a block."""
    ordered = sorted(prefixes, key=lambda pair: len(pair[0]), reverse=True)
    out = {}
    for key, tensor in state_dict.items():
        match = next((pair for pair in ordered if key.startswith(pair[0])), None)
        if match is None:
            raise ValueError(f"{what} key {key!r} has no place in the original Stable Diffusion layout")
        new_prefix, rest, tensor = inner_rename(match[0], match[1], key[len(match[0]) :], tensor)
        out[new_prefix + rest] = tensor
    return out


def _unet_inner(prefix, new_prefix, rest, tensor):
    if ".resnets." in prefix:
        head, _, tail = rest.partition(".")
        rest = f"{_UNET_RESNET_NAMES.get(head, head)}.{tail}"
    return new_prefix, rest, tensor


def _vae_inner(prefix, new_prefix, rest, tensor):
    if ".resnets." in prefix:
        rest = rest.replace("conv_shortcut.", "nin_shortcut.")
    elif ".attentions." in prefix:
        head, _, tail = rest.partition(".")
        if head == "to_out":
            tail = tail.removeprefix("0.")
        rest = f"{_VAE_ATTENTION_NAMES[head]}.{tail}"
        if tensor.ndim == 2:  # the original uses 1x1 convolutions for q, k, v and the output projection
            tensor = tensor[:, :, None, None]
    return new_prefix, rest, tensor


def _ddpm_buffers(scheduler_config) -> dict[str, torch.Tensor]:
    """The schedule buffers an original LatentDiffusion checkpoint carries (betas, alphas_cumprod, ...)."""
    import torch

    steps = scheduler_config["num_train_timesteps"]
    start, end = scheduler_config["beta_start"] ** 0.5, scheduler_config["beta_end"] ** 0.5
    betas = torch.linspace(start, end, steps, dtype=torch.float64) ** 2  # "scaled_linear"
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - previous) / (1.0 - alphas_cumprod)
    buffers = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": previous,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * previous.sqrt() / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - previous) * (1.0 - betas).sqrt() / (1.0 - alphas_cumprod),
    }
    return {name: value.float() for name, value in buffers.items()}


_OPEN_CLIP_NAMES = {  # CLIPTextModel (less "text_model.") -> OpenCLIP's text tower, as SD2 files hold it
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.": "ln_final.",
    "encoder.layers.": "transformer.resblocks.",
    ".layer_norm1.": ".ln_1.",
    ".layer_norm2.": ".ln_2.",
    ".self_attn.out_proj.": ".attn.out_proj.",
    ".mlp.fc1.": ".mlp.c_fc.",
    ".mlp.fc2.": ".mlp.c_proj.",
}


def _open_clip_text_encoder(text_encoder) -> dict[str, torch.Tensor]:
    """A CLIPTextModel's weights in OpenCLIP's layout: q/k/v projections stacked into ``attn.in_proj_*``."""
    import torch

    out = {}
    for key, value in text_encoder.state_dict().items():
        key = key.removeprefix("text_model.")
        if key.endswith("position_ids"):
            continue
        for old, new in _OPEN_CLIP_NAMES.items():
            key = key.replace(old, new)
        out[key] = value
    for i in range(text_encoder.config.num_hidden_layers):
        block = f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            parts = [out.pop(f"{block}self_attn.{name}_proj.{kind}") for name in "qkv"]
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(parts)
    # Unused by SD (it conditions on the last layer's tokens, not the pooled projection), but real files
    # carry it and diffusers reads the width to split in_proj by from its first dimension.
    out["text_projection"] = torch.eye(text_encoder.config.hidden_size)
    return out


def to_original_checkpoint(pipe, open_clip: bool = False) -> dict[str, torch.Tensor]:
    """Return an SD1.x/SD2.x pipeline's weights as one state dict in the original CompVis / A1111 key layout.

    ``open_clip=True`` writes the text encoder as SD2.x files hold theirs, OpenCLIP's layout under
    ``cond_stage_model.model.`` (only the layers the pipeline has: a real SD2 file also carries the last
    one, which SD2 skips). Otherwise it is SD1.x's ``cond_stage_model.transformer.text_model.``.
    """
    import torch

    if pipe.unet.config.addition_embed_type is not None:
        raise ValueError("only SD1.x/SD2.x-style pipelines (one text encoder) can be written as an original checkpoint")
    checkpoint = {}
    unet = _rename(pipe.unet.state_dict(), _unet_prefixes(pipe.unet.config), _unet_inner, "UNet")
    checkpoint.update({f"model.diffusion_model.{key}": value for key, value in unet.items()})
    vae = _rename(pipe.vae.state_dict(), _vae_prefixes(pipe.vae.config), _vae_inner, "VAE")
    checkpoint.update({f"first_stage_model.{key}": value for key, value in vae.items()})
    if open_clip:
        text = _open_clip_text_encoder(pipe.text_encoder)
        checkpoint.update({f"cond_stage_model.model.{key}": value for key, value in text.items()})
    else:
        for key, value in pipe.text_encoder.state_dict().items():
            # transformers >= 5.6 flattened CLIPTextModel (no "text_model." level); the original keeps it
            key = key if key.startswith("text_model.") else f"text_model.{key}"
            checkpoint[f"cond_stage_model.transformer.{key}"] = value
        positions = pipe.text_encoder.config.max_position_embeddings
        checkpoint["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    checkpoint.update(_ddpm_buffers(pipe.scheduler.config))
    return {key: value.detach().contiguous() for key, value in checkpoint.items()}


_MAX_HEADER = 100 * 1024 * 1024  # a safetensors header past this is not one to parse


def safetensors_header(path: str | Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """A ``.safetensors`` file's tensor shapes by key and its ``__metadata__``, from its JSON header
    alone; ValueError if the file is not one."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path.name} is not a safetensors file (shorter than its header length)")
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= _MAX_HEADER:
            raise ValueError(f"{path.name} is not a safetensors file (header length {length})")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path.name} is not a safetensors file (its header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name} is not a safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    shapes = {
        key: tuple(entry["shape"])
        for key, entry in header.items()
        if isinstance(entry, dict) and isinstance(entry.get("shape"), list)
    }
    return shapes, metadata if isinstance(metadata, dict) else {}


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's key and shape in a ``.safetensors`` or ``.ckpt`` file, without reading the weights.

    A ``.ckpt`` is opened with ``weights_only=True`` (tensors and plain data only; no code runs).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return safetensors_header(path)[0]
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    checkpoint = checkpoint.get("state_dict", checkpoint)
    return {key: tuple(value.shape) for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}


_UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
# The UNet's input channels: 4 latents; + 4 of the input image for InstructPix2Pix; + 5 (masked image
# and mask) to inpaint. An architecture's name ends with the suffix of its channels.
_CHANNEL_SUFFIXES = {4: "", 9: "-inpainting", 8: "-pix2pix"}


def arch_in_channels(arch: str) -> int:
    """The UNet input channels of a ``detect_architecture`` answer (4, 8 or 9)."""
    return next((n for n, suffix in _CHANNEL_SUFFIXES.items() if suffix and arch.endswith(suffix)), 4)


def _sd2_predicts_v(path: Path, prediction_type: str | None) -> bool:
    """Whether an SD2.x checkpoint is a v-prediction (768-v) model; the rule is in ``detect_architecture``."""
    if prediction_type is not None:
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
        return prediction_type == "v_prediction"
    yaml = path.with_suffix(".yaml")
    if yaml.is_file():  # A1111's config beside the file: v2-inference-v.yaml sets it, v2-inference.yaml does not
        text = yaml.read_text(encoding="utf-8")
        return re.search(r"^\s*parameterization:\s*[\"']?v[\"']?\s*$", text, re.MULTILINE) is not None
    if path.suffix == ".safetensors":
        metadata = safetensors_header(path)[1]
        if "modelspec.prediction_type" in metadata:  # Stability's ModelSpec: "v" or "epsilon"
            return metadata["modelspec.prediction_type"] in ("v", "v_prediction")
        if "modelspec.architecture" in metadata:  # "stable-diffusion-v2-768-v" or "stable-diffusion-v2-512"
            return metadata["modelspec.architecture"].endswith("-v")
        return True
    # diffusers' rule: the SD2 base checkpoints' training step marks epsilon; any other SD2 file is v
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return checkpoint.get("global_step") != 875000


def detect_architecture(path: str | Path, prediction_type: str | None = None) -> str:
    """Which ``sd_configs.REFERENCE_ARCHS`` entry a user's original-layout checkpoint is.

    SD1.x has CLIP ViT-L under ``cond_stage_model.transformer``; SD2.x has OpenCLIP ViT-H under
    ``cond_stage_model.model``; SDXL base has two text encoders under ``conditioner.embedders.0/1``; the
    UNet's input channels tell a plain model (4) from an inpainting (9) or InstructPix2Pix (8) one.
    Anything else raises ``ValueError`` saying what it looks like.

    SD2.x's keys do not tell the 768 px v-prediction model (``sd21``) from the 512 px epsilon one
    (``sd21-base``): same shapes. The first of these that applies decides:
    ``prediction_type`` (``"v_prediction"`` or ``"epsilon"``, a studio setting); A1111's ``NAME.yaml``
    beside the file (``parameterization: "v"`` means v); a ``.safetensors`` file's ModelSpec metadata
    (``modelspec.prediction_type``, else ``modelspec.architecture`` ending in ``-v``); a ``.ckpt`` file's
    ``global_step`` (875000, the SD2 base models', means epsilon: diffusers' rule); otherwise v-prediction,
    as diffusers assumes. SD2 inpainting models are epsilon. A ``NAME-config/`` folder beside the
    checkpoint skips detection altogether (``DiffusersEngine``).
    """
    path = Path(path)
    shapes = checkpoint_shapes(path)
    if _UNET_CONV_IN not in shapes:
        raise ValueError(f"{path.name} has no Stable Diffusion UNet ({_UNET_CONV_IN} is missing)")
    in_channels = shapes[_UNET_CONV_IN][1]
    has = lambda prefix: any(key.startswith(prefix) for key in shapes)  # noqa: E731
    if has("conditioner.embedders.1."):
        family = "sdxl"
    elif has("conditioner.embedders.0.model."):
        raise ValueError(f"{path.name} looks like an SDXL refiner, which is not supported")
    elif has("cond_stage_model.model."):
        family = "sd2"
    elif has("cond_stage_model.transformer."):
        family = "sd15"
    else:
        raise ValueError(f"{path.name} has no text encoder this studio knows (SD1.x, SD2.x or SDXL)")
    arch = family + _CHANNEL_SUFFIXES.get(in_channels, f"-{in_channels}-channels")
    if arch == "sd2":
        arch = "sd21" if _sd2_predicts_v(path, prediction_type) else "sd21-base"
    if arch not in REFERENCE_ARCHS:
        raise ValueError(
            f"{path.name} is {arch} (UNet with {in_channels} input channels), which has no config here; "
            f"supported: {', '.join(REFERENCE_ARCHS)}"
        )
    return arch
