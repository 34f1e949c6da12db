"""The image engine's UNet and VAE decoder on OpenVINO (engines/sd_openvino.py), on a tiny real model.

OpenVINO is opt-in (the setting ``image_openvino``): the same seed gives the picture PyTorch gives
(within 1 of 255, as for the other optimizations that keep it), for txt2img, a batch, hires fix, NGMS's
half-batch calls and img2img; seamless tiling and token merging run on PyTorch; the record names what ran;
the converted models are kept on disk and read back by a new engine; a conversion that fails leaves the
engine on PyTorch with one log line.
"""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from aigc_studio.contracts import ImageRequest
from aigc_studio.engines.diffusers_engine import DiffusersEngine
from aigc_studio.engines.sd_openvino import CONVERTING, openvino_version
from aigc_studio.engines.sd_speed import ImageSpeed
from tests.tiny_models import build_tiny_sd

from .conftest import a1111_server, make_studio

SIZE = 64
TOLERANCE = 1  # of 255, any channel of any pixel: OpenVINO's float32 differs from PyTorch's by about 1e-5

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny"), kind="sd15")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def plain(model):
    return DiffusersEngine("tiny-torch", model.folder)


@pytest.fixture(scope="module")
def converted(model, cache):
    """An engine on OpenVINO whose first request has converted the model (once for the module)."""
    engine = DiffusersEngine("tiny-openvino", model.folder, speed=ImageSpeed(openvino=True, openvino_cache=cache))
    phases = []
    result = engine.generate(request(), "txt2img", on_step=lambda info: phases.append((info.phase, info.step)))
    engine.first_phases, engine.first_result = phases, result
    return engine


def request(**fields) -> ImageRequest:
    defaults = {"prompt": "a lighthouse", "steps": 3, "width": SIZE, "height": SIZE, "seed": 11, "subseed": 11}
    return ImageRequest(**{**defaults, **fields})


def images(engine, mode="txt2img", init=None, **fields):
    result = engine.generate(request(**fields), mode, init_image=init)
    return [np.asarray(image, dtype=np.int16) for image in result.images], result.runtime


@pytest.mark.store_free
def test_the_first_request_says_it_prepares_openvino_then_steps_and_records_openvino(converted, cache):
    phases = converted.first_phases
    assert phases[0] == (CONVERTING, 0)  # said before the slow conversion, at step 0
    assert [step for _, step in phases[1:]] == [1, 2, 3] and not any(phase for phase, _ in phases[1:])
    assert converted.first_result.runtime == f"OpenVINO {openvino_version()}"
    [folder] = cache.iterdir()  # one model, converted once, saved whole (no temporary folder left)
    assert sorted(p.name for p in folder.iterdir()) == ["unet.bin", "unet.xml", "vae_decoder.bin", "vae_decoder.xml"]
    assert 'element_type="f16"' not in (folder / "unet.xml").read_text()  # the weights stay float32


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"batch_size": 2, "sampler_name": "DPM++ 2M", "cfg_scale": 5.0},
        {"enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.5},  # a second size on the same model
        {"s_min_uncond": 5.0, "s_min_uncond_all": True},  # half-batch calls
        {"width": 96, "height": 64, "cfg_scale": 1.0},  # one prediction per step
    ],
    ids=["txt2img", "batch", "hires", "ngms", "no-guidance"],
)
@pytest.mark.store_free
def test_openvino_gives_pytorchs_picture_for_the_same_seed(converted, plain, fields):
    ours, runtime = images(converted, **fields)
    theirs, _ = images(plain, **fields)
    assert runtime == f"OpenVINO {openvino_version()}"
    assert len(ours) == len(theirs) == fields.get("batch_size", 1)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() <= TOLERANCE, fields


@pytest.fixture(scope="module")
def two_streams(model, cache, converted):
    """An engine on OpenVINO made with two torch threads: its UNet runs as two streams of one thread, one
    half of each batch on each (the module's other engines have one thread: one stream)."""
    import torch

    torch.set_num_threads(2)
    try:
        return DiffusersEngine("tiny-streams", model.folder, speed=ImageSpeed(openvino=True, openvino_cache=cache))
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize(
    "fields, ran",
    [
        ({}, "all"),  # guidance: two latents, one per stream
        ({"batch_size": 2, "cfg_scale": 5.0}, "all"),  # four latents, two per stream
        ({"s_min_uncond": 5.0, "s_min_uncond_all": True}, "some"),  # NGMS's one-latent calls: PyTorch
        ({"cfg_scale": 1.0}, "none"),  # one latent per call throughout
    ],
    ids=["txt2img", "batch", "ngms", "no-guidance"],
)
@pytest.mark.store_free
def test_two_streams_split_the_batch_keep_pytorchs_picture_and_the_record_counts_the_calls(
    two_streams, plain, fields, ran
):
    ours, runtime = images(two_streams, **fields)
    theirs, _ = images(plain, **fields)
    requests = two_streams._openvino._unet
    assert len(requests) == 2 and requests[0].get_compiled_model().get_property("NUM_STREAMS") == 2
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() <= TOLERANCE, fields
    version = openvino_version()
    if ran == "all":
        assert runtime == f"OpenVINO {version}"
    elif ran == "none":
        assert runtime is None
    else:
        counted = re.fullmatch(
            rf"OpenVINO {re.escape(version)} \((\d+) of (\d+) UNet calls; the rest PyTorch\)", runtime
        )
        assert counted and 0 < int(counted[1]) < int(counted[2]) == 3, runtime


@pytest.mark.store_free
def test_ngms_still_skips_the_negative_half_on_openvino(converted):
    """NGMS wraps OpenVINO's UNet: with it the picture changes as it does on PyTorch."""
    assert np.abs(images(converted, s_min_uncond=5.0, s_min_uncond_all=True)[0][0] - images(converted)[0][0]).mean()
    assert "forward" not in vars(converted.pipeline.unet)  # both are taken off after the request
    assert "forward" not in vars(converted.pipeline.vae.decoder)


@pytest.mark.store_free
def test_img2img_runs_on_openvino_with_pytorchs_picture(converted, plain):
    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    ours, runtime = images(converted, "img2img", init=init, denoising_strength=0.6)
    theirs, _ = images(plain, "img2img", init=init, denoising_strength=0.6)
    assert runtime and np.abs(ours[0] - theirs[0]).max() <= TOLERANCE


@pytest.mark.store_free
@pytest.mark.parametrize("fields", [{"tiling": True}, {"token_merging_ratio": 0.5}], ids=["tiling", "tome"])
def test_what_openvinos_graph_cannot_follow_runs_on_pytorch_and_records_none(converted, plain, fields):
    ours, runtime = images(converted, **fields)
    theirs, _ = images(plain, **fields)
    assert runtime is None
    assert np.array_equal(ours[0], theirs[0])


@pytest.mark.store_free
def test_a_new_engine_reads_the_converted_models_from_the_cache(converted, model, cache, caplog):
    with caplog.at_level(logging.INFO, logger="aigc_studio.engines.sd_openvino"):
        engine = DiffusersEngine("again", model.folder, speed=ImageSpeed(openvino=True, openvino_cache=cache))
        ours, runtime = images(engine)
    assert runtime and np.array_equal(ours[0], images(converted)[0][0])
    assert any("read from its cache" in r.getMessage() for r in caplog.records)
    assert len(list(cache.iterdir())) == 1


@pytest.mark.store_free
def test_a_conversion_that_fails_leaves_pytorch_running_with_one_log_line(model, plain, tmp_path, monkeypatch, caplog):
    import openvino

    def cannot(*args, **kwargs):
        raise RuntimeError("Cannot convert the operation aten::made_up")

    monkeypatch.setattr(openvino, "convert_model", cannot)
    engine = DiffusersEngine("broken", model.folder, speed=ImageSpeed(openvino=True, openvino_cache=tmp_path))
    with caplog.at_level(logging.WARNING, logger="aigc_studio.engines.sd_openvino"):
        ours, runtime = images(engine)
        again, _ = images(engine)  # no second try, no second log line
    assert runtime is None
    assert [r.getMessage() for r in caplog.records] == [
        "OpenVINO could not take the image model, it runs on PyTorch: Cannot convert the operation aten::made_up"
    ]
    assert np.array_equal(ours[0], images(plain)[0][0]) and np.array_equal(again[0], ours[0])
    assert list(tmp_path.iterdir()) == []  # the half-made conversion is gone


def test_the_setting_runs_openvino_and_the_infotext_names_it(model, converted, cache, tmp_path, caplog):
    """``image_openvino`` through the A1111 API: the infotext says what ran the UNet; without it, nothing."""
    for enabled in (True, False):
        home = tmp_path / str(enabled)
        # The module's conversion, where the studio keeps it: the server reads it instead of converting again.
        shutil.copytree(cache, home / "cache" / "openvino")
        studio = make_studio(home, test_models=0, image_openvino=enabled)  # its own database on PostgreSQL too
        studio.registry.add(model.folder, model_id="tiny-sd15")
        caplog.clear()
        try:
            with caplog.at_level(logging.INFO, logger="aigc_studio.engines.sd_openvino"), a1111_server(studio) as live:
                body = {"prompt": "a lighthouse", "steps": 2, "width": SIZE, "height": SIZE, "seed": 5}
                answer = live.api.session.post(live.url + "/sdapi/v1/txt2img", json=body)
                assert answer.status_code == 200, answer.text
                infotext = json.loads(answer.json()["info"])["infotexts"][0]
                [record] = studio.images.list()
        finally:
            studio.close()
        named = f", UNet runtime: OpenVINO {openvino_version()}, Version: "
        assert (named in infotext) is enabled and (named in record["infotext"]) is enabled
        read = [r.getMessage() for r in caplog.records if "read from its cache" in r.getMessage()]
        assert len(read) == enabled  # read, not converted again; not at all without the setting


def test_the_terminal_says_it_prepares_openvino_and_the_file_records_it(
    aigc_home, model, converted, cache, tmp_path, monkeypatch
):
    """``aigc image`` with the setting on: a line says why the first image waits; the PNG names OpenVINO."""
    from click.testing import CliRunner

    from aigc_studio.cli.main import cli

    shutil.copytree(cache, aigc_home / "cache" / "openvino")
    monkeypatch.setenv("AIGC_IMAGE_OPENVINO", "1")
    runner = CliRunner()
    added = runner.invoke(cli, ["models", "add", str(model.folder), "--name", "tiny"])
    assert added.exit_code == 0, added.output
    target = tmp_path / "fox.png"
    drawn = runner.invoke(cli, ["image", "a fox", "--steps", "2", "--size", "64x64", "--seed", "3", "-o", str(target)])
    assert drawn.exit_code == 0, drawn.output
    assert "Preparing the UNet and VAE for OpenVINO (once per model)…" in drawn.output
    shown = runner.invoke(cli, ["inspect", "--infotext", str(target)])
    assert f"UNet runtime: OpenVINO {openvino_version()}" in shown.output
