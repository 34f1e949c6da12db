"""DiffusersEngine on tiny real SD / SDXL models: A1111's hires fix, tiling, prompts past 77 tokens with BREAK
and weights, img2img resize modes, and inpainting's mask invert, "Only masked" and single mask blur."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # must be set before huggingface_hub is imported

torch = pytest.importorskip("torch", reason="the diffusers engine needs the image extras (torch, diffusers)")
pytest.importorskip("diffusers", reason="the diffusers engine needs the image extras (torch, diffusers)")

import numpy as np  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from PIL import Image  # noqa: E402

from aigc_studio.contracts import HR_UPSCALERS, Control, ImageRequest  # noqa: E402
from aigc_studio.engines.diffusers_engine import DiffusersEngine  # noqa: E402
from aigc_studio.engines.samplers import SchedulerCache  # noqa: E402
from aigc_studio.engines.sd_prompts import PromptEncoder, parse_prompt_attention, prompt_chunks  # noqa: E402
from aigc_studio.images.masking import prepare_init  # noqa: E402
from aigc_studio.images.resize import hires_size, resize_image  # noqa: E402
from tests.masking_reference import reference_blur  # noqa: E402
from tests.tiny_models import build_tiny_sd, build_tiny_sdxl  # noqa: E402

SIZE = 64

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {
        "sd15": build_tiny_sd(root),
        "sd21": build_tiny_sd(root, kind="sd21"),
        "inpaint": build_tiny_sd(root, kind="inpaint"),
        "sdxl": build_tiny_sdxl(root),
    }


@pytest.fixture(scope="module")
def sd(tiny):
    return DiffusersEngine("tiny-sd", tiny["sd15"].folder)


@pytest.fixture(scope="module")
def sdxl(tiny):
    return DiffusersEngine("tiny-sdxl", tiny["sdxl"])


@pytest.fixture(scope="module")
def picture():
    """A smooth, wide picture (not noise, not square), so that fitting and repainting show."""
    y, x = np.mgrid[0:SIZE, 0 : 2 * SIZE] / SIZE
    rgb = np.stack([x / 2, y, 0.5 + 0.5 * np.sin(3 * x * y)], axis=-1)
    return Image.fromarray((rgb * 255).astype(np.uint8))


def request(**fields) -> ImageRequest:
    defaults = {"prompt": "a photo of a cat", "steps": 2, "width": SIZE, "height": SIZE, "seed": 7, "subseed": 99}
    return ImageRequest(**{**defaults, **fields})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def run(engine, mode="txt2img", **fields):
    kwargs = {key: fields.pop(key) for key in ("init_image", "mask", "on_step", "control") if key in fields}
    return engine.generate(request(**fields), mode, **kwargs)


def one(engine, mode="txt2img", **fields) -> np.ndarray:
    result = run(engine, mode, **fields)
    assert len(result.images) == 1
    return pixels(result.images[0])


# ---------------------------------------------------------------------------------------------------
# Hires fix


def test_hires_target_follows_a1111s_rules():
    assert hires_size(64, 96, 2.0).size == (128, 192)
    assert hires_size(64, 96, 1.5).size == (96, 144)
    assert hires_size(64, 96, 2.0, hr_resize_x=128).size == (128, 192)  # one side 0: the aspect ratio is kept
    assert hires_size(64, 96, 2.0, hr_resize_y=144).size == (96, 144)
    crop = hires_size(64, 64, 2.0, hr_resize_x=96, hr_resize_y=160)  # both: cover, then cut the middle
    assert (crop.upscale_to_x, crop.upscale_to_y, crop.truncate_x, crop.truncate_y) == (160, 160, 8, 0)
    assert crop.size == (96, 160)


def test_hires_fix_upscales_then_runs_a_second_pass_counted_in_the_progress(sd):
    steps = []
    result = run(sd, enable_hr=True, denoising_strength=0.5, hr_second_pass_steps=3, on_step=steps.append)
    assert result.images[0].size == (2 * SIZE, 2 * SIZE)
    # 2 first-pass steps, then exactly hr_second_pass_steps (A1111's fixed-steps img2img), one progress count
    assert [(info.step, info.total) for info in steps] == [(k, 5) for k in range(1, 6)]
    redrawn = pixels(result.images[0])
    upscaled_only = one(sd, enable_hr=True, denoising_strength=0.0)
    assert upscaled_only.shape == redrawn.shape and np.abs(redrawn - upscaled_only).mean() > 1
    steps.clear()
    run(sd, enable_hr=True, denoising_strength=0.5, on_step=steps.append)
    assert [info.total for info in steps] == [4] * 4  # hr_second_pass_steps 0: as many as the first pass


def test_every_hires_upscaler_gives_the_target_size_and_its_own_picture(sd):
    made = {}
    for upscaler in HR_UPSCALERS:
        result = run(sd, enable_hr=True, hr_upscaler=upscaler, hr_scale=1.5, denoising_strength=0.0, steps=1)
        assert result.images[0].size == (96, 96), upscaler
        made[upscaler] = pixels(result.images[0])
    assert np.abs(made["Latent"] - made["Latent (nearest)"]).mean() > 1
    assert np.abs(made["Latent"] - made["Latent (bicubic)"]).mean() > 0.1
    assert np.abs(made["Lanczos"] - made["Nearest"]).mean() > 0.1
    assert np.abs(made["Latent"] - made["Lanczos"]).mean() > 1  # latents resized vs pixels resized


def test_hires_crop_to_fill_and_keep_aspect_sizes(sd):
    assert run(sd, enable_hr=True, hr_resize_x=96, hr_resize_y=160, steps=1).images[0].size == (96, 160)
    assert run(sd, enable_hr=True, hr_resize_x=96, steps=1, height=96).images[0].size == (96, 144)


def test_hires_second_pass_takes_its_noise_from_each_images_seed(sd):
    fields = {"enable_hr": True, "denoising_strength": 0.6, "sampler_name": "Euler a"}
    batch = run(sd, seed=100, batch_size=2, **fields)
    assert batch.seeds == [100, 101]
    alone = one(sd, seed=101, subseed=100, **fields)
    # image 2 of the batch is seed 101 alone, both passes (not bit for bit: batched kernels differ)
    assert np.abs(pixels(batch.images[1]) - alone).max() <= 2
    assert np.abs(pixels(batch.images[0]) - alone).mean() > 5


def test_hires_prompt_sampler_and_schedule_change_only_the_second_pass(sd):
    base = one(sd, enable_hr=True, sampler_name="Euler")
    assert np.array_equal(one(sd, enable_hr=True, sampler_name="Euler", hr_prompt="a photo of a cat"), base)
    assert np.abs(one(sd, enable_hr=True, sampler_name="Euler", hr_prompt="a dog") - base).mean() > 0.5
    # Two steps are too few for samplers or schedules to differ (DPM++ 2M's two steps are first-order,
    # and every schedule of two steps is the largest and the smallest noise level, as in A1111): four.
    four = {"enable_hr": True, "sampler_name": "Euler", "hr_second_pass_steps": 4}
    base_four = one(sd, **four)
    assert np.abs(one(sd, hr_scheduler="Karras", **four) - base_four).mean() > 0.5
    assert np.abs(one(sd, hr_sampler_name="DPM++ 2M", **four) - base_four).mean() > 0.5
    # without hires fix the same fields change nothing: they are the second pass's only
    plain = one(sd, sampler_name="Euler")
    assert np.array_equal(one(sd, sampler_name="Euler", hr_prompt="a dog", hr_sampler_name="DPM++ 2M"), plain)


def test_interrupt_in_either_pass_keeps_the_upscaled_size(sd):
    for stop_at in (1, 3):  # first pass, second pass
        control, seen = Control(), []

        def on_step(info, control=control, seen=seen, stop_at=stop_at):
            seen.append(info.step)
            if info.step == stop_at:
                control.interrupt.set()

        result = run(sd, enable_hr=True, n_iter=2, on_step=on_step, control=control)
        assert seen == list(range(1, stop_at + 1)) and result.interrupted
        assert [image.size for image in result.images] == [(2 * SIZE, 2 * SIZE)]


def test_skip_in_the_second_pass_ends_that_batch_only(sd):
    control, seen = Control(), []

    def on_step(info):
        seen.append((info.batch, info.step))
        if (info.batch, info.step) == (0, 3):
            control.skip.set()

    result = run(sd, enable_hr=True, n_iter=2, on_step=on_step, control=control)
    assert seen == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (1, 4)]
    assert not result.interrupted and [image.size for image in result.images] == [(128, 128)] * 2


def test_an_inpainting_model_does_hires_fix_batch_after_batch(tiny, picture):
    inpainting = DiffusersEngine("tiny-inpaint", tiny["inpaint"].folder)
    fields = {"enable_hr": True, "hr_sampler_name": "DPM++ 2M", "sampler_name": "Euler", "steps": 4, "cfg_scale": 3}
    result = run(inpainting, n_iter=2, **fields)
    assert [image.size for image in result.images] == [(2 * SIZE, 2 * SIZE)] * 2
    # batch 2's first pass runs its own sampler again, not the second pass's of batch 1
    assert np.abs(pixels(result.images[1]) - one(inpainting, seed=8, subseed=100, **fields)).max() <= 2
    latent = one(inpainting, "img2img", init_image=picture, resize_mode=3, denoising_strength=0.5)
    assert latent.shape == (SIZE, SIZE, 3)


def test_sdxl_hires_fix(sdxl):
    result = run(sdxl, enable_hr=True, hr_upscaler="Lanczos", denoising_strength=0.5)
    assert result.images[0].size == (2 * SIZE, 2 * SIZE)


# ---------------------------------------------------------------------------------------------------
# Tiling


def edge_correlations(image: np.ndarray) -> tuple[float, float]:
    """How well the left edge continues the right one, and the top the bottom (1: like neighbours)."""
    x = image.astype(np.float64)

    def correlation(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    return correlation(x[:, 0], x[:, -1]), correlation(x[0], x[-1])


def test_tiling_makes_the_picture_continue_across_its_edges(sd):
    fields = {"sampler_name": "Euler", "steps": 4, "width": 128, "height": 128}
    before = one(sd, **fields)
    tiled = one(sd, tiling=True, **fields)
    neighbours = np.mean([np.corrcoef(tiled[:, j].ravel(), tiled[:, j + 1].ravel())[0, 1] for j in range(0, 127, 9)])
    left_right, top_bottom = edge_correlations(tiled)
    assert left_right > 0.7 * neighbours and top_bottom > 0.7 * neighbours  # the seams look like any neighbours
    assert max(edge_correlations(before)) < 0.3  # untiled, the opposite edges have nothing to do with each other
    # the padding is restored: the next untiled run is the untiled picture again
    assert np.array_equal(one(sd, **fields), before)
    assert all(m.padding_mode == "zeros" for m in sd.pipeline.unet.modules() if isinstance(m, torch.nn.Conv2d))


# ---------------------------------------------------------------------------------------------------
# Prompts past 77 tokens, BREAK, weights


def words(count: int) -> str:
    # one token each in the tiny models' vocabulary
    vocabulary = ["cat", "dog", "girl", "boy", "city", "forest", "flower", "a", "the", "of", "red", "blue"]
    return " ".join(vocabulary[k % len(vocabulary)] for k in range(count))


def test_prompts_are_cut_into_75_token_chunks_with_a1111s_break_and_comma_rules(sd):
    tokenizer = sd.pipeline.tokenizer
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    chunks = prompt_chunks(parse_prompt_attention(words(100)), tokenizer)
    assert [len(ids) for ids, _ in chunks] == [77, 77]
    assert chunks[0][0][0] == start and chunks[0][0][76] == end and chunks[1][0][:1] == [start]
    assert chunks[1][0][26:] == [end] * 51  # 25 tokens carried over, then padding
    # BREAK ends a chunk early; inside brackets it is a word, as in A1111
    assert parse_prompt_attention("a cat BREAK a dog") == [("a cat", 1.0), ("BREAK", -1.0), ("a dog", 1.0)]
    broken = prompt_chunks(parse_prompt_attention("cat BREAK dog"), tokenizer)
    assert len(broken) == 2 and broken[0][0][2:4] == [end, end] and broken[1][0][2] == end
    assert parse_prompt_attention("(a BREAK b)")[0][1] == pytest.approx(1.1)
    # a chunk that fills up with a comma among its last 20 tokens ends after the comma
    comma = tokenizer.get_vocab()[",</w>"]
    with_comma = prompt_chunks(parse_prompt_attention(words(70) + ", " + words(10)), tokenizer)
    first = with_comma[0][0]
    assert first[1 + first[1:].index(comma) + 1 :] == [end] * (77 - first[1:].index(comma) - 2)
    # weights travel with their tokens
    weighted = prompt_chunks(parse_prompt_attention("a (cat:1.5) dog"), tokenizer)[0][1]
    assert 1.5 in weighted and weighted[0] == weighted[-1] == 1.0


def test_open_clip_tokenizers_pad_after_the_end_token(tiny):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny["sd21"].folder / "tokenizer")
    ids = prompt_chunks(parse_prompt_attention("a cat"), tokenizer)[0][0]
    end = ids.index(tokenizer.eos_token_id)
    assert ids[end + 1 :] == [tokenizer.pad_token_id] * (76 - end) and tokenizer.pad_token_id != tokenizer.eos_token_id


def test_embeddings_have_77_rows_per_chunk_and_the_negative_is_padded_to_match(sd, sdxl):
    encoder = PromptEncoder(sd.pipeline, is_sdxl=False)
    arguments = encoder(words(100), "blurry", clip_skip=1)
    assert arguments["prompt_embeds"].shape == (1, 154, 32)
    assert arguments["negative_prompt_embeds"].shape == (1, 154, 32)
    empty = encoder.encode("")[0]
    assert torch.equal(arguments["negative_prompt_embeds"][:, 77:], empty)  # padded with the empty prompt
    assert encoder("a cat BREAK a dog", "", 2)["prompt_embeds"].shape == (1, 154, 32)
    xl = PromptEncoder(sdxl.pipeline, is_sdxl=True)(words(160), "", 1)
    assert xl["prompt_embeds"].shape == (1, 231, 64) and xl["pooled_prompt_embeds"].shape == (1, 32)
    assert not xl["negative_prompt_embeds"].any()  # SDXL's empty negative prompt is zeros


def test_words_past_77_tokens_and_break_change_the_image(sd, sdxl):
    long = words(100)
    for engine in (sd, sdxl):
        red, blue = one(engine, prompt=long + " red" * 30), one(engine, prompt=long + " blue" * 30)
        assert np.abs(red - blue).mean() > 2  # diffusers alone would cut both at token 77: one picture
    assert np.abs(one(sd, prompt="a cat BREAK a dog") - one(sd, prompt="a cat a dog")).mean() > 0.5
    assert np.abs(one(sd, prompt=long, clip_skip=2) - one(sd, prompt=long)).mean() > 0.5


def test_short_unweighted_prompts_give_what_diffusers_gives(sd, tiny):
    pipe = StableDiffusionPipeline.from_pretrained(tiny["sd15"].folder, local_files_only=True)
    pipe.scheduler = SchedulerCache(pipe.scheduler.config).get("Euler")[0]  # the studio's (A1111's) Euler
    noise = torch.randn((1, 4, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(7))
    expected = pipe("a cat, on a mat", num_inference_steps=2, guidance_scale=7.0, latents=noise).images[0]
    assert np.array_equal(one(sd, prompt="a cat, on a mat", sampler_name="Euler"), pixels(expected))


def test_weights_scale_token_states_and_restore_the_mean():
    from aigc_studio.engines.sd_prompts import _emphasize

    hidden = torch.randn(1, 77, 8) + 0.5
    weights = [1.0] * 77
    weights[3] = 1.5
    out = _emphasize(hidden, weights)
    assert torch.allclose(out.mean(), hidden.mean(), atol=1e-6)
    scale = out[0, 0, 0] / hidden[0, 0, 0]
    assert torch.allclose(out[0, 3], hidden[0, 3] * 1.5 * scale, atol=1e-5)
    assert torch.equal(_emphasize(hidden, [1.0] * 77), hidden)


# ---------------------------------------------------------------------------------------------------
# img2img resize modes


def test_resize_modes_fit_the_input_as_a1111(sd, picture):
    fitted = {
        mode: pixels(run(sd, "img2img", init_image=picture, resize_mode=mode, denoising_strength=0.0).images[0])
        for mode in (0, 1, 2)
    }
    assert np.array_equal(fitted[0], pixels(picture.resize((SIZE, SIZE), Image.LANCZOS)))  # stretched
    assert np.array_equal(fitted[1], pixels(picture.crop((32, 0, 96, 64))))  # the middle, cut to fit
    half = pixels(picture.resize((SIZE, 32), Image.LANCZOS))
    assert np.array_equal(fitted[2][16:48], half)  # the whole, scaled to fit, centred
    # the bars repeat the edge rows (resampled from a zero-height box, as A1111 does)
    assert np.abs(fitted[2][:16] - half[0]).max() <= 3 and np.abs(fitted[2][48:] - half[-1]).max() <= 3
    redrawn = {
        # 4 steps at 0.5 start at the second noise level (2 steps would start at the first: pure noise)
        mode: one(sd, "img2img", init_image=picture, resize_mode=mode, denoising_strength=0.5, steps=4)
        for mode in (0, 3)
    }
    assert redrawn[3].shape == (SIZE, SIZE, 3)
    assert np.abs(redrawn[3] - redrawn[0]).mean() > 0.5  # 3 resizes the latents, 0 the pixels


def test_resize_image_rejects_an_unknown_mode(picture):
    with pytest.raises(ValueError, match="resize_mode must be one of 0, 1, 2, 3, got 4"):
        resize_image(4, picture, 8, 8)


# ---------------------------------------------------------------------------------------------------
# Inpainting: invert, "Only masked", mask blur once


@pytest.fixture(scope="module")
def square_mask():
    mask = Image.new("L", (2 * SIZE, SIZE), 0)
    mask.paste(255, (80, 24, 96, 40))
    return mask


def test_mask_invert_repaints_outside_the_mask(sd, picture, square_mask):
    square = picture.crop((32, 0, 96, 64))
    mask = square_mask.crop((32, 0, 96, 64))
    fields = {"init_image": square, "mask": mask, "mask_blur": 0, "denoising_strength": 0.9}
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[24:40, 48:64] = True
    normal = one(sd, "inpaint", **fields)
    inverted = one(sd, "inpaint", inpainting_mask_invert=1, **fields)
    original = pixels(square)
    assert np.array_equal(normal[~inside], original[~inside]) and np.abs(normal[inside] - original[inside]).mean() > 1
    assert np.array_equal(inverted[inside], original[inside])
    assert np.abs(inverted[~inside] - original[~inside]).mean() > 1


def test_only_masked_repaints_the_crop_at_full_size_and_keeps_everything_else(sd, picture, square_mask):
    seen = []
    fields = {"inpaint_full_res": True, "inpaint_full_res_padding": 8, "mask_blur": 2, "denoising_strength": 0.9}
    result = run(sd, "inpaint", init_image=picture, mask=square_mask, on_step=seen.append, **fields)
    image = pixels(result.images[0])
    assert image.shape == (SIZE, 2 * SIZE, 3)  # the input's size, not the request's 64x64
    assert seen[0].preview().size == (SIZE // 8, SIZE // 8)  # the model worked at the request's size
    init = prepare_init(request(**fields), picture, square_mask)
    x, y, w, h = init.paste_to
    assert w == h and w < SIZE  # the mask's box plus padding, at the request's 1:1 ratio
    outside = np.ones(image.shape[:2], dtype=bool)
    outside[y : y + h, x : x + w] = False
    assert np.array_equal(image[outside], pixels(picture)[outside])
    assert np.abs(image[26:38, 82:94] - pixels(picture)[26:38, 82:94]).mean() > 1
    whole = one(sd, "inpaint", init_image=picture, mask=square_mask, mask_blur=2, denoising_strength=0.9)
    assert whole.shape == (SIZE, SIZE, 3)  # whole picture: the request's size


def test_the_overlay_mask_is_the_request_mask_blurred_once(picture, square_mask):
    init = prepare_init(request(mask_blur=4, width=2 * SIZE), picture, square_mask)
    once = reference_blur(np.asarray(square_mask), 4)
    twice = reference_blur(once, 4)
    repaint = np.asarray(init.mask, dtype=np.float64)
    assert np.abs(repaint - once).max() <= 1 and np.abs(repaint - twice).max() > 30  # blurred once, not twice
    overlay = np.asarray(init.overlay_mask, dtype=np.float64)
    assert np.abs(overlay - np.clip(once * 2, 0, 255)).max() <= 2  # A1111 doubles it for the overlay
    uneven = prepare_init(request(mask_blur_x=6, mask_blur_y=0, width=2 * SIZE), picture, square_mask).mask
    rows = np.asarray(uneven)
    assert rows[10].max() == 0 and rows[30, 70] > 0  # blurred sideways only
