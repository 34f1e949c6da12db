"""DiffusersEngine conformance on tiny real Stable Diffusion models (SD1.x, inpainting, InstructPix2Pix,
SDXL) built here from the real diffusers/transformers classes: A1111 seeds and variation seeds, batches,
every sampler × schedule type, img2img, inpaint, edit, progress, interrupt/skip, prompt weighting."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # must be set before huggingface_hub is imported

torch = pytest.importorskip("torch", reason="the diffusers engine needs the image extras (torch, diffusers)")
pytest.importorskip("diffusers", reason="the diffusers engine needs the image extras (torch, diffusers)")

import numpy as np  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from PIL import Image  # noqa: E402

from aigc_studio.contracts import SAMPLERS, SCHEDULERS, Control, ImageRequest  # noqa: E402
from aigc_studio.engines.diffusers_engine import DiffusersEngine, parse_prompt_attention  # noqa: E402
from aigc_studio.engines.samplers import SchedulerCache, choose_scheduler  # noqa: E402
from tests.tiny_models import build_tiny_sd, build_tiny_sdxl, detect_architecture  # noqa: E402

SIZE = 64

# numpy 2 warns each time diffusers' schedulers hand it a torch tensor (thousands per run): not ours to fix
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {
        "sd15": build_tiny_sd(root, kind="sd15"),
        "inpaint": build_tiny_sd(root, kind="inpaint"),
        "pix2pix": build_tiny_sd(root, kind="pix2pix"),
        "sdxl": build_tiny_sdxl(root),
    }


@pytest.fixture(scope="module")
def sd(tiny):
    return DiffusersEngine("tiny-sd", tiny["sd15"].folder)


@pytest.fixture(scope="module")
def inpainting(tiny):  # loaded from the single file, as from A1111's models folder
    return DiffusersEngine("tiny-inpaint", tiny["inpaint"].single_file, config_dir=tiny["inpaint"].config_dir)


@pytest.fixture(scope="module")
def pix2pix(tiny):
    return DiffusersEngine("tiny-pix2pix", tiny["pix2pix"].folder)


@pytest.fixture(scope="module")
def sdxl(tiny):
    return DiffusersEngine("tiny-sdxl", tiny["sdxl"])


@pytest.fixture(scope="module")
def picture():
    """A smooth picture (not noise), so that what the engine changes stands out."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1)
    return Image.fromarray((rgb * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def square_mask():
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (24, 24, 40, 40))
    return mask


def request(**fields) -> ImageRequest:
    defaults = {"prompt": "a photo of a cat", "steps": 2, "width": SIZE, "height": SIZE, "seed": 7, "subseed": 99}
    return ImageRequest(**{**defaults, **fields})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def one(engine, mode="txt2img", **fields) -> np.ndarray:
    kwargs = {key: fields.pop(key) for key in ("init_image", "mask") if key in fields}
    result = engine.generate(request(**fields), mode, **kwargs)
    assert len(result.images) == 1
    return pixels(result.images[0])


# ---------------------------------------------------------------------------------------------------
# txt2img, seeds, batches


def test_txt2img_gives_rgb_images_of_the_requested_size(sd):
    result = sd.generate(request(width=96, height=64), "txt2img")
    assert [image.size for image in result.images] == [(96, 64)]
    assert result.images[0].mode == "RGB"
    assert (result.seeds, result.subseeds, result.interrupted) == ([7], [99], False)
    assert sd.supports_txt2img and sd.supports_img2img and sd.supports_inpaint and not sd.supports_instruct_edit


def test_same_seed_same_pixels_other_seed_other_pixels(sd):
    first = one(sd, seed=7)
    assert np.array_equal(one(sd, seed=7), first)
    assert np.abs(one(sd, seed=8) - first).mean() > 1


def test_batches_take_consecutive_seeds_and_each_image_is_its_seed(sd):
    result = sd.generate(request(seed=100, subseed=500, batch_size=2, n_iter=2), "txt2img")
    assert len(result.images) == 4
    assert result.seeds == [100, 101, 102, 103]
    assert result.subseeds == [500, 501, 502, 503]
    # "Euler a" draws each step's noise from each image's own generator: image 2 is seed 102 alone. Not
    # bit for bit: on some CPUs a batch of 2 runs other convolution kernels than a batch of 1.
    alone = one(sd, seed=102, subseed=502)
    assert np.abs(pixels(result.images[2]) - alone).max() <= 2
    assert np.abs(pixels(result.images[3]) - alone).mean() > 10  # and not the next seed's picture
    assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))


def test_variation_seed_slerps_from_the_seed_to_the_subseed(sd):
    deterministic = {"sampler_name": "Euler"}  # ancestral samplers add noise from the seed's generator later
    plain = one(sd, seed=7, subseed=1234, **deterministic)
    assert np.array_equal(one(sd, seed=7, subseed=99, subseed_strength=0.0, **deterministic), plain)
    toward_subseed = one(sd, seed=7, subseed=99, subseed_strength=1.0, **deterministic)
    assert np.abs(toward_subseed - one(sd, seed=99, **deterministic)).max() <= 2
    halfway = one(sd, seed=7, subseed=99, subseed_strength=0.5, **deterministic)
    assert np.abs(halfway - plain).mean() > 1 and np.abs(halfway - toward_subseed).mean() > 1
    # A1111: with a variation strength, every image keeps the seed and the subseeds count up
    result = sd.generate(request(seed=7, subseed=99, subseed_strength=0.3, batch_size=2), "txt2img")
    assert (result.seeds, result.subseeds) == ([7, 7], [99, 100])


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NaN latents would decode with "invalid value ... cast"
@pytest.mark.parametrize("schedule", list(SCHEDULERS.values()))
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_with_every_schedule_type_runs(sd, sampler, schedule):
    image = one(sd, sampler_name=sampler, scheduler=schedule, cfg_scale=1.0)
    assert image.shape == (SIZE, SIZE, 3) and image.std() > 0


def test_a_schedule_type_runs_or_the_choice_says_what_runs_instead():
    # once, a sampler without a diffusers flag for a schedule type fell back to the model's spacing;
    # now every k-diffusion sampler runs every type (tests/test_samplers.py checks the noise levels)
    for sampler in ("Euler a", "LCM", "LMS", "Heun"):
        for schedule in SCHEDULERS.values():
            assert choose_scheduler(sampler, schedule).schedule == schedule
    assert choose_scheduler("DPM++ 2M", "Automatic").schedule == "Karras"  # A1111's default for DPM++ 2M
    assert choose_scheduler("DPM++ 2M SDE", "Automatic").settings["algorithm_type"] == "sde-dpmsolver++"
    assert choose_scheduler("DDIM", "Karras").schedule == "Automatic"  # A1111's DDIM ignores the type
    with pytest.raises(ValueError, match="unknown sampler"):
        choose_scheduler("Euler b")


# ---------------------------------------------------------------------------------------------------
# Progress, interrupt, skip


def test_on_step_reports_every_step_of_every_batch_with_a_preview(sd):
    seen = []

    def on_step(info):
        preview = info.preview()
        assert isinstance(preview, Image.Image)
        seen.append((info.step, info.total, info.batch, preview.size))

    sd.generate(request(steps=3, batch_size=2, n_iter=2), "txt2img", on_step=on_step)
    latent = SIZE // 8
    assert seen == [(step, 3, batch, (2 * latent, latent)) for batch in (0, 1) for step in (1, 2, 3)]


def test_interrupt_after_step_one_stops_at_once(sd):
    control, steps = Control(), []

    def on_step(info):
        steps.append((info.batch, info.step))
        control.interrupt.set()

    result = sd.generate(request(steps=4, n_iter=3), "txt2img", on_step=on_step, control=control)
    assert steps == [(0, 1)]
    assert result.interrupted
    assert len(result.images) == 1 and result.seeds == [7]  # the batch that was running, partly denoised


def test_skip_ends_the_current_batch_and_goes_on(sd):
    control, steps = Control(), []

    def on_step(info):
        steps.append((info.batch, info.step))
        if info.batch == 0:
            control.skip.set()

    result = sd.generate(request(steps=3, n_iter=2), "txt2img", on_step=on_step, control=control)
    assert steps == [(0, 1), (1, 1), (1, 2), (1, 3)]
    assert not result.interrupted and not control.skip.is_set()
    assert len(result.images) == 2 and result.seeds == [7, 8]
    assert np.array_equal(pixels(result.images[1]), one(sd, seed=8, subseed=100, steps=3))


# ---------------------------------------------------------------------------------------------------
# Prompts


def test_prompt_weights_are_parsed_as_a1111_parses_them():
    assert parse_prompt_attention("a (cat:1.5) dog") == [("a ", 1.0), ("cat", 1.5), (" dog", 1.0)]
    assert parse_prompt_attention("(cat) [dog]") == [("cat", 1.1), (" ", 1.0), ("dog", 1 / 1.1)]
    assert parse_prompt_attention(r"a \(cat\)") == [("a (cat)", 1.0)]
    assert parse_prompt_attention("((cat") == [("cat", pytest.approx(1.21))]
    assert parse_prompt_attention("") == [("", 1.0)]


def test_weighted_prompt_differs_and_unweighted_equals_diffusers(sd, tiny):
    cat = one(sd, prompt="cat")
    assert not np.array_equal(one(sd, prompt="(cat:1.5)"), cat)
    dog = one(sd, prompt="cat", negative_prompt="dog")
    assert not np.array_equal(one(sd, prompt="cat", negative_prompt="(dog:1.3)"), dog)
    assert np.array_equal(one(sd, prompt="(cat:1.0)"), cat)
    # the unweighted path is diffusers itself, with A1111's noise for seed 7 and its generator after
    pipe = StableDiffusionPipeline.from_pretrained(tiny["sd15"].folder, local_files_only=True)
    pipe.scheduler = SchedulerCache(pipe.scheduler.config).get("Euler a")[0]  # A1111's Euler a (samplers.py)
    generator = torch.Generator("cpu").manual_seed(7)
    noise = torch.randn((1, 4, SIZE // 8, SIZE // 8), generator=generator)
    expected = pipe("cat", num_inference_steps=2, guidance_scale=7.0, latents=noise, generator=[generator]).images[0]
    assert np.array_equal(cat, pixels(expected))


def test_clip_skip_two_differs_from_one(sd):
    assert not np.array_equal(one(sd, clip_skip=2), one(sd, clip_skip=1))
    assert np.array_equal(one(sd, clip_skip=2), one(sd, clip_skip=2))


# ---------------------------------------------------------------------------------------------------
# img2img, inpaint, edit


def test_img2img_with_denoising_zero_returns_the_input(sd, picture):
    steps = []
    result = sd.generate(request(denoising_strength=0.0), "img2img", init_image=picture, on_step=steps.append)
    assert np.array_equal(pixels(result.images[0]), pixels(picture)) and steps == []


def test_img2img_runs_a1111s_share_of_the_steps(sd, picture):
    steps = []
    result = sd.generate(request(steps=4, denoising_strength=0.5), "img2img", init_image=picture, on_step=steps.append)
    # A1111 runs int(0.5 × 4) + 1 = 3 of the 4 steps (setup_img2img_steps: t_enc + 1)
    assert [info.step for info in steps] == [1, 2, 3] and steps[0].total == 3
    changed = pixels(result.images[0])
    assert np.array_equal(one(sd, "img2img", steps=4, denoising_strength=0.5, init_image=picture), changed)
    assert np.abs(changed - pixels(picture)).mean() > 1
    # a strength too small for one step still runs one, as A1111 does
    steps.clear()
    sd.generate(request(steps=4, denoising_strength=0.1), "img2img", init_image=picture, on_step=steps.append)
    assert len(steps) == 1


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_inpaint_repaints_the_mask_and_keeps_the_rest(sd, picture, square_mask, fill):
    repainted = one(
        sd, "inpaint", init_image=picture, mask=square_mask, mask_blur=2, inpainting_fill=fill, denoising_strength=0.9
    )
    original = pixels(picture)
    far = np.ones((SIZE, SIZE), dtype=bool)
    far[12:52, 12:52] = False  # more than 12 px from the mask: the blurred mask is 0 there
    assert np.array_equal(repainted[far], original[far])
    assert np.abs(repainted[28:36, 28:36] - original[28:36, 28:36]).mean() > 1


def test_inpainting_model_inpaints_and_does_txt2img_and_img2img(inpainting, picture, square_mask):
    assert inpainting.native_inpaint and inpainting.kind == "inpainting"
    repainted = one(inpainting, "inpaint", init_image=picture, mask=square_mask, mask_blur=0)
    outside = np.ones((SIZE, SIZE), dtype=bool)
    outside[24:40, 24:40] = False
    assert np.array_equal(repainted[outside], pixels(picture)[outside])
    assert np.abs(repainted[24:40, 24:40] - pixels(picture)[24:40, 24:40]).mean() > 1
    assert one(inpainting).shape == (SIZE, SIZE, 3)
    assert one(inpainting, "img2img", init_image=picture, denoising_strength=0.5).shape == (SIZE, SIZE, 3)


def test_edit_with_instruct_pix2pix(pix2pix, picture):
    assert pix2pix.supports_instruct_edit and not pix2pix.supports_txt2img
    edited = one(pix2pix, "edit", prompt="make it red", init_image=picture)
    assert edited.shape == (SIZE, SIZE, 3)
    assert np.array_equal(one(pix2pix, "edit", prompt="make it red", init_image=picture), edited)
    assert not np.array_equal(one(pix2pix, "edit", prompt="make it red", init_image=picture, image_cfg_scale=3), edited)
    with pytest.raises(ValueError, match=r"InstructPix2Pix model.*can do edit, not txt2img"):
        pix2pix.generate(request(), "txt2img")


def test_ngms_skips_the_negative_prompt_on_sdxl_inpainting_models_and_hires_passes(sdxl, inpainting, sd, picture):
    """Below its sigma at every call ("all steps", 15 is above every sigma), NGMS leaves the prompt's
    prediction alone, which is what CFG scale 1 runs: SDXL's extra conditioning (pooled text, time ids)
    and an inpainting UNet's mask channels are halved with the rest, and each pass counts anew."""
    skip = {"s_min_uncond": 15, "s_min_uncond_all": True, "steps": 3}
    cases = [
        (sdxl, "txt2img", {}),
        (inpainting, "inpaint", {"init_image": picture, "mask": Image.new("L", (SIZE, SIZE), 255), "mask_blur": 0}),
        (sd, "txt2img", {"enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.6}),
    ]
    for engine, mode, fields in cases:
        skipped = one(engine, mode, **skip, **fields)
        assert np.abs(skipped - one(engine, mode, cfg_scale=1, steps=3, **fields)).max() <= 1, engine.model_id
        assert np.abs(skipped - one(engine, mode, steps=3, **fields)).mean() > 0.1, engine.model_id


def test_an_instruct_pix2pix_engine_never_skips_the_negative_prompt(pix2pix, picture):
    edited = one(pix2pix, "edit", prompt="make it red", init_image=picture)
    asked = one(pix2pix, "edit", prompt="make it red", init_image=picture, s_min_uncond=15, s_min_uncond_all=True)
    assert np.array_equal(asked, edited)


def test_mismatched_or_missing_images_are_refused(sd, picture):
    with pytest.raises(ValueError, match="the mask is 32x32, the image 64x64"):
        sd.generate(request(), "inpaint", init_image=picture, mask=Image.new("L", (32, 32)))
    with pytest.raises(ValueError, match="inpaint needs a mask"):
        sd.generate(request(), "inpaint", init_image=picture)
    with pytest.raises(ValueError, match="enable_hr: hires fix is for txt2img, not img2img"):
        sd.generate(request(enable_hr=True), "img2img", init_image=picture)


# ---------------------------------------------------------------------------------------------------
# Loading


def test_single_file_and_folder_give_the_same_pixels(sd, tiny):
    from_file = DiffusersEngine("tiny-sd-file", tiny["sd15"].single_file, config_dir=tiny["sd15"].config_dir)
    assert np.array_equal(one(from_file, prompt="(cat:1.2), a dog"), one(sd, prompt="(cat:1.2), a dog"))


def test_single_file_architecture_is_read_from_its_keys(tiny):
    assert detect_architecture(tiny["sd15"].single_file) == "sd15"
    assert detect_architecture(tiny["inpaint"].single_file) == "sd15-inpainting"
    assert detect_architecture(tiny["pix2pix"].single_file) == "sd15-pix2pix"


UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
SD1_TEXT = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SDXL_TEXT = (
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
    "conditioner.embedders.1.model.token_embedding.weight",
)


def placeholder_checkpoint(path, in_channels, keys):
    """A checkpoint with real key names and placeholder tensors: detection reads only names and shapes."""
    from safetensors.torch import save_file

    save_file({UNET_IN: torch.zeros(1, in_channels, 1, 1), **{key: torch.zeros(1) for key in keys}}, path)
    return path


@pytest.mark.parametrize("in_channels, arch", [(4, "sdxl"), (9, "sdxl-inpainting")])
def test_sdxl_checkpoints_are_told_by_their_two_text_encoders(tmp_path, in_channels, arch):
    assert detect_architecture(placeholder_checkpoint(tmp_path / "x.safetensors", in_channels, SDXL_TEXT)) == arch


@pytest.mark.parametrize(
    "in_channels, keys, message",
    [
        (8, SDXL_TEXT, "sdxl-pix2pix .*has no config here"),
        (4, ("conditioner.embedders.0.model.token_embedding.weight",), "SDXL refiner"),
        (8, ("cond_stage_model.model.token_embedding.weight",), "sd2-pix2pix .*has no config here"),
        (4, (), "no text encoder"),
    ],
)
def test_unsupported_checkpoints_say_what_they_are(tmp_path, in_channels, keys, message):
    with pytest.raises(ValueError, match=message):
        detect_architecture(placeholder_checkpoint(tmp_path / "x.safetensors", in_channels, keys))


def test_a_single_file_without_its_config_folder_is_detected_before_loading(tmp_path):
    refiner_text = ("conditioner.embedders.0.model.token_embedding.weight",)
    checkpoint = placeholder_checkpoint(tmp_path / "refiner.safetensors", 4, refiner_text)
    with pytest.raises(ValueError, match="SDXL refiner"):
        DiffusersEngine("refiner", checkpoint, config_dir=tmp_path / "cache")  # a cache folder, not a config folder
    with pytest.raises(ValueError, match=r"a diffusers folder or a .safetensors / .ckpt file"):
        DiffusersEngine("bin", tmp_path / "model.bin")


def test_ckpt_files_are_read_too(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {UNET_IN: torch.zeros(1, 9, 1, 1), SD1_TEXT: torch.zeros(1)}, "global_step": 1}, path)
    assert detect_architecture(path) == "sd15-inpainting"


def test_sdxl_generates_with_weighted_prompts_and_edits_images(sdxl, picture, square_mask):
    assert sdxl.is_sdxl and sdxl.supports_inpaint
    cat = one(sdxl, prompt="cat")
    assert cat.shape == (SIZE, SIZE, 3)
    assert np.array_equal(one(sdxl, prompt="cat"), cat)
    assert not np.array_equal(one(sdxl, prompt="(cat:1.5)"), cat)
    assert not np.array_equal(one(sdxl, prompt="cat", negative_prompt="dog"), cat)
    assert one(sdxl, "img2img", init_image=picture).shape == (SIZE, SIZE, 3)
    assert one(sdxl, "inpaint", init_image=picture, mask=square_mask).shape == (SIZE, SIZE, 3)
