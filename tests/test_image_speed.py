"""The image engine's speed options (engines/sd_speed.py) on tiny real models.

What is on by default, and channels_last and fused QKV (off by default: no measured gain on the CPU),
keep the picture within 2 of 255 (8-bit RGB, any pixel) of the engine without them, for the same seed;
token merging changes the picture and the infotext says so; torch.compile falls back to the eager UNet,
with one log line, when it cannot compile; the VAE decodes in tiles only above its size; out-of-range
token merging ratios are refused with the range.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest
from aigc_studio.engines.diffusers_engine import DiffusersEngine
from aigc_studio.engines.sd_speed import COMPILING, ImageSpeed, physical_cores
from aigc_studio.errors import SettingError
from aigc_studio.studio import Studio
from tests.tiny_models import build_tiny_sd

from .conftest import a1111_server

SIZE = 64
NONE = ImageSpeed(channels_last=False, fuse_qkv=False, vae_tile_above=0)
# The most one 8-bit channel of one pixel may move when one of these is turned on (README).
DEFAULT_TOLERANCE = 2

# numpy 2 warns each time diffusers' schedulers hand it a torch tensor (thousands per run): not ours to fix
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny"), kind="sd15")


@pytest.fixture(scope="module")
def plain(model):
    """The engine with none of the optimizations: the reference picture."""
    return DiffusersEngine("tiny-none", model.folder, speed=NONE)


@pytest.fixture(scope="module")
def fast(model):
    return DiffusersEngine("tiny-default", model.folder)


def request(**fields) -> ImageRequest:
    defaults = {"prompt": "a lighthouse", "steps": 3, "width": SIZE, "height": SIZE, "seed": 11, "subseed": 11}
    return ImageRequest(**{**defaults, **fields})


def pixels(engine, **fields) -> np.ndarray:
    return np.asarray(engine.generate(request(**fields), "txt2img").images[0], dtype=np.int16)


@pytest.mark.parametrize(
    "speed",
    [ImageSpeed(channels_last=True), ImageSpeed(fuse_qkv=True), ImageSpeed(), ImageSpeed(True, True)],
    ids=["channels_last", "fused_qkv", "defaults", "channels_last_and_fused_qkv"],
)
@pytest.mark.store_free
def test_each_pixel_keeping_optimization_keeps_the_picture_of_the_unoptimized_engine(model, plain, speed):
    engine = DiffusersEngine("tiny", model.folder, speed=speed)
    for fields in ({}, {"sampler_name": "DPM++ 2M", "cfg_scale": 5.0, "seed": 3}):
        difference = np.abs(pixels(engine, **fields) - pixels(plain, **fields))
        assert difference.max() <= DEFAULT_TOLERANCE, fields


@pytest.mark.store_free
def test_channels_last_and_fused_qkv_change_the_modules_they_name(model, fast):
    """So that the bench rows measure what they say (and the defaults leave the modules alone)."""
    engine = DiffusersEngine("tiny", model.folder, speed=ImageSpeed(channels_last=True, fuse_qkv=True))
    for unet, applied in ((engine.pipeline.unet, True), (fast.pipeline.unet, False)):
        assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last) is applied
        assert any(name.endswith("to_qkv") for name, _ in unet.named_modules()) is applied
    assert engine.pipeline.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.store_free
def test_torch_threads_are_capped_at_the_physical_cores(model):
    torch.set_num_threads(physical_cores() + 3)
    try:
        DiffusersEngine("tiny", model.folder)
        assert torch.get_num_threads() == physical_cores()
        DiffusersEngine("tiny", model.folder, speed=ImageSpeed(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)


@pytest.mark.store_free
def test_the_vae_decodes_in_tiles_only_above_its_size(model, monkeypatch):
    engine = DiffusersEngine("tiny", model.folder, speed=ImageSpeed(vae_tile_above=SIZE * SIZE))
    vae = engine.pipeline.vae
    tiled = []
    real = vae.tiled_decode
    monkeypatch.setattr(vae, "tiled_decode", lambda *a, **k: tiled.append(1) or real(*a, **k))
    vae.tile_latent_min_size = 4  # tiny: so that a 96-pixel picture (12 latents) is larger than one tile
    vae.tile_sample_min_size = 32
    small = pixels(engine)
    assert not tiled and not vae.use_tiling
    assert np.abs(small - pixels(DiffusersEngine("tiny", model.folder, speed=ImageSpeed(vae_tile_above=0)))).max() == 0
    engine.generate(request(width=96, height=96), "txt2img")
    assert tiled and not vae.use_tiling  # tiled above the size, and back to whole afterwards
    tiled.clear()
    engine.generate(request(width=96, height=96, tiling=True), "txt2img")
    assert not tiled  # seamless tiling pads circularly: tiles would break it


@pytest.mark.store_free
def test_token_merging_changes_the_picture_the_same_way_each_time_and_only_while_asked(plain, fast):
    before = pixels(fast)
    merged = pixels(fast, token_merging_ratio=0.5)
    assert np.abs(merged - before).mean() > 0.1
    assert np.array_equal(merged, pixels(fast, token_merging_ratio=0.5))  # no random perturbation: same seed, same
    assert np.array_equal(pixels(fast), before)  # the patch is removed after the request
    assert type(fast.pipeline.unet.down_blocks[0].attentions[0].transformer_blocks[0]).__name__ != "ToMeBlock"


def unet_batches(engine, **fields) -> tuple[np.ndarray, list[int]]:
    """The picture, and the batch each UNet call of the generation ran on (its first layer's input)."""
    batches: list[int] = []
    hook = engine.pipeline.unet.conv_in.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        return pixels(engine, **fields), batches
    finally:
        hook.remove()


@pytest.mark.store_free
def test_ngms_runs_the_prompt_alone_at_every_other_call_below_its_sigma_as_a1111(fast):
    """A1111's Negative Guidance minimum sigma: odd-numbered UNet calls whose sigma is below it run the
    prompt's half of the batch only; "all steps" skips at each one. 15 is above every sigma of SD's
    schedule (at most 14.6), 0.01 below every one (at least 0.029)."""
    off, batches = unet_batches(fast, steps=6)
    assert batches == [2] * 6
    skipped, batches = unet_batches(fast, steps=6, s_min_uncond=15)
    assert batches == [2, 1, 2, 1, 2, 1]
    assert np.abs(skipped - off).mean() > 0.1
    assert np.array_equal(skipped, unet_batches(fast, steps=6, s_min_uncond=15)[0])  # the same each time
    every, batches = unet_batches(fast, steps=6, s_min_uncond=15, s_min_uncond_all=True)
    assert batches == [1] * 6
    # Unguided at every step: the prompt's prediction alone, which is what CFG scale 1 runs.
    assert np.abs(every - pixels(fast, steps=6, cfg_scale=1)).max() <= 1
    below_all, batches = unet_batches(fast, steps=6, s_min_uncond=0.01, s_min_uncond_all=True)
    assert batches == [2] * 6 and np.array_equal(below_all, off)
    # In between, only the late (low-noise) calls skip: sigmas fall from 14.6 to about 0.03 over the steps.
    _, batches = unet_batches(fast, steps=10, s_min_uncond=1.0, s_min_uncond_all=True)
    first = batches.index(1)
    assert first > 0 and batches[first:] == [1] * (10 - first), batches
    assert "forward" not in vars(fast.pipeline.unet)  # the engine's UNet is its own again
    assert np.array_equal(pixels(fast, steps=6), off)


@pytest.mark.store_free
def test_ngms_leaves_a_generation_without_guidance_alone(fast):
    at_one, batches = unet_batches(fast, steps=4, cfg_scale=1, s_min_uncond=15, s_min_uncond_all=True)
    assert batches == [1] * 4 and np.array_equal(at_one, pixels(fast, steps=4, cfg_scale=1))


def test_an_instruction_edit_refuses_ngms_and_img2img_on_an_edit_model_records_none(tmp_path):
    """A1111 never skips the negative prompt with an InstructPix2Pix model (three predictions a step)."""
    from aigc_studio.errors import InvalidRequest

    pix2pix = build_tiny_sd(tmp_path, kind="pix2pix")
    studio = Studio(load_config(test_models=0))
    try:
        studio.registry.add(pix2pix.folder, model_id="tiny-pix2pix")
        source = Image.new("RGB", (SIZE, SIZE), "white")
        asked = request(model="tiny-pix2pix", s_min_uncond=15, s_min_uncond_all=True)
        with pytest.raises(InvalidRequest, match=r"s_min_uncond .* an instruction edit .* send 0"):
            studio.images.submit(asked, "edit", init_image=source)
        result = studio.images.generate(asked, "img2img", init_image=source)
        assert result.request.s_min_uncond == 0 and "NGMS" not in result.images[0].infotext
    finally:
        studio.close()


@pytest.mark.store_free
def test_compile_that_cannot_start_runs_eagerly_with_one_log_line(model, fast, monkeypatch, caplog):
    def unavailable(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported on this platform")

    monkeypatch.setattr(torch, "compile", unavailable)
    with caplog.at_level(logging.WARNING, logger="aigc_studio.engines.sd_speed"):
        engine = DiffusersEngine("tiny", model.folder, speed=ImageSpeed(compile=True))
    assert [r.getMessage() for r in caplog.records] == [
        "torch.compile of the UNet failed, running it eagerly: torch.compile is not supported on this platform"
    ]
    phases = []
    image = engine.generate(request(), "txt2img", on_step=lambda info: phases.append(info.phase))
    assert COMPILING not in phases  # nothing is compiling, so nothing says so
    assert np.array_equal(np.asarray(image.images[0], dtype=np.int16), pixels(fast))


@pytest.mark.store_free
def test_compile_that_fails_on_the_first_call_says_so_then_runs_eagerly(model, fast, monkeypatch, caplog):
    """A compiled UNet whose first call fails (no C compiler, say): the request goes on eagerly."""
    from torch._dynamo.exc import BackendCompilerFailed

    def inductor(*args):
        pass

    def compile_that_fails(function, **kwargs):
        def failing(*args, **kwargs):
            raise BackendCompilerFailed(inductor, RuntimeError("no C compiler found (cc)"), None)

        return failing

    monkeypatch.setattr(torch, "compile", compile_that_fails)
    engine = DiffusersEngine("tiny", model.folder, speed=ImageSpeed(compile=True))
    steps = []
    with caplog.at_level(logging.WARNING, logger="aigc_studio.engines.sd_speed"):
        result = engine.generate(request(), "txt2img", on_step=lambda info: steps.append((info.phase, info.step)))
    assert steps[0] == (COMPILING, 0)  # said before the slow first call, at step 0
    assert [step for phase, step in steps[1:]] == [1, 2, 3] and not any(phase for phase, _ in steps[1:])
    assert len(caplog.records) == 1 and "running it eagerly" in caplog.records[0].getMessage()
    assert "no C compiler" in caplog.records[0].getMessage()
    assert np.array_equal(np.asarray(result.images[0], dtype=np.int16), pixels(fast))
    steps.clear()
    engine.generate(request(), "txt2img", on_step=lambda info: steps.append(info.phase))
    assert COMPILING not in steps  # once per model


# ---------------------------------------------------------------------------------------------------
# Through the studio: the setting, the A1111 override and option, the record


@pytest.fixture(scope="module")
def server(tmp_path_factory, model):
    import os

    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("speed-home"))
    studio = Studio(load_config(test_models=0))
    studio.registry.add(model.folder, model_id="tiny-sd15")
    with a1111_server(studio) as live:
        yield live
    studio.close()


def txt2img(live, **fields):
    body = {"prompt": "a lighthouse", "steps": 2, "width": SIZE, "height": SIZE, "seed": 5, **fields}
    return live.api.session.post(live.url + "/sdapi/v1/txt2img", json=body)


def test_token_merging_shows_in_the_infotext_and_off_leaves_it_out(server):
    merged = txt2img(server, override_settings={"token_merging_ratio": 0.5})
    assert merged.status_code == 200, merged.text
    infotext = json.loads(merged.json()["info"])["infotexts"][0]
    assert ", Token merging ratio: 0.5," in infotext
    plain = txt2img(server)
    assert "Token merging" not in json.loads(plain.json()["info"])["infotexts"][0]
    assert decode(merged) != decode(plain)


def test_ngms_is_honoured_recorded_and_read_back_from_its_infotext(server):
    off = txt2img(server, steps=4)
    skipped = txt2img(server, steps=4, s_min_uncond=15)
    assert skipped.status_code == 200, skipped.text
    infotext = json.loads(skipped.json()["info"])["infotexts"][0]
    assert ", NGMS: 15," in infotext and "NGMS all steps" not in infotext
    assert decode(skipped) != decode(off)
    assert "NGMS" not in json.loads(off.json()["info"])["infotexts"][0]
    # A1111's options, per request, and its "NGMS all steps"
    every = txt2img(server, steps=4, override_settings={"s_min_uncond": 15, "s_min_uncond_all": True})
    assert every.status_code == 200, every.text
    every_infotext = json.loads(every.json()["info"])["infotexts"][0]
    assert ", NGMS: 15, NGMS all steps: True," in every_infotext
    assert decode(every) not in (decode(off), decode(skipped))
    # A pasted infotext gives the same image again
    again = server.api.session.post(server.url + "/sdapi/v1/txt2img", json={"infotext": every_infotext})
    assert again.status_code == 200, again.text
    assert decode(again) == decode(every)
    # Without guidance there is nothing to skip, and the record says so
    unguided = txt2img(server, steps=2, cfg_scale=1, s_min_uncond=3)
    assert "NGMS" not in json.loads(unguided.json()["info"])["infotexts"][0]


@pytest.mark.parametrize(
    "value, why", [(15.5, "less than or equal to 15, got 15.5"), (-1, "greater than or equal to 0, got -1")]
)
def test_an_ngms_out_of_range_is_refused_with_the_range(server, value, why):
    answer = txt2img(server, s_min_uncond=value)
    assert answer.status_code == 422
    assert answer.json()["detail"].removesuffix(".0") == f"s_min_uncond: Input should be {why}"  # -1 read as a float
    answer = txt2img(server, override_settings={"s_min_uncond": value})
    assert answer.status_code == 422
    assert answer.json()["detail"] == f"override_settings.s_min_uncond: Input should be {why}"


def test_the_setting_applies_where_a_request_sets_no_ratio_and_an_override_of_0_turns_it_off(server):
    options = server.url + "/sdapi/v1/options"
    assert server.api.session.post(options, json={"token_merging_ratio": 0.3}).status_code == 200
    try:
        assert server.api.session.get(options).json()["token_merging_ratio"] == 0.3
        assert server.studio.config.values["token_merging_ratio"] == 0.3
        infotext = json.loads(txt2img(server).json()["info"])["infotexts"][0]
        assert ", Token merging ratio: 0.3," in infotext
        off = txt2img(server, override_settings={"token_merging_ratio": 0})
        assert "Token merging" not in json.loads(off.json()["info"])["infotexts"][0]
    finally:
        server.api.session.post(options, json={"token_merging_ratio": 0})


@pytest.mark.parametrize("value", [0.95, -0.1, "half", True])
def test_a_ratio_out_of_range_is_refused_with_the_range(server, value):
    """/sdapi answers a request it refuses with 422, as A1111 does; the message names the option and range."""
    allowed = f"must be a number from 0 to 0.9, got {json.dumps(value)}"
    answer = txt2img(server, override_settings={"token_merging_ratio": value})
    assert answer.status_code == 422
    assert answer.json()["detail"] == f"override_settings.token_merging_ratio: {allowed}"
    answer = server.api.session.post(server.url + "/sdapi/v1/options", json={"token_merging_ratio": value})
    assert answer.status_code == 422
    assert answer.json()["detail"] == f"token_merging_ratio: {allowed}"
    assert server.api.session.get(server.url + "/sdapi/v1/options").json()["token_merging_ratio"] == 0


def test_the_setting_refuses_a_ratio_out_of_range_naming_the_range(monkeypatch):
    monkeypatch.setenv("AIGC_TOKEN_MERGING_RATIO", "0.95")
    with pytest.raises(SettingError, match=r"token_merging_ratio must be a number from 0 to 0\.9, got 0\.95"):
        load_config()
    monkeypatch.setenv("AIGC_TOKEN_MERGING_RATIO", "0.25")
    assert load_config().token_merging_ratio == 0.25


def test_an_engine_that_cannot_merge_tokens_records_none(tmp_path):
    """The fake 'plain' engine ignores the ratio, and its record says what ran."""
    studio = Studio(load_config(token_merging_ratio=0.5))
    try:
        result = studio.images.generate(ImageRequest(model="plain", prompt="x", steps=1, width=64, height=64, seed=1))
        assert "Token merging" not in result.images[0].infotext
        assert result.request.token_merging_ratio == 0
    finally:
        studio.close()


def decode(answer) -> bytes:
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    return np.asarray(image.convert("RGB")).tobytes()


def test_the_progress_says_the_unet_is_compiling_before_the_first_step(tmp_path, model, monkeypatch):
    """The first request of a model with image_compile waits for the compile; /progress says why."""
    import threading
    import time

    from torch._dynamo.exc import BackendCompilerFailed

    def slow_compile_that_fails(function, **kwargs):
        def compiling(*args, **kwargs):
            time.sleep(3)  # a compile takes minutes; the progress is read meanwhile
            raise BackendCompilerFailed(slow_compile_that_fails, RuntimeError("no C compiler found (cc)"), None)

        return compiling

    monkeypatch.setattr(torch, "compile", slow_compile_that_fails)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # recorded, so the test's own value is undone
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    studio = Studio(load_config(test_models=0, image_compile=True))
    studio.registry.add(model.folder, model_id="tiny-sd15")
    try:
        with a1111_server(studio) as live:
            answer = {}
            thread = threading.Thread(target=lambda: answer.setdefault("r", txt2img(live)))
            thread.start()
            seen = set()
            while thread.is_alive():
                seen.add(live.api.session.get(live.url + "/sdapi/v1/progress").json()["textinfo"])
                time.sleep(0.1)
            assert "Compiling the UNet (once per model)" in seen
            assert answer["r"].status_code == 200  # and then it ran eagerly
        # What inductor compiles is kept under AIGC_HOME, not in /tmp: a restart compiles from it.
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(studio.config.home / "cache" / "torchinductor")
    finally:
        studio.close()
