"""Real diffusers models (tiny, built from the real classes) through every interface: the `webuiapi`
client against a live server, OpenAI's image endpoint, and the `aigc` commands."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aigc_studio.cli.main import cli
from aigc_studio.config import load_config
from aigc_studio.studio import Studio
from tests.tiny_models import build_tiny_sd

from .conftest import a1111_server

SMALL = dict(width=64, height=64, steps=3, cfg_scale=5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-models")
    return {"sd15": build_tiny_sd(out, kind="sd15"), "pix2pix": build_tiny_sd(out / "p2p", kind="pix2pix")}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny):
    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("image-models-home"))
    studio = Studio(load_config(model="echo"))
    studio.registry.add(tiny["sd15"].folder, model_id="tiny-folder")
    studio.registry.add(tiny["sd15"].single_file, model_id="tiny-file")  # as in A1111's models folder
    studio.registry.add(tiny["pix2pix"].folder, model_id="tiny-pix2pix")
    with a1111_server(studio) as live:
        yield live
    studio.close()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_txt2img_same_seed_same_pixels_and_a1111_infotext(server):
    server.api.util_set_model("tiny-folder")
    a = server.api.txt2img(
        prompt="a red (fox:1.3)", negative_prompt="blurry", seed=7, sampler_name="DPM++ 2M", scheduler="Karras", **SMALL
    )
    b = server.api.txt2img(
        prompt="a red (fox:1.3)", negative_prompt="blurry", seed=7, sampler_name="DPM++ 2M", scheduler="Karras", **SMALL
    )
    c = server.api.txt2img(
        prompt="a red (fox:1.3)", negative_prompt="blurry", seed=8, sampler_name="DPM++ 2M", scheduler="Karras", **SMALL
    )
    assert a.image.size == (64, 64)
    assert (pixels(a.image) == pixels(b.image)).all()
    assert (pixels(a.image) != pixels(c.image)).any()
    hash10 = server.studio.registry.model_hash(server.studio.registry.resolve("tiny-folder"))
    assert a.info["infotexts"][0] == (
        "a red (fox:1.3)\nNegative prompt: blurry\nSteps: 3, Sampler: DPM++ 2M, Schedule type: Karras, "
        f"CFG scale: 5, Seed: 7, Size: 64x64, Model hash: {hash10}, Model: tiny-folder, Version: aigc-studio-0.1.0"
    )
    info = server.api.png_info(a.image)
    assert info.parameters["Model hash"] == hash10 and info.parameters["Sampler"] == "DPM++ 2M"


def test_single_file_checkpoint_gives_the_folders_pixels(server):
    server.api.util_set_model("tiny-file")
    from_file = server.api.txt2img(prompt="a house", seed=3, **SMALL)
    server.api.util_set_model("tiny-folder")
    from_folder = server.api.txt2img(prompt="a house", seed=3, **SMALL)
    assert from_file.info["sd_model_name"] == "tiny-file" and from_folder.info["sd_model_name"] == "tiny-folder"
    assert np.abs(pixels(from_file.image) - pixels(from_folder.image)).max() <= 1
    titles = [m["title"] for m in server.api.get_sd_models()]
    assert any(t.startswith("tiny-file [") for t in titles)


def test_img2img_and_inpaint(server):
    server.api.util_set_model("tiny-folder")
    source = server.api.txt2img(prompt="a field", seed=11, **SMALL).image
    kept = server.api.img2img(images=[source], prompt="a field", denoising_strength=0.0, seed=1, **SMALL)
    assert np.abs(pixels(kept.image) - pixels(source)).max() <= 1
    changed = server.api.img2img(images=[source], prompt="snow", denoising_strength=0.9, seed=1, **SMALL)
    assert np.abs(pixels(changed.image) - pixels(source)).mean() > 2
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    painted = server.api.img2img(
        images=[source], mask_image=mask, prompt="a pond", denoising_strength=1.0, mask_blur=0, seed=2, **SMALL
    )
    diff = np.abs(pixels(painted.image) - pixels(source))
    assert diff[:, 40:].max() == 0 and diff[:, :32].mean() > 2  # right half kept exactly, left repainted
    assert "Mask blur" not in painted.info["infotexts"][0]  # A1111 writes no blur of 0


def test_instruction_edit_through_img2img_with_a_pix2pix_model(server):
    server.api.util_set_model("tiny-pix2pix")
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    edited = server.api.img2img(images=[source], prompt="make it blue", image_cfg_scale=1.5, seed=4, **SMALL)
    assert edited.image.size == (64, 64) and "Image CFG scale: 1.5" in edited.info["infotexts"][0]


def test_interrupt_during_a_real_generation(server):
    server.api.util_set_model("tiny-folder")
    result = {}
    t = threading.Thread(
        target=lambda: result.setdefault(
            "r", server.api.txt2img(prompt="long", seed=5, width=64, height=64, steps=150, n_iter=2)
        )
    )
    t.start()
    deadline = time.time() + 60
    while server.api.get_progress()["state"]["sampling_step"] < 2:
        assert time.time() < deadline
        time.sleep(0.02)
    server.api.interrupt()
    t.join(60)
    r = result["r"]
    assert r.info["interrupted"] is True and len(r.images) == 1  # the half-done first batch, no second


def test_cli_image_and_inspect(server, tiny, aigc_home, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["models", "add", str(tiny["sd15"].folder), "--name", "tiny"]).exit_code == 0
    out = tmp_path / "fox.png"
    r = runner.invoke(
        cli,
        [
            "image",
            "a fox",
            "-n",
            "blurry",
            "--steps",
            "2",
            "--size",
            "64x64",
            "--seed",
            "9",
            "--sampler",
            "Euler",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (64, 64)
    shown = runner.invoke(cli, ["inspect", str(out)]).output
    assert shown.startswith("a fox\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, ") and "Model: tiny" in shown
    jpg = tmp_path / "fox2.jpg"
    r = runner.invoke(cli, ["img2img", str(out), "a fox in snow", "--denoise", "0.5", "--steps", "2", "-o", str(jpg)])
    assert r.exit_code == 0, r.output
    assert "Denoising strength: 0.5" in runner.invoke(cli, ["inspect", str(jpg)]).output


def test_a_checkpoint_that_cannot_load_is_a_clear_4xx(server, tmp_path):
    import httpx

    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(len(b'{"x": 1}').to_bytes(8, "little") + b'{"x": 1}')
    server.studio.registry.add(bad, model_id="broken")
    r = httpx.post(
        server.url + "/sdapi/v1/txt2img",
        json={
            "prompt": "x",
            "width": 64,
            "height": 64,
            "steps": 1,
            "override_settings": {"sd_model_checkpoint": "broken"},
        },
        timeout=60,
    )
    assert r.status_code == 422 and "cannot load image model 'broken'" in r.json()["detail"]
    server.api.util_set_model("tiny-folder")
    assert server.api.txt2img(prompt="still works", seed=1, **SMALL).image.size == (64, 64)
