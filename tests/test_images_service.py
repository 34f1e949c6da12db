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
