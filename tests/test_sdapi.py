"""The A1111-compatible API with the real `webuiapi` client, and OpenAI's image endpoint, on a live server.

These use the plain engine so they test the API, not a model; tests/test_image_models.py runs the same
client against a real (tiny) diffusers model.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import httpx
import openai
import pytest
from PIL import Image

from aigc_studio.config import load_config
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
    assert r.image.tobytes() == source.tobytes()  # strength 0 changes nothing
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
    assert [m["model_name"] for m in server.api.get_sd_models()] == ["plain"]
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
