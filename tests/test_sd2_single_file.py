"""Stable Diffusion 2.x single files (OpenCLIP ViT-H text encoder under ``cond_stage_model.model.*``):
a tiny real SD2-shaped model loaded offline through the engine, telling the 768-v model from the 512
base, and the reference configs against the real models' sizes."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # must be set before huggingface_hub is imported

torch = pytest.importorskip("torch", reason="SD2 single files need the image extras (torch, diffusers)")
pytest.importorskip("diffusers", reason="SD2 single files need the image extras (torch, diffusers)")

import diffusers.loaders.single_file as single_file_loader  # noqa: E402
import numpy as np  # noqa: E402
from diffusers.loaders.single_file_utils import is_open_clip_model  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from aigc_studio.contracts import ImageRequest  # noqa: E402
from aigc_studio.engines.diffusers_engine import DiffusersEngine  # noqa: E402
from aigc_studio.images.sd_configs import REFERENCE_ARCHS, write_reference_config_dir  # noqa: E402
from tests.tiny_models import build_tiny_sd, detect_architecture  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
OPEN_CLIP_TEXT = "cond_stage_model.model.token_embedding.weight"


@pytest.fixture(scope="module")
def tiny_sd21(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny"), kind="sd21")


def placeholder(path, in_channels=4, metadata=None):
    """Real key names, placeholder tensors: detection reads only names, shapes and metadata."""
    save_file({UNET_IN: torch.zeros(1, in_channels, 1, 1), OPEN_CLIP_TEXT: torch.zeros(1)}, path, metadata=metadata)
    return path


def test_tiny_sd21_file_has_the_sd2_layout(tiny_sd21):
    checkpoint = load_file(tiny_sd21.single_file)
    assert is_open_clip_model(checkpoint)  # diffusers reads its text encoder as OpenCLIP's
    assert not any(key.startswith("cond_stage_model.transformer.") for key in checkpoint)
    assert checkpoint["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"].shape == (96, 32)
    # SD2's transformers project in and out with linear layers, not 1x1 convolutions
    assert checkpoint["model.diffusion_model.input_blocks.1.1.proj_in.weight"].ndim == 2
    assert detect_architecture(tiny_sd21.single_file) == "sd21"


def test_tiny_sd21_single_file_gives_the_folders_pixels_offline(tiny_sd21, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"from_single_file tried the hub: {args} {kwargs}")

    monkeypatch.setattr(single_file_loader, "_download_diffusers_model_config_from_hub", refuse)
    # no config_dir: the engine finds "tiny-sd21-config/" beside "tiny-sd21.safetensors"
    from_file = DiffusersEngine("tiny-sd21-file", tiny_sd21.single_file)
    from_folder = DiffusersEngine("tiny-sd21", tiny_sd21.folder)
    assert from_file.pipeline.scheduler.config.prediction_type == "v_prediction"
    request = ImageRequest(prompt="a photo of a cat", steps=2, width=64, height=64, seed=7, subseed=99)
    file_image = np.asarray(from_file.generate(request, "txt2img").images[0])
    folder_image = np.asarray(from_folder.generate(request, "txt2img").images[0])
    assert file_image.shape == (64, 64, 3)
    assert np.array_equal(file_image, folder_image)


@pytest.mark.parametrize(
    "metadata, arch",
    [
        (None, "sd21"),  # nothing says: v-prediction, as diffusers assumes
        ({"modelspec.prediction_type": "epsilon"}, "sd21-base"),
        ({"modelspec.prediction_type": "v"}, "sd21"),
        ({"modelspec.architecture": "stable-diffusion-v2-512"}, "sd21-base"),
        ({"modelspec.architecture": "stable-diffusion-v2-768-v"}, "sd21"),
    ],
)
def test_sd2_safetensors_prediction_type_from_metadata(tmp_path, metadata, arch):
    assert detect_architecture(placeholder(tmp_path / "sd2.safetensors", metadata=metadata)) == arch


@pytest.mark.parametrize("global_step, arch", [(875000, "sd21-base"), (110000, "sd21"), (None, "sd21")])
def test_sd2_ckpt_prediction_type_from_global_step(tmp_path, global_step, arch):
    path = tmp_path / "sd2.ckpt"
    state = {"state_dict": {UNET_IN: torch.zeros(1, 4, 1, 1), OPEN_CLIP_TEXT: torch.zeros(1)}}
    torch.save({**state, **({"global_step": global_step} if global_step is not None else {})}, path)
    assert detect_architecture(path) == arch


A1111_V_YAML = 'model:\n  params:\n    parameterization: "v"\n'  # as in v2-inference-v.yaml
A1111_EPS_YAML = "model:\n  params:\n    linear_start: 0.00085\n"  # v2-inference.yaml says nothing: epsilon


@pytest.mark.parametrize("yaml_text, arch", [(A1111_V_YAML, "sd21"), (A1111_EPS_YAML, "sd21-base")])
def test_a1111_yaml_beside_the_file_decides(tmp_path, yaml_text, arch):
    checkpoint = placeholder(tmp_path / "sd2.safetensors", metadata={"modelspec.prediction_type": "v"})
    (tmp_path / "sd2.yaml").write_text(yaml_text)
    assert detect_architecture(checkpoint) == arch


def test_the_setting_overrides_what_the_file_says(tmp_path):
    checkpoint = placeholder(tmp_path / "sd2.safetensors", metadata={"modelspec.prediction_type": "v"})
    assert detect_architecture(checkpoint, prediction_type="epsilon") == "sd21-base"
    assert detect_architecture(checkpoint, prediction_type="v_prediction") == "sd21"
    with pytest.raises(ValueError, match="prediction_type must be 'epsilon' or 'v_prediction', got 'v'"):
        detect_architecture(checkpoint, prediction_type="v")
    with pytest.raises(ValueError, match="prediction_type must be"):  # the engine passes it on, before loading
        DiffusersEngine("sd2", checkpoint, config_dir=tmp_path / "cache", prediction_type="sample")


def test_sd2_inpainting_and_unsupported_sd2_kinds(tmp_path):
    assert detect_architecture(placeholder(tmp_path / "inpaint.safetensors", in_channels=9)) == "sd2-inpainting"
    with pytest.raises(ValueError, match=r"sd2-pix2pix .*has no config here"):
        detect_architecture(placeholder(tmp_path / "pix2pix.safetensors", in_channels=8))


def test_sd2_reference_configs(tiny_sd21, tmp_path):
    assert {"sd21", "sd21-base", "sd2-inpainting"} <= set(REFERENCE_ARCHS)
    expected = {
        "sd21": ("DDIMScheduler", "v_prediction", 96),
        "sd21-base": ("PNDMScheduler", "epsilon", 64),
        "sd2-inpainting": ("PNDMScheduler", "epsilon", 64),
    }
    for arch, (scheduler_class, prediction_type, sample_size) in expected.items():
        config_dir = write_reference_config_dir(arch, tmp_path / arch, tiny_sd21.folder / "tokenizer")
        scheduler = json.loads((config_dir / "scheduler" / "scheduler_config.json").read_text())
        assert (scheduler["_class_name"], scheduler["prediction_type"]) == (scheduler_class, prediction_type)
        unet = json.loads((config_dir / "unet" / "config.json").read_text())
        assert (unet["sample_size"], unet["cross_attention_dim"], unet["use_linear_projection"]) == (
            sample_size,
            1024,
            True,
        )
        text_encoder = json.loads((config_dir / "text_encoder" / "config.json").read_text())
        assert (text_encoder["hidden_act"], text_encoder["num_hidden_layers"]) == ("gelu", 23)
        assert json.loads((config_dir / "tokenizer" / "special_tokens_map.json").read_text())["pad_token"] == "!"
