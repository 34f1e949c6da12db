"""Stable Diffusion checkpoint key layouts: diffusers -> original (CompVis / A1111) conversion, and
telling a checkpoint's architecture from its keys and shapes.

diffusers ships only the original -> diffusers direction (``loaders/single_file_utils.convert_ldm_*``);
tests check that it maps ``to_original_checkpoint``'s output back exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from .sd_configs import REFERENCE_ARCHS

__all__ = ["checkpoint_shapes", "detect_architecture", "to_original_checkpoint"]


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


def to_original_checkpoint(pipe) -> dict[str, torch.Tensor]:
    """Return an SD1.x pipeline's weights as one state dict in the original CompVis / A1111 key layout."""
    if pipe.unet.config.addition_embed_type is not None:
        raise ValueError("only SD1.x-style pipelines (one CLIP text encoder) can be written as an SD1 checkpoint")
    checkpoint = {}
    unet = _rename(pipe.unet.state_dict(), _unet_prefixes(pipe.unet.config), _unet_inner, "UNet")
    checkpoint.update({f"model.diffusion_model.{key}": value for key, value in unet.items()})
    vae = _rename(pipe.vae.state_dict(), _vae_prefixes(pipe.vae.config), _vae_inner, "VAE")
    checkpoint.update({f"first_stage_model.{key}": value for key, value in vae.items()})
    for key, value in pipe.text_encoder.state_dict().items():
        # transformers >= 5.6 flattened CLIPTextModel (no "text_model." level); the original keeps it
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        checkpoint[f"cond_stage_model.transformer.{key}"] = value
    positions = pipe.text_encoder.config.max_position_embeddings
    checkpoint["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    checkpoint.update(_ddpm_buffers(pipe.scheduler.config))
    return {key: value.detach().contiguous() for key, value in checkpoint.items()}


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's key and shape in a ``.safetensors`` or ``.ckpt`` file, without reading the weights."""
    path = Path(path)
    if path.suffix == ".safetensors":
        with safe_open(path, framework="pt") as file:
            return {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}  # noqa: SIM118
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    checkpoint = checkpoint.get("state_dict", checkpoint)
    return {key: tuple(value.shape) for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}


_UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


def detect_architecture(path: str | Path) -> str:
    """Which ``sd_configs.REFERENCE_ARCHS`` entry a user's original-layout checkpoint is.

    SD1.x has CLIP ViT-L under ``cond_stage_model.transformer``; SDXL base has two text encoders under
    ``conditioner.embedders.0/1``; the UNet's input channels tell a plain model (4) from an inpainting
    (9) or InstructPix2Pix (8) one. Anything else raises ``ValueError`` saying what it looks like.
    """
    shapes = checkpoint_shapes(path)
    if _UNET_CONV_IN not in shapes:
        raise ValueError(f"{Path(path).name} has no Stable Diffusion UNet ({_UNET_CONV_IN} is missing)")
    in_channels = shapes[_UNET_CONV_IN][1]
    has = lambda prefix: any(key.startswith(prefix) for key in shapes)  # noqa: E731
    if has("conditioner.embedders.1."):
        family = "sdxl"
    elif has("conditioner.embedders.0.model."):
        raise ValueError(f"{Path(path).name} looks like an SDXL refiner, which is not supported")
    elif has("cond_stage_model.model."):
        raise ValueError(
            f"{Path(path).name} looks like Stable Diffusion 2.x (OpenCLIP text encoder); as a single file it is "
            "not supported yet: use the model's diffusers folder"
        )
    elif has("cond_stage_model.transformer."):
        family = "sd15"
    else:
        raise ValueError(f"{Path(path).name} has no text encoder this studio knows (SD1.x or SDXL)")
    arch = family + {4: "", 9: "-inpainting", 8: "-pix2pix"}.get(in_channels, f"-{in_channels}-channels")
    if arch not in REFERENCE_ARCHS:
        raise ValueError(
            f"{Path(path).name} is {arch} (UNet with {in_channels} input channels), which has no config here; "
            f"supported: {', '.join(REFERENCE_ARCHS)}"
        )
    return arch
