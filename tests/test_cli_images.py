"""`aigc image`, `img2img`, `inpaint` flags for hires fix, tiling, resize mode and inpaint area, and `aigc
inspect` reading them back, on a tiny real SD model added as a user adds one."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from aigc_studio.cli.main import cli


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("diffusers", reason="the diffusers engine needs the image extras (torch, diffusers)")
    from tests.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny"))


def aigc(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def inspect(path) -> dict:
    return json.loads(aigc("inspect", "--fields", str(path)).output)


def test_hires_tiling_resize_and_inpaint_area_from_the_terminal(aigc_home, tmp_path, tiny):
    aigc("models", "add", str(tiny.folder), "--name", "tiny")
    small = ["--steps", "1", "--seed", "3", "--sampler", "Euler"]
    drawn = tmp_path / "fox.png"
    hires = ["--enable-hr", "--hr-scale", "1.5", "--hr-upscaler", "Lanczos", "--hr-second-pass-steps", "1"]
    aigc("image", "a fox", *small, "--size", "64x64", *hires, "--denoise", "0.5", "--tiling", "-o", str(drawn))
    assert Image.open(drawn).size == (96, 96)
    fields = inspect(drawn)
    assert (fields["enable_hr"], fields["hr_scale"], fields["hr_upscaler"], fields["tiling"]) == (
        True,
        1.5,
        "Lanczos",
        True,
    )
    assert (fields["width"], fields["height"], fields["denoising_strength"]) == (64, 64, 0.5)

    picture = tmp_path / "wide.png"
    Image.fromarray((np.random.default_rng(0).random((80, 96, 3)) * 255).astype(np.uint8)).save(picture)
    fitted = tmp_path / "fitted.png"
    aigc("img2img", str(picture), "a fox", *small, "--size", "64x64", "--resize-mode", "2", "-o", str(fitted))
    assert Image.open(fitted).size == (64, 64) and inspect(fitted)["resize_mode"] == 2

    mask = tmp_path / "mask.png"
    painted = Image.new("L", (96, 80), 0)
    painted.paste(255, (60, 30, 76, 46))
    painted.save(mask)
    repainted = tmp_path / "repainted.png"
    area = [
        "--inpaint-full-res",
        "--inpaint-full-res-padding",
        "8",
        "--inpainting-mask-invert",
        "1",
        "--mask-blur",
        "2",
    ]
    aigc("inpaint", str(picture), "a pond", "--mask", str(mask), *small, "--size", "64x64", *area, "-o", str(repainted))
    assert Image.open(repainted).size == (96, 80)  # "Only masked" keeps the input's size
    fields = inspect(repainted)
    assert (fields["inpaint_full_res"], fields["inpaint_full_res_padding"], fields["inpainting_mask_invert"]) == (
        True,
        8,
        1,
    )
    assert fields["mask_blur"] == 2


def test_ngms_from_the_terminal_is_recorded_and_read_back(aigc_home, tmp_path, tiny):
    aigc("models", "add", str(tiny.folder), "--name", "tiny")
    small = ["--steps", "4", "--seed", "3", "--size", "64x64"]
    plain, skipped = tmp_path / "plain.png", tmp_path / "skipped.png"
    aigc("image", "a fox", *small, "-o", str(plain))
    aigc("image", "a fox", *small, "--ngms", "15", "--s-min-uncond-all", "-o", str(skipped))
    fields = inspect(skipped)
    assert (fields["s_min_uncond"], fields["s_min_uncond_all"]) == (15.0, True)
    assert "s_min_uncond" not in inspect(plain)
    assert np.asarray(Image.open(plain)).tobytes() != np.asarray(Image.open(skipped)).tobytes()
    result = CliRunner().invoke(cli, ["image", "x", "--ngms", "16"])
    assert result.exit_code != 0 and "s_min_uncond" in result.output and "15" in result.output, result.output
    assert "--ngms" not in CliRunner().invoke(cli, ["edit", "--help"]).output  # A1111 never skips in edits


def test_a_bad_flag_value_names_what_is_allowed(aigc_home):
    result = CliRunner().invoke(cli, ["image", "x", "--hr-upscaler", "ESRGAN"])
    assert result.exit_code == 2 and "unknown hires upscaler 'ESRGAN'; valid: Latent" in result.output
    result = CliRunner().invoke(cli, ["img2img", "--help"])
    assert "--resize-mode" in result.output and "--enable-hr" not in result.output
