"""Tiny real Stable Diffusion models: built by the project, loaded as a diffusers folder and as an
original-layout single file with no hub, generating reproducibly on CPU."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # must be set before huggingface_hub is imported

torch = pytest.importorskip("torch", reason="the tiny SD models need the image extras (torch, diffusers)")
pytest.importorskip("diffusers", reason="the tiny SD models need the image extras (torch, diffusers)")

import diffusers.loaders.single_file as single_file_loader  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from diffusers.loaders.single_file_utils import infer_diffusers_model_type  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from tests.tiny_models import (  # noqa: E402
    KINDS,
    build_tiny_sd,
    load_single_file,
    reference_config_dir,
    write_clip_tokenizer,
    write_reference_config_dir,
)

PROMPT = "a photo of a cat, masterpiece, 一只可爱的猫"
ORIGINAL_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model.")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_hub(monkeypatch) -> None:
    """Make any attempt of from_single_file to fetch configs from the hub fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"from_single_file tried the hub: {args} {kwargs}")

    monkeypatch.setattr(single_file_loader, "_download_diffusers_model_config_from_hub", refuse)


def _load_single_file(path, config_dir, **kwargs):
    with pytest.MonkeyPatch.context() as monkeypatch:
        _no_hub(monkeypatch)
        return load_single_file(path, config_dir, **kwargs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def folder_pipe(tiny):
    return StableDiffusionPipeline.from_pretrained(tiny.folder, local_files_only=True)


@pytest.fixture(scope="module")
def single_file_pipe(tiny):
    return _load_single_file(tiny.single_file, tiny.config_dir)


def _txt2img(pipe, seed: int):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=2, height=64, width=64, generator=generator, output_type="np").images


def test_build_writes_folder_single_file_and_weightless_config_dir(tiny):
    assert (tiny.folder / "model_index.json").is_file()
    assert (tiny.folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert sorted(p.name for p in (tiny.folder / "tokenizer").iterdir()) == [
        "merges.txt",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    assert 1_000_000 < tiny.single_file.stat().st_size < 20_000_000
    config_files = [p for p in tiny.config_dir.rglob("*") if p.is_file()]
    assert config_files and all(p.suffix in {".json", ".txt"} for p in config_files)


def test_single_file_has_the_original_sd_layout(tiny):
    checkpoint = load_file(tiny.single_file)
    weights = [key for key in checkpoint if "." in key]
    assert all(key.startswith(ORIGINAL_PREFIXES) for key in weights)
    assert checkpoint["model.diffusion_model.input_blocks.0.0.weight"].shape == (32, 4, 3, 3)
    assert checkpoint["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (64, 64, 1, 1)
    assert "cond_stage_model.transformer.text_model.embeddings.position_ids" in checkpoint
    assert checkpoint["alphas_cumprod"].shape == (1000,)
    assert infer_diffusers_model_type(checkpoint) == "v1"


def test_same_seed_builds_bit_identical_files(tiny, tmp_path):
    again = build_tiny_sd(tmp_path / "again", seed=0)
    other = build_tiny_sd(tmp_path / "other", seed=1)
    assert _sha256(again.single_file) == _sha256(tiny.single_file)
    unet_file = Path("unet") / "diffusion_pytorch_model.safetensors"
    assert _sha256(again.folder / unet_file) == _sha256(tiny.folder / unet_file)
    assert _sha256(other.single_file) != _sha256(tiny.single_file)


def test_folder_and_single_file_load_the_same_weights(folder_pipe, single_file_pipe):
    for name in ("unet", "vae", "text_encoder"):
        expected = getattr(folder_pipe, name).state_dict()
        loaded = getattr(single_file_pipe, name).state_dict()
        assert loaded.keys() == expected.keys(), name
        assert all(torch.equal(loaded[key], expected[key]) for key in expected), name
    assert type(single_file_pipe.scheduler) is type(folder_pipe.scheduler)
    assert single_file_pipe.tokenizer(PROMPT).input_ids == folder_pipe.tokenizer(PROMPT).input_ids


def test_txt2img_from_folder_and_single_file_gives_the_same_pixels(folder_pipe, single_file_pipe):
    from_folder = _txt2img(folder_pipe, seed=0)
    from_file = _txt2img(single_file_pipe, seed=0)
    assert from_folder.shape == (1, 64, 64, 3)
    assert from_file.shape == (1, 64, 64, 3)
    assert abs(from_folder - from_file).max() < 1e-5


def test_same_seed_same_pixels_other_seed_other_pixels(single_file_pipe):
    first = _txt2img(single_file_pipe, seed=0)
    assert (_txt2img(single_file_pipe, seed=0) == first).all()
    assert abs(_txt2img(single_file_pipe, seed=1) - first).mean() > 1e-3


def test_tokenizer_is_clip_style_and_pads_to_77(folder_pipe):
    tokenizer = folder_pipe.tokenizer
    vocab = tokenizer.get_vocab()
    assert vocab["<|startoftext|>"] == len(vocab) - 2 and vocab["<|endoftext|>"] == len(vocab) - 1
    assert len(vocab) == folder_pipe.text_encoder.config.vocab_size
    ids = tokenizer(PROMPT, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert tokenizer.model_max_length == 77 and len(ids) == 77
    assert ids[0] == vocab["<|startoftext|>"]
    # byte-level: any text, Chinese included, encodes and decodes back (CLIP's decoder re-spaces punctuation)
    decoded = tokenizer.decode(tokenizer(PROMPT).input_ids, skip_special_tokens=True)
    assert decoded.replace(" ", "") == PROMPT.replace(" ", "")


@pytest.mark.parametrize(
    "kind, in_channels, model_type", [("pix2pix", 8, "instruct-pix2pix"), ("inpaint", 9, "inpainting")]
)
def test_edit_kinds_load_offline_from_single_file(tmp_path, kind, in_channels, model_type):
    assert kind in KINDS
    model = build_tiny_sd(tmp_path, kind=kind)
    assert infer_diffusers_model_type(load_file(model.single_file)) == model_type
    from_folder = model.pipeline_class.from_pretrained(model.folder, local_files_only=True)
    from_file = _load_single_file(model.single_file, model.config_dir)
    assert type(from_file) is model.pipeline_class
    assert from_file.unet.config.in_channels == in_channels
    expected, loaded = from_folder.unet.state_dict(), from_file.unet.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)


# Parameter counts of the real models (their published sizes), checked without any weights.
REAL_SIZES = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd15-inpainting": {"unet": 859_535_364},
    "sd21": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},  # OpenCLIP-H less its last layer
    "sd21-base": {"unet": 865_910_724, "text_encoder": 340_387_840},
    "sd2-inpainting": {"unet": 865_925_124},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
}


@pytest.mark.parametrize("arch", sorted(REAL_SIZES))
def test_reference_configs_describe_the_real_architectures(tiny, tmp_path, arch):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config_dir = write_reference_config_dir(arch, tmp_path / arch, tiny.folder / "tokenizer")
    index = json.loads((config_dir / "model_index.json").read_text())
    builders = {
        "unet": lambda: UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir / "unet")),
        "vae": lambda: AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir / "vae")),
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir / "text_encoder")),
        "text_encoder_2": lambda: CLIPTextModelWithProjection(
            CLIPTextConfig.from_pretrained(config_dir / "text_encoder_2")
        ),
    }
    for component, size in REAL_SIZES[arch].items():
        with torch.device("meta"):
            model = builders[component]()
        assert index[component][1] == type(model).__name__
        assert sum(p.numel() for p in model.parameters()) == size, component
    assert json.loads((config_dir / "tokenizer" / "tokenizer_config.json").read_text())["model_max_length"] == 77
    if arch == "sdxl":
        assert json.loads((config_dir / "tokenizer_2" / "special_tokens_map.json").read_text())["pad_token"] == "!"


def test_clip_tokenizer_from_open_clip_bpe(tmp_path):
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        pytest.skip("open-clip-torch (installed --no-deps) ships CLIP's BPE file; it is not installed")
    from transformers import CLIPTokenizer

    folder = write_clip_tokenizer(Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz", tmp_path / "clip")
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 49408
    # ids of openai/clip-vit-large-patch14, as every SD1.x/SDXL text encoder expects them
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_reference_config_dir_is_written_once_into_the_cache(tmp_path):
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open-clip-torch (installed --no-deps) ships CLIP's BPE file; it is not installed")
    config_dir = reference_config_dir("sd15-inpainting", tmp_path / "cache")
    assert config_dir == tmp_path / "cache" / "sd15-inpainting"
    assert json.loads((config_dir / "unet" / "config.json").read_text())["in_channels"] == 9
    assert len(json.loads((config_dir / "tokenizer" / "vocab.json").read_text())) == 49408
    written = (config_dir / "model_index.json").stat().st_mtime_ns
    assert reference_config_dir("sd15-inpainting", tmp_path / "cache") == config_dir
    assert (config_dir / "model_index.json").stat().st_mtime_ns == written
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["clip-tokenizer", "sd15-inpainting"]


def test_missing_clip_vocabulary_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(RuntimeError, match="pip install --no-deps open-clip-torch"):
        reference_config_dir("sd15", tmp_path / "cache")
    assert not (tmp_path / "cache" / "sd15").exists()
