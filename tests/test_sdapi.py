"""The A1111-compatible API with the real `webuiapi` client, and OpenAI's image endpoint, on a live server:
endpoints, options, the hidden test models, and a real tiny diffusers model through the same client.

Most use the plain engine so they test the API, not a model; tests/test_sdapi_fields.py holds the field
policy, tests/test_image_models.py more of the real (tiny) models.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest
from aigc_studio.studio import Studio

from .conftest import a1111_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import os

    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("sdapi-home"))
    studio = Studio(load_config(model="echo", image_model="plain"))
    with a1111_server(studio) as live:
        yield live
    studio.close()


def b64png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_txt2img_with_webuiapi(server):
    r = server.api.txt2img(
        prompt="a cat, (red:1.2)",
        negative_prompt="blurry",
        seed=42,
        steps=3,
        width=64,
        height=64,
        batch_size=2,
        sampler_name="Euler a",
        cfg_scale=5,
    )
    assert len(r.images) == 2 and r.images[0].size == (64, 64)
    assert r.info["all_seeds"] == [42, 43] and r.info["sd_model_name"] == "plain"
    assert r.info["infotexts"][1].endswith(
        "CFG scale: 5, Seed: 43, Size: 64x64, Model: plain, Version: aigc-studio-0.1.0"
    )
    assert r.parameters["prompt"] == "a cat, (red:1.2)"
    again = server.api.txt2img(
        prompt="a cat, (red:1.2)",
        negative_prompt="blurry",
        seed=42,
        steps=3,
        width=64,
        height=64,
        sampler_name="Euler a",
        cfg_scale=5,
    )
    assert again.image.tobytes() == r.images[0].tobytes()


def test_img2img_inpaint_and_png_info(server):
    source = server.api.txt2img(prompt="source", seed=1, steps=1, width=64, height=64).image
    r = server.api.img2img(images=[source], prompt="changed", denoising_strength=0.0, width=64, height=64, seed=3)
    # Strength 0 changes nothing but the visible AI mark, drawn again over the same corner.
    left, top, right, bottom = server.studio.images.list(limit=1)[0]["labels"]["visible"]["box"]
    unmarked = np.ones((64, 64), dtype=bool)
    unmarked[top:bottom, left:right] = False
    assert np.array_equal(np.asarray(r.image)[unmarked], np.asarray(source)[unmarked])
    assert "Denoising strength: 0" in r.info["infotexts"][0]
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # repaint the left half only
    r = server.api.img2img(
        images=[source],
        mask_image=mask,
        prompt="left",
        denoising_strength=1.0,
        width=64,
        height=64,
        seed=4,
        mask_blur=0,
    )
    out, src = r.image.load(), source.load()
    assert out[48, 10] == src[48, 10] and out[8, 10] != src[8, 10]
    info = server.api.png_info(r.image)
    assert info.parameters["Prompt"] == "left" and info.parameters["Seed"] == "4"
    assert info.info.startswith("left\nSteps: 20")


def test_models_samplers_schedulers_options(server):
    assert [m["model_name"] for m in server.api.get_sd_models()] == ["plain", "plain2"]
    names = [s["name"] for s in server.api.get_samplers()]
    for required in [
        "Euler a",
        "Euler",
        "LMS",
        "Heun",
        "DPM2",
        "DPM++ 2M",
        "DPM++ SDE",
        "DPM++ 2M SDE",
        "DDIM",
        "UniPC",
        "LCM",
    ]:
        assert required in names
    labels = [s["label"] for s in server.api.get_schedulers()]
    assert labels == ["Automatic", "Karras", "Exponential", "SGM Uniform"]
    server.api.util_set_model("plain")
    assert server.api.get_options()["sd_model_checkpoint"] == "plain"
    r = httpx.post(server.url + "/sdapi/v1/options", json={"sd_model_checkpoint": "no-such-model"})
    assert r.status_code == 404 and "no-such-model" in r.json()["detail"]
    assert httpx.post(server.url + "/sdapi/v1/refresh-checkpoints").status_code == 200


def test_progress_interrupt_and_skip_while_generating(server):
    server.studio.registry.image_engine("plain").step_delay = 0.05
    result = {}

    def generate():
        result["r"] = server.api.txt2img(prompt="slow", steps=20, n_iter=3, width=64, height=64, seed=9)

    t = threading.Thread(target=generate)
    t.start()
    deadline = time.time() + 10
    while (p := server.api.get_progress())["state"]["sampling_step"] < 2:
        assert time.time() < deadline
        time.sleep(0.02)
    assert 0 < p["progress"] < 1 and p["eta_relative"] > 0 and p["state"]["sampling_steps"] == 20
    assert p["current_image"]  # a preview, base64 PNG
    server.api.skip()
    while server.api.get_progress()["state"]["job_no"] < 1:
        time.sleep(0.02)
    server.api.interrupt()
    t.join(10)
    server.studio.registry.image_engine("plain").step_delay = 0
    r = result["r"]
    assert r.info["interrupted"] is True and r.info["all_seeds"] == [9, 10]
    assert server.api.get_progress()["progress"] == 0  # idle again


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"width": 513}, 422, "multiple of 8, got 513"),
        ({"steps": 500}, 422, "less than or equal to 150"),
        ({"cfg_scale": -1}, 422, "greater than or equal to 0"),
        ({"sampler_name": "Euler b"}, 422, "valid: DPM++ 2M"),
        ({"override_settings": {"sd_model_checkpoint": "sd-99"}}, 404, "sd-99"),
    ],
)
def test_bad_txt2img_is_a_clear_4xx_and_queues_nothing(server, body, status, words):
    before = server.studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    r = httpx.post(server.url + "/sdapi/v1/txt2img", json={"prompt": "x", **body})
    assert r.status_code == status and words in r.json()["detail"]
    assert server.studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == before


def test_bad_img2img_inputs(server):
    img = Image.new("RGB", (64, 64))
    r = httpx.post(server.url + "/sdapi/v1/img2img", json={"prompt": "x", "init_images": ["bm90IGFuIGltYWdl"]})
    assert r.status_code == 422 and "not a readable image" in r.json()["detail"]
    r = httpx.post(
        server.url + "/sdapi/v1/img2img",
        json={
            "prompt": "x",
            "init_images": [b64png(img)],
            "mask": b64png(Image.new("L", (32, 32))),
            "width": 64,
            "height": 64,
        },
    )
    assert r.status_code == 422 and "same size" in r.json()["detail"]
    r = httpx.post(server.url + "/sdapi/v1/img2img", json={"prompt": "x", "init_images": []})
    assert r.status_code == 422 and "init_images" in r.json()["detail"]


def test_openai_images_endpoint(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    out = client.images.generate(prompt="a fox", model="plain", size="64x64", n=2, extra_body={"seed": 5})
    first = Image.open(io.BytesIO(base64.b64decode(out.data[0].b64_json)))
    assert first.size == (64, 64) and "Seed: 5," in first.info["parameters"]
    url = client.images.generate(prompt="a fox", model="plain", size="64x64", response_format="url").data[0].url
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (64, 64)
    with pytest.raises(openai.BadRequestError, match="multiple of 8"):
        client.images.generate(prompt="a fox", model="plain", size="100x100")
    with pytest.raises(openai.NotFoundError):
        client.images.generate(prompt="a fox", model="dall-e-9", size="64x64")


def test_info_is_a_json_string_as_in_a1111(server):
    r = httpx.post(
        server.url + "/sdapi/v1/txt2img",
        json={"prompt": "x", "steps": 1, "width": 64, "height": 64, "seed": 12, "send_images": False},
    )
    body = r.json()
    assert body["images"] == [] and isinstance(body["info"], str) and json.loads(body["info"])["seed"] == 12


def jobs(server) -> int:
    return server.studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


def last_request(server) -> dict:
    row = server.studio.db.conn.execute("SELECT request FROM jobs ORDER BY created DESC LIMIT 1").fetchone()
    return json.loads(row["request"])


def post(server, endpoint: str, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/sdapi/v1/{endpoint}", json=body, timeout=60)


def small(**body) -> dict:
    return {"prompt": "x", "steps": 1, "width": 64, "height": 64, "seed": 1, **body}


def img2img_body(**body) -> dict:
    return small(init_images=[b64png(Image.new("RGB", (64, 64), (10, 200, 30)))], **body)


@pytest.fixture
def fresh(aigc_home):
    """A server of its own: these tests change settings that the module's server must keep."""
    studio = Studio(load_config(model="echo", image_model="plain"))
    with a1111_server(studio) as live:
        yield live
    studio.close()


def test_options_store_what_a1111_knows_ignore_the_rest_and_survive_a_restart(fresh):
    r = httpx.post(
        fresh.url + "/sdapi/v1/options",
        json={"CLIP_stop_at_last_layers": 2, "samples_filename_pattern": "[seed]", "no_such_option": 5},
    )
    assert r.status_code == 200
    options = fresh.api.get_options()
    assert options["CLIP_stop_at_last_layers"] == 2 and options["samples_filename_pattern"] == "[seed]"
    assert "no_such_option" not in options
    stored = {row[0] for row in fresh.studio.db.conn.execute("SELECT key FROM a1111_options")}
    assert stored == {"samples_filename_pattern"}
    # the option is the clip skip of later generations that do not set one, from every shell
    r = fresh.api.txt2img(prompt="c", seed=1, steps=1, width=64, height=64)
    assert ", Clip skip: 2," in r.info["infotexts"][0]
    produced = fresh.studio.images.generate(ImageRequest(prompt="cli", steps=1, width=64, height=64))
    assert ", Clip skip: 2," in produced.images[0].infotext
    r = fresh.api.txt2img(
        prompt="c", seed=1, steps=1, width=64, height=64, override_settings={"CLIP_stop_at_last_layers": 3}
    )
    assert ", Clip skip: 3," in r.info["infotexts"][0]
    # a GET answer posted back unchanged is accepted, as clients do
    assert httpx.post(fresh.url + "/sdapi/v1/options", json=fresh.api.get_options()).status_code == 200
    again = Studio(load_config(model="echo", image_model="plain"))
    try:
        options = again.a1111.options()
        assert options["CLIP_stop_at_last_layers"] == 2 and options["samples_filename_pattern"] == "[seed]"
    finally:
        again.close()


def test_options_that_would_change_images_the_studio_cannot_are_refused_and_nothing_is_set(fresh):
    r = httpx.post(
        fresh.url + "/sdapi/v1/options",
        json={"eta_noise_seed_delta": 31337, "jpeg_quality": 95, "CLIP_stop_at_last_layers": 2},
    )
    assert r.status_code == 422 and "eta_noise_seed_delta: the studio cannot shift" in r.json()["detail"]
    options = fresh.api.get_options()
    assert (options["jpeg_quality"], options["CLIP_stop_at_last_layers"], options["eta_noise_seed_delta"]) == (80, 1, 0)
    r = httpx.post(fresh.url + "/sdapi/v1/options", json={"jpeg_quality": "high"})
    assert r.status_code == 422 and "jpeg_quality: must be like 80" in r.json()["detail"]
    # the studio writes PNGs under AIGC_HOME whatever a client asks; GET keeps saying so
    assert httpx.post(fresh.url + "/sdapi/v1/options", json={"samples_format": "jpg"}).status_code == 200
    assert fresh.api.get_options()["samples_format"] == "png"


def test_override_settings_kept_afterwards_when_asked(fresh, tmp_path):
    fresh.studio.registry.add(_fake_checkpoint(tmp_path), model_id="other")
    body = small(override_settings={"CLIP_stop_at_last_layers": 2, "samples_filename_pattern": "[seed]"})
    assert post(fresh, "txt2img", **body).status_code == 200
    assert fresh.api.get_options()["CLIP_stop_at_last_layers"] == 1  # restored afterwards (A1111's default)
    r = post(fresh, "txt2img", **body, override_settings_restore_afterwards=False)
    assert r.status_code == 200
    options = fresh.api.get_options()
    assert (options["CLIP_stop_at_last_layers"], options["samples_filename_pattern"]) == (2, "[seed]")
    assert options["sd_model_checkpoint"] == "plain"


def _fake_checkpoint(tmp_path):
    path = tmp_path / "other.safetensors"
    header = b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0\0\0")
    return path


def test_test_models_are_hidden_unless_the_setting_is_on(aigc_home, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from aigc_studio.cli.main import cli
    from aigc_studio.errors import ModelNotFound

    monkeypatch.delenv("AIGC_TEST_MODELS")
    studio = Studio(load_config())
    studio.registry.add(_fake_checkpoint(tmp_path), model_id="tiny")
    try:
        assert [m.id for m in studio.registry.all()] == ["smollm2-135m", "tiny"]
        for name in ("plain", "echo"):
            with pytest.raises(ModelNotFound, match=f"'{name}' is a test engine, known only with AIGC_TEST_MODELS=1"):
                studio.registry.resolve(name)
        with a1111_server(studio) as live:
            assert [m["model_name"] for m in live.api.get_sd_models()] == ["tiny"]
            ids = [m["id"] for m in httpx.get(live.url + "/v1/models").json()["data"]]
            assert "echo" not in ids and "plain" not in ids
            r = post(live, "txt2img", **small(override_settings={"sd_model_checkpoint": "plain"}))
            assert r.status_code == 404 and "'plain' does not exist" in r.json()["detail"]
        listing = CliRunner().invoke(cli, ["models", "list"]).output
        assert "tiny" in listing and "plain" not in listing and "echo" not in listing
        assert "plain" in CliRunner().invoke(cli, ["models", "list"], env={"AIGC_TEST_MODELS": "1"}).output
    finally:
        studio.close()


def test_scripts_lists_none(server):
    assert server.api.get_scripts() == {"txt2img": [], "img2img": []}


# ---------------------------------------------------------------------------------------------------
# The same with a real (tiny) diffusers model, on a studio whose test models are hidden as a user's are.


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    import os

    from tests.tiny_models import build_tiny_sd

    model = build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"), kind="sd15")
    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("sdapi-tiny-home"))
    studio = Studio(load_config(test_models=0))
    studio.registry.add(model.folder, model_id="tiny-sd15")
    studio.registry.add(model.folder, model_id="tiny-fast", defaults={"steps": 2, "cfg_scale": 1.5})
    with a1111_server(studio) as live:
        yield live
    studio.close()


def pixels(image: Image.Image):
    import numpy as np

    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_webuiapi_picks_the_real_model_not_a_test_one(tiny_server):
    assert sorted(m["model_name"] for m in tiny_server.api.get_sd_models()) == ["tiny-fast", "tiny-sd15"]
    tiny_server.api.util_set_model("tiny")
    assert tiny_server.api.get_options()["sd_model_checkpoint"].startswith("tiny-")


def test_dpmpp_2m_karras_runs_the_karras_schedule_on_a_real_model(tiny_server):
    common = dict(prompt="a house", seed=7, steps=3, width=64, height=64, cfg_scale=5)
    checkpoint = {"sd_model_checkpoint": "tiny-sd15"}
    named = tiny_server.api.txt2img(sampler_name="DPM++ 2M Karras", override_settings=checkpoint, **common)
    assert (named.info["sampler_name"], named.info["scheduler"]) == ("DPM++ 2M", "Karras")
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in named.info["infotexts"][0]
    split = tiny_server.api.txt2img(sampler_name="DPM++ 2M", scheduler="Karras", override_settings=checkpoint, **common)
    other = tiny_server.api.txt2img(
        sampler_name="DPM++ 2M", scheduler="Exponential", override_settings=checkpoint, **common
    )
    assert (pixels(named.image) == pixels(split.image)).all()
    assert (pixels(named.image) != pixels(other.image)).any()


def test_clip_skip_option_changes_a_real_models_image(tiny_server):
    body = dict(prompt="a tree", seed=3, steps=2, width=64, height=64)
    tiny_server.api.util_set_model("tiny-sd15")
    plain_skip = tiny_server.api.txt2img(**body)
    tiny_server.api.set_options({"CLIP_stop_at_last_layers": 2})
    try:
        skipped = tiny_server.api.txt2img(**body)
    finally:
        tiny_server.api.set_options({"CLIP_stop_at_last_layers": 1})
    assert ", Clip skip: 2," in skipped.info["infotexts"][0] and "Clip skip" not in plain_skip.info["infotexts"][0]
    assert (pixels(skipped.image) != pixels(plain_skip.image)).any()


def test_a_models_own_defaults_beat_a1111s_api_defaults(tiny_server):
    r = post(
        tiny_server,
        "txt2img",
        prompt="quick",
        width=64,
        height=64,
        seed=1,
        override_settings={"sd_model_checkpoint": "tiny-fast"},
    )
    info = json.loads(r.json()["info"])
    assert (info["steps"], info["cfg_scale"], info["sampler_name"]) == (2, 1.5, "Euler")
