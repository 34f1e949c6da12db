"""Tiny but real Stable Diffusion models for tests and benchmarks (never shipped in the package).

``build_tiny_sd`` builds a pipeline from the real diffusers/transformers classes at tiny size (UNet
32/64 channels, VAE 32/32/64/64 with SD's 8× downsampling, CLIP text encoder 32-d with 3 layers, a
byte-level BPE tokenizer trained here on a built-in English/Chinese word list) and writes it the two
ways a user's model arrives:

- ``<name>/``: a diffusers folder (``save_pretrained``, safetensors);
- ``<name>.safetensors``: one checkpoint in the original CompVis / A1111 key layout
  (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.text_model.*``
  plus the DDPM schedule buffers), as found in A1111's ``models/Stable-diffusion``;
- ``<name>-config/``: the configs and tokenizer files only, which is what loading the single file needs.

``build_tiny_sd(kind="sd21")`` builds an SD2.x-shaped model: its single file holds the text encoder in
OpenCLIP's layout (``cond_stage_model.model.*``) and it predicts v, as SD 2.1 768 does.

``build_tiny_sdxl`` builds an SDXL pipeline (two text encoders, micro-conditioning) the same way, as a
diffusers folder only. How single files load offline, and the configs of the real architectures, are
in ``sd_configs``; the original key layout is in ``checkpoint_keys``. Their public names are
importable from here too.
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from aigc_studio.engines import diffusers_setup  # noqa: F401  (first: see there)

# isort: split
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from aigc_studio.images.checkpoint_keys import detect_architecture, to_original_checkpoint
from aigc_studio.images.sd_configs import (
    CLIP_MAX_LENGTH,
    END_TOKEN,
    REFERENCE_ARCHS,
    SD_SCHEDULER,
    START_TOKEN,
    bytes_to_unicode,
    export_config_dir,
    load_single_file,
    reference_config_dir,
    write_clip_tokenizer,
    write_reference_config_dir,
    write_tokenizer_files,
)

__all__ = [
    "KINDS",
    "REFERENCE_ARCHS",
    "TinyModel",
    "build_tiny_sd",
    "build_tiny_sdxl",
    "detect_architecture",
    "export_config_dir",
    "load_single_file",
    "reference_config_dir",
    "to_original_checkpoint",
    "train_byte_bpe",
    "write_clip_tokenizer",
    "write_reference_config_dir",
]

# kind -> (folder/file name, pipeline class, UNet input channels)
_KIND_SPECS = {
    "sd15": ("tiny-sd", StableDiffusionPipeline, 4),
    "pix2pix": ("tiny-sd-pix2pix", StableDiffusionInstructPix2PixPipeline, 8),
    "inpaint": ("tiny-sd-inpainting", StableDiffusionInpaintPipeline, 9),
    "sd21": ("tiny-sd21", StableDiffusionPipeline, 4),  # SD2.x 768-v: OpenCLIP-layout text encoder, v-prediction
}
KINDS = tuple(_KIND_SPECS)

# Words a Stable Diffusion prompt is made of, English and Chinese, to learn the tiny tokenizer's merges.
_WORDS = """
a photo of the cat dog girl boy woman man portrait landscape city street night sunset sunrise forest
mountain river lake ocean sea beach sky cloud clouds rain snow winter summer spring autumn flower flowers
tree trees garden house castle tower bridge car train robot dragon astronaut horse bird fish butterfly
masterpiece best quality high highly detailed detail ultra realistic photorealistic cinematic lighting
soft light dramatic studio painting oil watercolor sketch drawing illustration anime style digital art
concept fantasy science fiction cyberpunk steampunk futuristic ancient chinese japanese ink wash
beautiful cute happy smiling sitting standing running flying wearing dress hat red blue green yellow
white black golden silver purple pink orange colorful bright dark shadow reflection water fire glass
wooden stone metal sharp focus depth of field bokeh wide angle close up full body face eyes hair long
short 4k 8k hdr trending on artstation by greg rutkowski and with in on at from under over
negative lowres bad anatomy hands text error missing fingers extra digit fewer cropped worst low
jpeg artifacts signature watermark username blurry ugly duplicate deformed disfigured mutated
remove the people make it turn into add replace background sky change color night day
一只 可爱 的 猫 狗 女孩 男孩 风景 山水画 水墨画 油画 水彩 插画 高清 杰作 最佳质量 细节 日落 海边 森林
雪山 花朵 城市 夜晚 星空 中国风 赛博朋克 未来 古代 宫殿 人工智能 生成 照片 写实 动漫 风格 移除 人物 背景
"""


def train_byte_bpe(text: str = _WORDS, num_merges: int = 400) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn a CLIP-style byte-level BPE on ``text``: returns ``(vocab, merges)`` in CLIP's id order.

    Ids: the 256 byte symbols, the same with ``</w>`` (end of word), one token per merge, then
    ``<|startoftext|>`` and ``<|endoftext|>`` last, as in OpenAI's CLIP vocabulary. Deterministic:
    ties between pairs are broken by the pair itself.
    """
    byte_symbol = bytes_to_unicode()
    # The same split as CLIPTokenizer's pre-tokenizer: letter runs, single digits, punctuation runs.
    words = Counter(re.findall(r"[^\W\d_]+|\d|[^\w\s]+", text.lower()))
    corpus = {}
    for word, count in words.items():
        symbols = [byte_symbol[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        corpus[tuple(symbols)] = count

    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in corpus.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged = {}
        for symbols, count in corpus.items():
            out, i = [], 0
            while i < len(symbols):
                if symbols[i : i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] = count
        corpus = merged

    alphabet = list(byte_symbol.values())
    tokens = alphabet + [symbol + "</w>" for symbol in alphabet] + ["".join(pair) for pair in merges]
    vocab: dict[str, int] = {}
    for token in [*tokens, START_TOKEN, END_TOKEN]:
        vocab.setdefault(token, len(vocab))  # two merges can spell the same token; keep the first id
    return vocab, merges


# ---------------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class TinyModel:
    """Where a tiny model was written. ``config_dir`` holds only what ``load_single_file`` needs."""

    kind: str
    folder: Path
    single_file: Path
    config_dir: Path
    pipeline_class: type
    seed: int


def _tiny_pipeline(kind: str, seed: int):
    _, pipeline_class, in_channels = _KIND_SPECS[kind]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,  # × the VAE's 8: 64 px by default
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
        # SD2.x: heads per level, linear projections in and out of each transformer, attention in float32
        **(
            {"attention_head_dim": (2, 4), "use_linear_projection": True, "upcast_attention": True}
            if kind == "sd21"
            else {"attention_head_dim": 8}
        ),
    )
    vae = _tiny_vae(seed)
    vocab, merges = train_byte_bpe()
    torch.manual_seed(seed)
    # OpenCLIP's text tower uses exact GELU where OpenAI's CLIP uses its quick approximation
    text_encoder = CLIPTextModel(_tiny_clip_config(vocab, **({"hidden_act": "gelu"} if kind == "sd21" else {})))
    return pipeline_class, unet, vae, text_encoder, (vocab, merges)


def _tiny_vae(seed: int, scaling_factor: float = 0.18215) -> AutoencoderKL:
    torch.manual_seed(seed)
    # Four levels, so that latents are 1/8 of the image as in real SD (64 px -> 8×8): a 1/2-size latent
    # made every UNet step 4-7x slower than it needs to be.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def _tiny_clip_config(vocab: dict[str, int], **overrides) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        **{
            "num_attention_heads": 4,
            "max_position_embeddings": CLIP_MAX_LENGTH,
            "hidden_act": "quick_gelu",
            "projection_dim": 32,
            "bos_token_id": vocab[START_TOKEN],
            "eos_token_id": vocab[END_TOKEN],
            "pad_token_id": vocab[END_TOKEN],
            **overrides,
        },
    )


def build_tiny_sd(out_dir: str | Path, seed: int = 0, kind: str = "sd15") -> TinyModel:
    """Build a tiny Stable Diffusion model of ``kind`` (one of ``KINDS``) under ``out_dir``.

    Writes a diffusers folder, the same weights as one original-layout ``.safetensors`` file, and a
    config-only folder for loading that file offline. The same ``seed`` gives bit-identical files.
    Kinds: ``sd15``, ``pix2pix``, ``inpaint``, and ``sd21``, which is SD2.x-shaped: its file holds the
    text encoder in OpenCLIP's layout (``cond_stage_model.model.*``), its scheduler predicts v, and its
    tokenizer pads with ``"!"``.
    """
    if kind not in _KIND_SPECS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    name = _KIND_SPECS[kind][0]
    out_dir = Path(out_dir)
    folder, single_file, config_dir = out_dir / name, out_dir / f"{name}.safetensors", out_dir / f"{name}-config"
    for path in (folder, config_dir):
        shutil.rmtree(path, ignore_errors=True)

    with torch.random.fork_rng(devices=[]):  # seed the weights without resetting the caller's RNG
        pipeline_class, unet, vae, text_encoder, (vocab, merges) = _tiny_pipeline(kind, seed)
    pad_token = "!" if kind == "sd21" else END_TOKEN
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH, pad_token=pad_token)
    if kind == "sd21":
        scheduler = DDIMScheduler.from_config({**SD_SCHEDULER, "clip_sample": False, "prediction_type": "v_prediction"})
    else:
        scheduler = PNDMScheduler(**SD_SCHEDULER)
    pipe = pipeline_class(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    # Hub SD folders carry vocab.json + merges.txt (no tokenizer.json): write that, the form users have.
    shutil.rmtree(folder / "tokenizer")
    write_tokenizer_files(folder / "tokenizer", vocab, merges, pad_token=pad_token)
    save_file(to_original_checkpoint(pipe, open_clip=kind == "sd21"), single_file, metadata={"format": "pt"})
    export_config_dir(folder, config_dir)
    return TinyModel(kind, folder, single_file, config_dir, pipeline_class, seed)


def build_tiny_sdxl(out_dir: str | Path, seed: int = 0) -> Path:
    """Build a tiny SDXL pipeline (two CLIP text encoders, text-time micro-conditioning) as a diffusers
    folder ``out_dir/tiny-sdxl`` and return it. The same ``seed`` gives bit-identical weights."""
    folder = Path(out_dir) / "tiny-sdxl"
    shutil.rmtree(folder, ignore_errors=True)
    vocab, merges = train_byte_bpe()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8,  # × the VAE's 8: 64 px by default
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 size/crop numbers × 8 + the pooled text
            cross_attention_dim=64,  # both encoders' hidden states side by side
            norm_num_groups=32,
        )
        vae = _tiny_vae(seed, scaling_factor=0.13025)
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(_tiny_clip_config(vocab))
        torch.manual_seed(seed + 1)
        text_encoder_2 = CLIPTextModelWithProjection(_tiny_clip_config(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)
    scheduler = EulerDiscreteScheduler.from_config({**SD_SCHEDULER, "timestep_spacing": "leading"})
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    for name, pad_token in (("tokenizer", END_TOKEN), ("tokenizer_2", "!")):  # SDXL's second tokenizer pads with "!"
        shutil.rmtree(folder / name)
        write_tokenizer_files(folder / name, vocab, merges, pad_token=pad_token)
    return folder
