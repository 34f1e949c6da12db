"""Real diffusers models (tiny, built from the real classes) through every interface: the `webuiapi`
client against a live server, OpenAI's image endpoint, and the `aigc` commands; and catalog models
with fp16 weights pulled from a (fake, loopback) hub, then drawn with."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import DiffusionPipeline
from PIL import Image
from transformers import CLIPImageProcessor

import aigc_studio
from aigc_studio.cli.main import cli
from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest
from aigc_studio.models.catalog import find
from aigc_studio.models.pull import pull_and_register
from aigc_studio.studio import Studio
from tests.tiny_models import build_tiny_sd, build_tiny_sdxl

from .conftest import a1111_server
from .fakehub import FakeHub, isolate_huggingface_hub, write_safetensors

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
    # Everything compared leaves out the visible AI mark's corner, drawn again on each result.
    left, top, right, bottom = server.studio.images.list(limit=1)[0]["labels"]["visible"]["box"]
    unmarked = np.ones((64, 64), dtype=bool)
    unmarked[top:bottom, left:right] = False
    assert np.abs(pixels(kept.image) - pixels(source))[unmarked].max() <= 1
    changed = server.api.img2img(images=[source], prompt="snow", denoising_strength=0.9, seed=1, **SMALL)
    assert np.abs(pixels(changed.image) - pixels(source)).mean() > 2
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    painted = server.api.img2img(
        images=[source], mask_image=mask, prompt="a pond", denoising_strength=1.0, mask_blur=0, seed=2, **SMALL
    )
    diff = np.abs(pixels(painted.image) - pixels(source))
    right_half = unmarked.copy()
    right_half[:, :40] = False
    assert diff[right_half].max() == 0 and diff[:, :32].mean() > 2  # right half kept exactly, left repainted
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
    shown = runner.invoke(cli, ["inspect", "--infotext", str(out)]).output
    assert shown.startswith("a fox\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, ") and "Model: tiny" in shown
    jpg = tmp_path / "fox2.jpg"
    r = runner.invoke(cli, ["img2img", str(out), "a fox in snow", "--denoise", "0.5", "--steps", "2", "-o", str(jpg)])
    assert r.exit_code == 0, r.output
    assert "Denoising strength: 0.5" in runner.invoke(cli, ["inspect", "--infotext", str(jpg)]).output


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


# -- catalog models with fp16 weights, pulled from the hub -------------------------------------------


def _save_fp16(source: Path, repo: Path) -> Path:
    """``source`` saved as a hub repo of an fp16 variant: its weights exist only as ``*.fp16.safetensors``."""
    pipe = DiffusionPipeline.from_pretrained(source, local_files_only=True, dtype=torch.float16)
    pipe.save_pretrained(repo, variant="fp16", safe_serialization=True)
    for tokenizer in ("tokenizer", "tokenizer_2"):  # the hand-written tokenizer files, as the source has them
        if (source / tokenizer).is_dir():
            shutil.rmtree(repo / tokenizer)
            shutil.copytree(source / tokenizer, repo / tokenizer)
    return repo


@pytest.fixture(scope="module")
def fp16_repos(tmp_path_factory, tiny):
    """Hub repos shaped like the catalog's fp16 entries, holding tiny models: {repo id: (folder, fp32 original)}."""
    root = tmp_path_factory.mktemp("fp16-hub")
    sdxl = build_tiny_sdxl(root / "originals")
    sd15 = _save_fp16(tiny["sd15"].folder, root / "sd15")
    # As stable-diffusion-v1-5 lists them: a feature extractor, and a safety checker that is never pulled.
    CLIPImageProcessor().save_pretrained(sd15 / "feature_extractor")
    (sd15 / "safety_checker").mkdir()
    (sd15 / "safety_checker" / "config.json").write_text("{}")
    write_safetensors(sd15 / "safety_checker" / "model.fp16.safetensors", {"w": 1000})
    index = json.loads((sd15 / "model_index.json").read_text())
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    (sd15 / "model_index.json").write_text(json.dumps(index))
    return {
        "stabilityai/sd-turbo": (_save_fp16(tiny["sd15"].folder, root / "sd-turbo"), tiny["sd15"].folder),
        "stabilityai/sdxl-turbo": (_save_fp16(sdxl, root / "sdxl-turbo"), sdxl),
        "stable-diffusion-v1-5/stable-diffusion-v1-5": (sd15, tiny["sd15"].folder),
    }


@pytest.fixture
def fp16_hub(fp16_repos, tmp_path, monkeypatch):
    left_loopback = isolate_huggingface_hub(monkeypatch, tmp_path / "hf-home")
    with FakeHub({repo_id: folder for repo_id, (folder, _) in fp16_repos.items()}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub
    assert left_loopback == [], f"tried to reach {left_loopback}"


def _folder_sha256(folder: Path) -> str:
    """The studio's documented hash of a diffusers folder, computed here independently."""
    weights = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*.safetensors")
        if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    listing = "".join(f"{hashlib.sha256((folder / w).read_bytes()).hexdigest()}  {w}\n" for w in weights)
    return hashlib.sha256(listing.encode()).hexdigest()


FOX = dict(prompt="a red fox", seed=3, steps=3, width=64, height=64, cfg_scale=5.0, sampler_name="Euler a")


def test_sd_turbo_pulled_by_aigc_models_pull_draws_through_the_service_and_sdapi(fp16_hub, fp16_repos, aigc_home):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(aigc_studio.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    pulled = subprocess.run(
        [sys.executable, "-m", "aigc_studio", "models", "pull", "sd-turbo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    folder = aigc_home / "models" / "sd-turbo"
    assert pulled.returncode == 0, pulled.stderr
    assert f"pulled sd-turbo (image) to {folder}" in pulled.stdout
    weights = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/*.safetensors"))
    assert weights == [
        "text_encoder/model.fp16.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]
    sha256 = _folder_sha256(folder)

    studio = Studio(load_config(model="echo"))
    try:
        assert studio.registry.resolve("sd-turbo").variant == "fp16"
        studio.registry.add(fp16_repos["stabilityai/sd-turbo"][1], model_id="fp32-original")
        result = studio.images.generate(ImageRequest(model="sd-turbo", **FOX))
        image = result.images[0]
        assert image.image.size == (64, 64)
        assert image.infotext.startswith("a red fox\nSteps: 3, Sampler: Euler a, ")
        assert f"Model hash: {sha256[:10]}, Model: sd-turbo, " in image.infotext
        assert Image.open(image.path).info["parameters"] == image.infotext
        # fp16 weights run upcast to float32 on the CPU: the picture of the float32 original, to a level.
        original = studio.images.generate(ImageRequest(model="fp32-original", **FOX)).images[0]
        assert np.abs(pixels(image.image) - pixels(original.image)).max() <= 2

        with a1111_server(studio) as live:
            listed = {m["model_name"]: m for m in live.api.get_sd_models()}["sd-turbo"]
            assert (listed["title"], listed["hash"], listed["sha256"]) == (
                f"sd-turbo [{sha256[:10]}]",
                sha256[:10],
                sha256,
            )
            assert listed["filename"] == str(folder)
            live.api.util_set_model("sd-turbo")
            answer = live.api.txt2img(**FOX)
            assert (answer.info["sd_model_name"], answer.info["sd_model_hash"]) == ("sd-turbo", sha256[:10])
            assert f"Model hash: {sha256[:10]}, Model: sd-turbo, " in answer.info["infotexts"][0]
            assert (pixels(answer.image) == pixels(image.image)).all()
            assert live.api.png_info(answer.image).parameters["Model hash"] == sha256[:10]
    finally:
        studio.close()


@pytest.mark.parametrize(
    ("entry", "repo_id"),
    [("sdxl-turbo", "stabilityai/sdxl-turbo"), ("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5")],
)
def test_other_fp16_catalog_entries_load_after_a_pull(fp16_hub, fp16_repos, entry, repo_id, aigc_home):
    studio = Studio(load_config(model="echo"))
    try:
        info, fresh = pull_and_register(find(entry), studio.registry, studio.config.models_dir)
        assert fresh and info.variant == "fp16"
        assert not (Path(info.path) / "safety_checker").exists()
        studio.registry.add(fp16_repos[repo_id][1], model_id="fp32-original")
        image = studio.images.generate(ImageRequest(model=entry, **FOX)).images[0]
        original = studio.images.generate(ImageRequest(model="fp32-original", **FOX)).images[0]
        assert f"Model hash: {_folder_sha256(Path(info.path))[:10]}, Model: {entry}, " in image.infotext
        assert np.abs(pixels(image.image) - pixels(original.image)).max() <= 2
    finally:
        studio.close()


def test_a_folder_added_with_only_fp16_weights_loads_without_being_told(fp16_repos, aigc_home):
    """A folder copied from a hub download (`aigc models add`) records no variant: the loader finds it."""
    folder, original = fp16_repos["stabilityai/sd-turbo"]
    studio = Studio(load_config(model="echo"))
    try:
        added = studio.registry.add(folder, model_id="copied")
        assert added.variant is None
        image = studio.images.generate(ImageRequest(model="copied", **FOX)).images[0]
        studio.registry.add(original, model_id="fp32-original")
        reference = studio.images.generate(ImageRequest(model="fp32-original", **FOX)).images[0]
        assert np.abs(pixels(image.image) - pixels(reference.image)).max() <= 2
    finally:
        studio.close()


def test_the_variant_a_model_records_is_the_one_loaded(tiny, tmp_path, aigc_home):
    """A folder with plain weights of one model and fp16 weights of another: the variant picks which runs."""
    other = build_tiny_sd(tmp_path / "other", seed=1).folder
    both = tmp_path / "both"
    shutil.copytree(tiny["sd15"].folder, both)
    fp16 = _save_fp16(other, tmp_path / "other-fp16")
    for weights in fp16.glob("*/*.fp16.safetensors"):
        shutil.copy(weights, both / weights.relative_to(fp16))
    studio = Studio(load_config(model="echo"))
    try:
        studio.registry.add(both, model_id="as-fp16", variant="fp16")
        studio.registry.add(both, model_id="as-plain")
        studio.registry.add(other, model_id="seed-1")
        drawn = {
            name: pixels(studio.images.generate(ImageRequest(model=name, **FOX)).images[0].image)
            for name in ("as-fp16", "as-plain", "seed-1")
        }
    finally:
        studio.close()
    assert np.abs(drawn["as-fp16"] - drawn["seed-1"]).max() <= 2
    assert np.abs(drawn["as-plain"] - drawn["as-fp16"]).mean() > 5
