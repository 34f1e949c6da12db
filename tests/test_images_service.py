"""Image service and job queue with the plain engine: files, infotext, records, bad input, interrupts."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest
from aigc_studio.errors import InvalidRequest, ModelNotFound
from aigc_studio.images.infotext import read_infotext
from aigc_studio.studio import Studio


@pytest.fixture
def studio(aigc_home):
    s = Studio(load_config(model="echo", image_model="plain"))
    yield s
    s.close()


def jobs_count(studio):
    return studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


def test_txt2img_writes_pngs_with_a1111_infotext_and_records_them(studio, aigc_home):
    req = ImageRequest(
        prompt="a lighthouse, at dusk",
        negative_prompt="blurry",
        steps=3,
        seed=41,
        width=64,
        height=64,
        batch_size=2,
        cfg_scale=6.5,
        sampler_name="dpm++ 2m",
        scheduler="karras",
    )
    result = studio.images.generate(req)
    assert [g.seed for g in result.images] == [41, 42]
    first = result.images[0]
    assert first.path.is_file() and first.path.is_relative_to(aigc_home / "outputs")
    text = read_infotext(first.path)
    assert text == (
        "a lighthouse, at dusk\nNegative prompt: blurry\nSteps: 3, Sampler: DPM++ 2M, Schedule type: Karras, "
        "CFG scale: 6.5, Seed: 41, Size: 64x64, Model: plain, Version: aigc-studio-0.1.0"
    )
    rows = studio.images.list()
    assert {r["seed"] for r in rows} == {41, 42} and rows[0]["params"]["sampler_name"] == "DPM++ 2M"
    state = studio.db.conn.execute("SELECT state, n_images FROM jobs").fetchone()
    assert tuple(state) == ("done", 2)


def test_same_seed_same_pixels_and_random_seed_is_recorded(studio):
    req = ImageRequest(prompt="x", steps=1, seed=5, width=64, height=64)
    a = np.asarray(studio.images.generate(req).images[0].image)
    b = np.asarray(studio.images.generate(req).images[0].image)
    assert (a == b).all()
    random_seed = studio.images.generate(req.model_copy(update={"seed": -1})).images[0]
    assert random_seed.seed >= 0 and f"Seed: {random_seed.seed}," in random_seed.infotext


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"width": 513}, "multiple of 8, got 513"),
        ({"width": 4096}, "less than or equal to 2048"),
        ({"steps": 0}, "greater than or equal to 1"),
        ({"steps": 151}, "less than or equal to 150"),
        ({"cfg_scale": 31}, "less than or equal to 30"),
        ({"denoising_strength": 1.5}, "less than or equal to 1"),
        ({"sampler_name": "Euler b"}, "valid: DPM++ 2M, DPM++ SDE"),
        ({"scheduler": "cosine"}, "valid: Automatic, Karras, Exponential, SGM Uniform"),
    ],
)
def test_bad_parameters_say_what_is_allowed(fields, words):
    from aigc_studio.errors import validation_message

    with pytest.raises(ValidationError) as err:
        ImageRequest(prompt="x", **fields)
    assert words in validation_message(err.value.errors())[0]  # the line the CLI and APIs show


def test_bad_images_and_models_queue_nothing(studio):
    before = jobs_count(studio)
    image = Image.new("RGB", (64, 64))
    with pytest.raises(InvalidRequest, match="mask is 32x32 but the image is 64x64"):
        studio.images.submit(
            ImageRequest(width=64, height=64), "inpaint", init_image=image, mask=Image.new("L", (32, 32))
        )
    with pytest.raises(InvalidRequest, match="needs a mask"):
        studio.images.submit(ImageRequest(width=64, height=64), "inpaint", init_image=image)
    with pytest.raises(InvalidRequest, match="needs an input image"):
        studio.images.submit(ImageRequest(width=64, height=64), "img2img")
    with pytest.raises(ModelNotFound, match="plain"):
        studio.images.submit(ImageRequest(model="sd-99"))
    with pytest.raises(ModelNotFound):
        studio.images.submit(ImageRequest(model="smollm2-135m"))  # a text model is not an image model
    from aigc_studio.services.images import open_image

    with pytest.raises(InvalidRequest, match="not a readable image"):
        open_image(b"GIF89a broken", "init_images")
    assert jobs_count(studio) == before


def test_a_failing_job_leaves_the_queue_and_earlier_outputs_intact(studio):
    ok = studio.images.generate(ImageRequest(prompt="keep", steps=1, width=64, height=64, seed=1))
    engine = studio.registry.image_engine("plain")
    real = engine.generate
    engine.generate = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory"))
    job = studio.images.submit(ImageRequest(prompt="boom", steps=1, width=64, height=64))
    with pytest.raises(RuntimeError, match="out of memory"):
        job.wait(10)
    assert job.state == "failed" and "out of memory" in job.error
    engine.generate = real
    again = studio.images.generate(ImageRequest(prompt="after", steps=1, width=64, height=64, seed=2))
    assert again.images[0].path.is_file() and ok.images[0].path.is_file()
    states = [r[0] for r in studio.db.conn.execute("SELECT state FROM jobs ORDER BY created")]
    assert states == ["done", "failed", "done"]


def test_progress_interrupt_and_skip(studio):
    engine = studio.registry.image_engine("plain")
    engine.step_delay = 0.02
    job = studio.images.submit(ImageRequest(prompt="slow", steps=10, n_iter=3, width=64, height=64, seed=3))
    while job.step < 3 and not job.done.is_set():
        time.sleep(0.005)
    assert 0 < job.progress < 1 and job.eta is not None and job.batches == 3
    assert studio.jobs.skip()  # end batch 1 early, go on with batch 2
    while job.batch < 1:
        time.sleep(0.005)
    while job.step < 3:
        time.sleep(0.005)
    assert studio.jobs.interrupt()
    result = job.wait(10)
    assert job.state == "interrupted" and result.interrupted
    assert [g.seed for g in result.images] == [3, 4]  # batches 1 and 2 finished, batch 3 never ran
    # the next job runs as usual
    later = studio.images.submit(ImageRequest(prompt="later", steps=1, width=64, height=64)).wait(10)
    assert len(later.images) == 1 and not later.interrupted


def test_a_queued_job_can_be_dropped_before_it_starts(studio):
    studio.registry.image_engine("plain").step_delay = 0.02
    running = studio.images.submit(ImageRequest(prompt="a", steps=20, width=64, height=64))
    queued = studio.images.submit(ImageRequest(prompt="b", steps=20, width=64, height=64))
    assert studio.jobs.interrupt(queued.id)
    running.wait(10)
    queued.done.wait(10)
    assert running.state == "done" and queued.state == "interrupted" and queued.result is None


def test_list_by_model_and_delete_removes_record_and_file(studio, tmp_path):
    from aigc_studio.errors import NotFound

    kept = studio.images.generate(ImageRequest(prompt="keep", steps=1, width=64, height=64, seed=1)).images[0]
    gone = studio.images.generate(ImageRequest(prompt="drop", steps=1, width=64, height=64, seed=2)).images[0]
    assert {r["id"] for r in studio.images.list(model="plain")} == {kept.id, gone.id}
    assert studio.images.list(model="other") == []
    studio.images.delete(gone.id)
    assert [r["id"] for r in studio.images.list()] == [kept.id]
    assert not gone.path.exists() and kept.path.exists()
    with pytest.raises(NotFound):
        studio.images.delete(gone.id)


# ---------------------------------------------------------------------------------------------------
# Hires fix, tiling, inpainting and resize modes: what ran, in the image and in its record


def wide_picture() -> Image.Image:
    y, x = np.mgrid[0:80, 0:96]
    return Image.fromarray(np.stack([x * 2, y * 3, (x + y) % 256], axis=-1).astype(np.uint8))


def square_mask(size=(96, 80), box=(60, 30, 76, 46)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def test_the_mask_is_blurred_once_between_the_request_and_the_overlay(studio, monkeypatch):
    from aigc_studio.engines import plain
    from tests.masking_reference import reference_blur

    prepared = []
    real = plain.prepare_init
    monkeypatch.setattr(plain, "prepare_init", lambda *a, **k: prepared.append(real(*a, **k)) or prepared[-1])
    picture, mask = wide_picture(), square_mask()
    req = ImageRequest(prompt="x", steps=1, width=96, height=80, seed=1, mask_blur=4, denoising_strength=1.0)
    result = studio.images.generate(req, "inpaint", init_image=picture, mask=mask)
    once = reference_blur(np.asarray(mask), 4)
    used = np.asarray(prepared[0].overlay_mask, dtype=np.float64)  # the mask the result is laid over with
    assert np.abs(used - np.clip(once * 2, 0, 255)).max() <= 2  # one blur (doubled for the overlay, as A1111)
    assert np.abs(used - np.clip(reference_blur(once, 4) * 2, 0, 255)).max() > 20  # not two
    image = np.asarray(result.images[0].image, dtype=np.int16)
    kept = once == 0
    left, top, right, bottom = result.images[0].labels["visible"]["box"]
    kept[top:bottom, left:right] = False  # the visible AI mark sits in a corner (services/labeling.py)
    assert np.array_equal(image[kept], np.asarray(picture, dtype=np.int16)[kept])
    assert "Mask blur: 4" in result.images[0].infotext


def test_hires_fix_makes_the_upscaled_image_and_records_a1111s_keys(studio):
    steps_seen = []
    req = ImageRequest(
        prompt="a lighthouse",
        steps=2,
        seed=5,
        width=64,
        height=64,
        enable_hr=True,
        hr_second_pass_steps=3,
        denoising_strength=0.5,
    )
    job = studio.images.submit(req)
    assert job.steps == 5  # both passes, from the start
    result = job.wait(10)
    steps_seen.append(job.steps)
    generated = result.images[0]
    assert generated.image.size == (128, 128) and steps_seen == [5]
    assert generated.infotext == (
        "a lighthouse\nSteps: 2, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 5, Size: 64x64, "
        "Model: plain, Denoising strength: 0.5, Hires upscale: 2, Hires steps: 3, Hires upscaler: Latent, "
        "Version: aigc-studio-0.1.0"
    )
    row = studio.images.list()[0]
    assert (row["width"], row["height"]) == (128, 128) and row["params"]["enable_hr"] is True
    info = result.a1111_info()
    assert info["extra_generation_params"] == {"Hires upscale": 2.0, "Hires steps": 3, "Hires upscaler": "Latent"}
    assert info["denoising_strength"] == 0.5
    other = studio.images.generate(
        req.model_copy(
            update={
                "hr_resize_x": 96,
                "hr_scale": 2.0,
                "hr_upscaler": "Lanczos",
                "hr_prompt": "a lighthouse, storm",
                "hr_sampler_name": "DPM++ 2M",
                "hr_scheduler": "Karras",
                "tiling": True,
            }
        )
    ).images[0]
    assert other.image.size == (96, 96)
    assert other.infotext.endswith(
        'Denoising strength: 0.5, Tiling: True, Hires sampler: DPM++ 2M, Hires prompt: "a lighthouse, storm", '
        "Hires schedule type: Karras, Hires resize: 96x0, Hires steps: 3, Hires upscaler: Lanczos, "
        "Version: aigc-studio-0.1.0"
    )


def test_inpaint_area_mask_mode_and_fill_are_honoured_and_recorded(studio):
    from tests.masking_reference import reference_blur

    picture, mask = wide_picture(), square_mask(box=(30, 20, 76, 70))
    req = ImageRequest(
        prompt="x",
        steps=1,
        width=64,
        height=64,
        seed=1,
        inpaint_full_res=True,
        inpainting_mask_invert=1,
        inpainting_fill=2,
    )
    generated = studio.images.generate(req, "inpaint", init_image=picture, mask=mask).images[0]
    assert generated.image.size == (96, 80)  # "Only masked" keeps the input's size
    assert generated.infotext.endswith(
        "Size: 64x64, Model: plain, Denoising strength: 0.75, Mask mode: Inpaint not masked, Mask blur: 4, "
        "Inpaint area: Only masked, Masked area padding: 32, Masked content: latent noise, Version: aigc-studio-0.1.0"
    )
    # inverted: the square is what stays, where the blurred inverted mask is black
    kept = reference_blur(255 - np.asarray(mask), 4) == 0
    assert kept.sum() > 100 and np.array_equal(np.asarray(generated.image)[kept], np.asarray(picture)[kept])
    img2img = studio.images.generate(
        ImageRequest(prompt="x", steps=1, width=64, height=64, seed=1, resize_mode=1), "img2img", init_image=picture
    ).images[0]
    assert img2img.image.size == (64, 64)
    assert "Resize mode: Crop and resize" in img2img.infotext and "Mask" not in img2img.infotext


def test_only_masked_with_a_blank_mask_runs_img2img_and_says_so(studio):
    picture = wide_picture()
    req = ImageRequest(prompt="x", steps=1, width=64, height=64, seed=1, inpaint_full_res=True)
    job = studio.images.submit(req, "inpaint", init_image=picture, mask=Image.new("L", picture.size, 0))
    result = job.wait(10)
    assert job.kind == "img2img" and result.mode == "img2img" and result.images[0].image.size == (64, 64)
    assert "Inpaint area" not in result.images[0].infotext and "Mask blur" not in result.images[0].infotext


def test_every_recorded_field_reads_back_into_the_request(studio):
    from aigc_studio.images.infotext import parse_infotext, to_request_fields

    hires = ImageRequest(
        prompt="a fox, (red:1.2)",
        negative_prompt="blurry",
        steps=3,
        seed=11,
        width=64,
        height=64,
        tiling=True,
        clip_skip=2,
        enable_hr=True,
        hr_scale=1.5,
        hr_upscaler="Latent (bicubic antialiased)",
        hr_second_pass_steps=2,
        hr_sampler_name="Euler",
        hr_scheduler="Exponential",
        hr_prompt="a fox, snow",
        hr_negative_prompt="lowres",
        denoising_strength=0.4,
    )
    inpaint = ImageRequest(
        prompt="a pond",
        steps=2,
        seed=3,
        width=64,
        height=64,
        mask_blur=6,
        inpainting_fill=0,
        inpainting_mask_invert=1,
        inpaint_full_res=True,
        inpaint_full_res_padding=12,
        denoising_strength=0.6,
    )
    img2img = ImageRequest(prompt="a hill", steps=2, seed=4, width=64, height=64, resize_mode=2, denoising_strength=0.3)
    cases = [(hires, "txt2img", {}), (inpaint, "inpaint", {"mask": square_mask()}), (img2img, "img2img", {})]
    for req, mode, images in cases:
        if mode != "txt2img":
            images["init_image"] = wide_picture()
        generated = studio.images.generate(req, mode, **images).images[0]
        fields = to_request_fields(parse_infotext(read_infotext(generated.path)))
        expected = {name: getattr(req, name) for name in req.model_fields_set if name not in ("seed",)}
        assert {name: fields[name] for name in expected} == expected, mode


def test_hires_fix_and_mode_mismatches_are_refused_before_queueing(studio):
    before = jobs_count(studio)
    picture = wide_picture()
    with pytest.raises(InvalidRequest, match="enable_hr: hires fix is for txt2img, not img2img") as err:
        studio.images.submit(ImageRequest(enable_hr=True, width=64, height=64), "img2img", init_image=picture)
    assert err.value.param == "enable_hr"
    with pytest.raises(InvalidRequest, match=r"hires fix would make a 4096x4096 image; each side must be 64 to 2048"):
        studio.images.submit(ImageRequest(enable_hr=True, hr_scale=4, width=1024, height=1024))
    with pytest.raises(InvalidRequest, match="hires fix would make a 3000x3000 image"):
        studio.images.submit(ImageRequest(enable_hr=True, hr_resize_x=3000, width=1024, height=1024))
    assert jobs_count(studio) == before


def test_png_info_reads_hires_and_inpaint_records_back_into_request_fields(studio):
    import base64

    import httpx

    from tests.conftest import a1111_server

    hires = studio.images.generate(
        ImageRequest(prompt="x", steps=1, seed=2, width=64, height=64, enable_hr=True, hr_scale=1.5, tiling=True)
    ).images[0]
    inpaint = studio.images.generate(
        ImageRequest(prompt="y", steps=1, seed=3, width=64, height=64, inpaint_full_res=True, mask_blur=3),
        "inpaint",
        init_image=wide_picture(),
        mask=square_mask(),
    ).images[0]
    with a1111_server(studio) as live:
        answers = [
            httpx.post(live.url + "/sdapi/v1/png-info", json={"image": base64.b64encode(g.path.read_bytes()).decode()})
            for g in (hires, inpaint)
        ]
    assert [answer.status_code for answer in answers] == [200, 200]
    fields = [answer.json()["request"] for answer in answers]
    assert (fields[0]["enable_hr"], fields[0]["hr_scale"], fields[0]["tiling"], fields[0]["width"]) == (
        True,
        1.5,
        True,
        64,
    )
    assert (fields[1]["inpaint_full_res"], fields[1]["inpaint_full_res_padding"], fields[1]["mask_blur"]) == (
        True,
        32,
        3,
    )
