"""Limits per user, through a real server on loopback: each refusal's status, Retry-After and message in
each API's own error shape (OpenAI's on /v1 through the openai client, A1111's on /sdapi, the studio's on
/api), a second user untouched by the first one's use, and nothing left behind by a refused request."""

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

from aigc_studio.api.app import create_app
from aigc_studio.config import load_config
from aigc_studio.principal import Principal, acting_as
from aigc_studio.studio import Studio

from .conftest import LiveServer


class ActAsHeader:
    """Test only: runs each request as the user its ``X-Test-User`` header names, as the authentication
    middleware will (it is not on this branch); without the header, as the local user."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        name = dict(scope.get("headers", [])).get(b"x-test-user") if scope["type"] == "http" else None
        if name is None:
            await self.app(scope, receive, send)
            return
        with acting_as(Principal(user_id=f"u-{name.decode()}", name=name.decode())):
            await self.app(scope, receive, send)


class Server:
    def __init__(self, **settings):
        self.studio = Studio(load_config(model="echo", image_model="plain", **settings))
        self.live = LiveServer(ActAsHeader(create_app(self.studio, load_default=False)))

    def __enter__(self) -> Server:
        self.url = self.live.__enter__().url
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)
        self.studio.close()

    def post(self, path: str, user: str | None = None, **kwargs) -> httpx.Response:
        headers = {"X-Test-User": user} if user else {}
        return httpx.post(self.url + path, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, user: str | None = None) -> httpx.Response:
        return httpx.get(self.url + path, headers={"X-Test-User": user} if user else {}, timeout=60)

    def openai(self, user: str | None = None) -> openai.OpenAI:
        # No retries: the client would wait Retry-After and try again, hiding the refusal.
        headers = {"X-Test-User": user} if user else {}
        return openai.OpenAI(base_url=self.url + "/v1", api_key="x", max_retries=0, default_headers=headers)

    def state(self) -> tuple[int, int, int, list[str]]:
        """What a refused request must leave as it was: jobs, answers, images recorded, files written."""
        conn = self.studio.db.conn
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("jobs", "responses", "images")]
        outputs = self.studio.config.outputs_dir
        files = sorted(str(p.relative_to(outputs)) for p in outputs.rglob("*") if p.is_file())
        return (*counts, files)


def chat(**body) -> dict:
    return {"model": "echo", "messages": [{"role": "user", "content": "one two three"}], **body}


def small_image(**body) -> dict:
    """An A1111 request for one small image (the server's default image model: plain)."""
    return {"prompt": "x", "steps": 1, "width": 64, "height": 64, "seed": 1, **body}


def assert_retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429
    value = response.headers["Retry-After"]
    assert value.isdigit() and int(value) >= 1, value
    return int(value)


def test_rate_limit_per_user_on_each_api(aigc_home):
    with Server(rate_limit_per_minute=3) as server:
        # /v1 through the openai client: three requests pass, the fourth is a RateLimitError.
        client = server.openai("ana")
        for _ in range(3):
            client.models.list()
        before = server.state()
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(**chat())
        assert server.state() == before  # refused before anything ran or was recorded
        response = refused.value.response
        assert 1 <= assert_retry_after(response) <= 20  # a token comes back every 20 s at 3 a minute
        error = response.json()["error"]
        assert error["code"] == "rate_limit_exceeded"
        assert "3 requests per minute" in error["message"] and "rate_limit_per_minute" in error["message"]

        # Another user has a bucket of their own, on every API.
        assert server.openai("bo").chat.completions.create(**chat()).choices[0].message.content == "one two three"

        # /sdapi: A1111's shape ("detail"), the same status and header.
        for _ in range(3):
            assert server.get("/sdapi/v1/samplers", "cy").status_code == 200
        response = server.get("/sdapi/v1/sd-models", "cy")
        assert_retry_after(response)
        assert "3 requests per minute" in response.json()["detail"] and response.json()["error"] == "TooManyRequests"

        # /api: the studio's shape; the health check and progress polls are never counted.
        for _ in range(3):
            assert server.get("/api/models", "di").status_code == 200
        for _ in range(5):
            assert server.get("/health", "di").status_code == 200
            assert server.get("/sdapi/v1/progress", "di").status_code == 200
        response = server.get("/api/models", "di")
        assert_retry_after(response)
        assert "rate_limit_per_minute" in response.json()["error"]["message"]

        # Without a user, every loopback client is the one local user: a bucket of its own.
        for _ in range(3):
            assert server.get("/api/models").status_code == 200
        assert server.get("/api/models").status_code == 429
        assert server.get("/api/models", "bo").status_code == 200

        # The schema says so: a 429 with Retry-After on each counted operation, in the path's shape.
        paths = server.get("/openapi.json").json()["paths"]
        refused = paths["/sdapi/v1/txt2img"]["post"]["responses"]["429"]
        assert refused["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/A1111ErrorBody"}
        assert refused["headers"]["Retry-After"]["schema"] == {"type": "integer"}
        assert "429" in paths["/v1/chat/completions"]["post"]["responses"]
        assert "429" not in paths["/health"]["get"]["responses"]
        assert "429" not in paths["/api/jobs/{job_id}"]["get"]["responses"]


def test_the_rate_comes_back_with_time(aigc_home):
    with Server(rate_limit_per_minute=60) as server:  # a burst of 60, then one a second
        answers = []
        while len(answers) < 300 and (not answers or answers[-1].status_code == 200):
            answers.append(server.get("/api/models", "ana"))
        # The burst passed whole (more, as time went by). The Retry-After is the refusal's own: a request
        # sent after it may already find the next token (one a second) and pass.
        assert answers[-1].status_code == 429 and len(answers) > 60
        time.sleep(assert_retry_after(answers[-1]))
        assert server.get("/api/models", "ana").status_code == 200  # Retry-After said when


def test_concurrent_generations_per_user_chat_and_images(aigc_home):
    with Server(max_concurrent_jobs=1) as server:
        server.studio.registry.engine("echo").delay = 0.1  # a word every 100 ms: the answer is still streaming
        before = server.state()
        stream = server.openai("ana").chat.completions.create(
            **chat(messages=[{"role": "user", "content": " ".join(["word"] * 30)}]), stream=True
        )
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"

        # A second answer of the same user: 429 with Retry-After, through the openai client.
        with pytest.raises(openai.RateLimitError) as refused:
            server.openai("ana").chat.completions.create(**chat())
        assert_retry_after(refused.value.response)
        error = refused.value.response.json()["error"]
        assert error["code"] == "concurrency_limit_exceeded"
        assert "the limit is 1 per user" in error["message"] and "max_concurrent_jobs" in error["message"]
        # An image job of the same user too, in A1111's shape.
        response = server.post("/sdapi/v1/txt2img", "ana", json=small_image())
        assert_retry_after(response)
        assert "max_concurrent_jobs" in response.json()["detail"]

        # Another user is not held back by the first one's answer.
        answer = server.openai("bo").chat.completions.create(**chat())
        assert answer.choices[0].message.content == "one two three"

        text = first.choices[0].delta.content + "".join(c.choices[0].delta.content or "" for c in stream)
        assert text.split() == ["word"] * 30  # the running answer finished whole
        # Once it has ended, the user may start another (the slot is given back when the engine is done).
        deadline = time.time() + 10
        while server.studio.limits.running("user:u-ana"):
            assert time.time() < deadline
            time.sleep(0.02)
        assert server.openai("ana").chat.completions.create(**chat()).choices[0].message.content == "one two three"
        jobs, responses, images, files = server.state()
        # The refused ones left nothing: two answers of ana and one of bo are kept, no job was queued.
        assert (jobs, responses, images, files) == (before[0], before[1] + 3, before[2], before[3])


def test_a_queued_image_job_counts_until_it_ends(aigc_home):
    with Server(max_concurrent_jobs=1) as server:
        server.studio.registry.image_engine("plain").step_delay = 0.3
        done: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: done.append(server.post("/sdapi/v1/txt2img", "ana", json=small_image(steps=4)))
        )
        worker.start()
        deadline = time.time() + 20
        # the slot is taken just before the job's record is written: wait for both
        while not server.studio.limits.running("user:u-ana") or server.state()[0] < 1:
            assert time.time() < deadline
            time.sleep(0.02)
        before = server.state()
        response = server.post("/sdapi/v1/txt2img", "ana", json=small_image())
        assert_retry_after(response)
        assert "this image job" in response.json()["detail"]
        assert server.state() == before  # nothing queued, recorded or written by the refusal
        # Another user's job is queued behind it and runs.
        other = server.post("/sdapi/v1/txt2img", "bo", json=small_image())
        worker.join(60)
        assert done[0].status_code == 200 and len(done[0].json()["images"]) == 1
        assert other.status_code == 200 and len(other.json()["images"]) == 1
        assert server.state()[0] == before[0] + 1  # bo's job; ana's running one was already recorded
        assert server.studio.limits.running("user:u-ana") == 0


def png_of(size: int, noise: bool = True) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8) if noise else None
    image = Image.fromarray(pixels) if noise else Image.new("RGB", (size, size))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_upload_and_body_limits(aigc_home):
    with Server(max_upload_mb=1, max_body_mb=4) as server:
        big = png_of(700)  # noise does not compress: about 1.4 MiB
        assert 2**20 < len(big) < 2 * 2**20
        before = server.state()
        response = server.post(
            "/sdapi/v1/img2img", json=small_image(init_images=[base64.b64encode(big).decode()], width=64)
        )
        assert response.status_code == 413
        assert "init_images is 1.4 MiB" in response.json()["detail"]
        assert "the limit for an uploaded file is 1 MiB (setting max_upload_mb)" in response.json()["detail"]
        response = server.post("/sdapi/v1/png-info", json={"image": base64.b64encode(big).decode()})
        assert response.status_code == 413 and "max_upload_mb" in response.json()["detail"]
        response = server.post("/api/inspect", files={"file": ("big.png", big, "image/png")})
        assert response.status_code == 413
        assert response.json()["error"]["param"] == "file" and "max_upload_mb" in response.json()["error"]["message"]
        # The web UI's uploads (Gradio's upload route) have the same limit.
        response = server.post("/gradio_api/upload", files={"files": ("big.png", big, "image/png")})
        assert response.status_code == 413, response.text
        assert server.post("/gradio_api/upload", files={"files": ("a.png", png_of(8), "image/png")}).status_code == 200
        # A small upload passes.
        small = png_of(64, noise=False)
        response = server.post("/sdapi/v1/img2img", json=small_image(init_images=[base64.b64encode(small).decode()]))
        assert response.status_code == 200
        # The body's own limit (BodyLimit) names its setting, in the path's shape.
        response = server.post("/v1/chat/completions", content=b"x" * (5 * 2**20))
        assert response.status_code == 413
        assert "4 MiB" in response.json()["error"]["message"] and "max_body_mb" in response.json()["error"]["message"]
        after = server.state()
        assert after[0] == before[0] + 1 and after[2] == before[2] + 1  # the one small img2img, nothing else


def test_max_tokens_per_request(aigc_home):
    with Server(max_tokens_per_request=5) as server:
        before = server.state()
        with pytest.raises(openai.BadRequestError) as refused:
            server.openai().chat.completions.create(**chat(max_tokens=6))
        error = refused.value.response.json()["error"]
        assert error["param"] == "max_tokens"
        assert error["message"] == (
            "max_tokens must be from 1 to 5 on this server (setting max_tokens_per_request), got 6"
        )
        with pytest.raises(openai.BadRequestError):
            server.openai().completions.create(model="echo", prompt="a b", max_tokens=100)
        # The studio's own API, in its shape.
        response = server.post(
            "/api/compare", json={"prompt": "hi", "models": ["echo", "echo2"], "options": {"max_tokens": 9}}
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == "max_tokens"
        assert "from 1 to 5" in response.json()["error"]["message"]
        assert server.state() == before  # nothing recorded

        # Within the limit, and unset: an answer never runs past it (finish reason "length").
        answer = server.openai().chat.completions.create(**chat(max_tokens=2))
        assert answer.choices[0].message.content == "one two "
        long = " ".join(f"w{i}" for i in range(20))
        answer = server.openai().chat.completions.create(**chat(messages=[{"role": "user", "content": long}]))
        assert answer.usage.completion_tokens == 5 and answer.choices[0].finish_reason == "length"
        # The record says what ran: the max_tokens the limit gave the request.
        row = server.studio.db.conn.execute("SELECT options FROM responses ORDER BY created DESC LIMIT 1").fetchone()
        assert json.loads(row["options"])["max_tokens"] == 5


def test_max_pixels_per_request(aigc_home):
    with Server(max_request_megapixels=1) as server:
        before = server.state()
        # 4 × 512x512 = 1.05 megapixels: A1111's shape (its 422 for a request it refuses), naming the field.
        response = server.post("/sdapi/v1/txt2img", json=small_image(width=512, height=512, batch_size=4))
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail.startswith("batch_size: this request makes 4 images of 512x512 (1.0 megapixels)")
        assert "the limit is 1 megapixels per request (setting max_request_megapixels)" in detail
        assert "batch_size × n_iter must be at most 3 at 512x512" in detail
        response = server.post("/sdapi/v1/txt2img", json=small_image(width=512, height=512, batch_size=2, n_iter=2))
        assert (
            response.status_code == 422 and "n_iter must be from 1 to 1 with batch_size 2" in response.json()["detail"]
        )
        # Hires fix counts the size it makes.
        body = small_image(width=512, height=512, enable_hr=True, hr_scale=2, denoising_strength=0.5)
        response = server.post("/sdapi/v1/txt2img", json=body)
        assert response.status_code == 422
        assert response.json()["detail"].startswith("hr_scale: this request makes 1 image of 1024x1024 (hires fix")
        # OpenAI's images endpoint, in OpenAI's shape.
        response = server.post(
            "/v1/images/generations", json={"prompt": "x", "model": "plain", "size": "512x512", "n": 4, "steps": 1}
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == "batch_size"
        # The studio's own API: a comparison is refused whole, before any cell is queued.
        response = server.post(
            "/api/compare/images",
            json={**small_image(width=1024, height=1024), "models": ["plain", "plain2"]},
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == "width"
        assert "width × height must be at most 1,000,000 pixels" in response.json()["error"]["message"]
        assert server.state() == before
        # Within the limit it runs.
        response = server.post("/sdapi/v1/txt2img", json=small_image(width=512, height=512, batch_size=3))
        assert response.status_code == 200 and len(response.json()["images"]) == 3
