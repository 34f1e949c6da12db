"""The studio under concurrency and bad input: the image job queue, waiting without threads, clients
that go away, checks before queueing, one architecture detector, upload limits.

Text workers (leases, shutdown) are in tests/test_registry.py; settings, the server log and request
body limits in tests/test_server.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sqlite3
import struct
import sys
import threading
import time
import zlib

import httpx
import pytest
from PIL import Image

from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest
from aigc_studio.errors import InvalidRequest, ModelUnavailable, TooLarge
from aigc_studio.services.images import open_image
from aigc_studio.studio import Studio

from .conftest import a1111_server

SMALL = {"width": 64, "height": 64}


def jobs_count(studio: Studio) -> int:
    return studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


def job_states(studio: Studio) -> list[str]:
    return [r[0] for r in studio.db.conn.execute("SELECT state FROM jobs ORDER BY created")]


def wait_until(condition, seconds: float = 10, what: str = "the condition") -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.01)


def b64png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def png_claiming(width: int, height: int) -> bytes:
    """A few bytes of valid PNG structure whose IHDR says ``width`` × ``height``; no real pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture
def studio(aigc_home):
    s = Studio(load_config(model="echo", image_model="plain"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import os

    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("robust-home"))
    studio = Studio(load_config(model="echo", image_model="plain"))
    with a1111_server(studio) as live:
        yield live
    studio.close()


@pytest.fixture
def slow_plain(server):
    engine = server.studio.registry.image_engine("plain")
    engine.step_delay = 0.05
    yield engine
    engine.step_delay = 0.0
    for job in server.studio.jobs.pending():
        server.studio.jobs.interrupt(job.id)
    wait_until(lambda: not server.studio.jobs.pending(), what="the queue emptying")


# -- the job queue survives failing records and failing jobs; its table is thread-safe -------------


def test_a_failing_database_write_fails_the_job_not_the_queue(studio, monkeypatch):
    real_record = studio.jobs._record
    failures = {"running": 1, "done": 1}

    def flaky_record(job):
        if failures.get(job.state):
            failures[job.state] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        real_record(job)

    monkeypatch.setattr(studio.jobs, "_record", flaky_record)
    first = studio.images.submit(ImageRequest(prompt="not started", steps=1, **SMALL))
    with pytest.raises(RuntimeError, match="record could not be written, so it did not run: disk I/O error"):
        first.wait(10)
    assert first.state == "failed" and "disk I/O error" in first.error
    second = studio.images.submit(ImageRequest(prompt="ran, not recorded", steps=1, **SMALL))
    with pytest.raises(sqlite3.OperationalError):
        second.wait(10)
    assert second.state == "failed" and second.error.startswith("the job ran but its record could not be written")
    third = studio.images.submit(ImageRequest(prompt="all well", steps=1, seed=3, **SMALL)).wait(10)
    assert third.images[0].seed == 3 and third.images[0].path.is_file()
    assert job_states(studio)[-1] == "done"


def test_a_job_that_raises_a_bug_is_failed_with_its_reason_and_the_next_runs(studio, caplog):
    engine = studio.registry.image_engine("plain")
    real = engine.generate
    engine.generate = lambda *a, **k: {}["a bug in the engine"]
    job = studio.images.submit(ImageRequest(prompt="boom", steps=1, **SMALL))
    with pytest.raises(KeyError):
        job.wait(10)
    assert job.state == "failed" and job.error == "'a bug in the engine'"
    # A real bug keeps its traceback in the log; a user's mistake is one line (tests/test_server.py).
    assert any(r.exc_info for r in caplog.records if r.name == "aigc_studio.jobs")
    engine.generate = real
    assert studio.images.submit(ImageRequest(prompt="next", steps=1, **SMALL)).wait(10).images


def test_the_job_table_can_be_read_while_the_worker_prunes_it(studio):
    # Many short jobs make the worker prune its table all the time; readers on other threads must
    # never see it change under them ("dictionary changed size during iteration").
    errors: list[BaseException] = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                for job in studio.jobs.pending():
                    studio.jobs.get(job.id)
            except Exception as exc:
                errors.append(exc)
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    readers = [threading.Thread(target=read, daemon=True) for _ in range(3)]
    try:
        for r in readers:
            r.start()
        jobs = [studio.images.submit(ImageRequest(prompt="p", steps=1, **SMALL)) for _ in range(150)]
        for job in jobs:
            job.wait(30)
    finally:
        stop.set()
        sys.setswitchinterval(old)
        for r in readers:
            r.join(10)
    assert errors == []
    assert job_states(studio).count("done") == 150


def test_shutdown_interrupts_the_running_image_job_leaves_queued_ones_queued_then_frees_the_model(studio):
    studio.registry.image_engine("plain").step_delay = 0.05
    jobs = [studio.images.submit(ImageRequest(prompt=str(i), steps=100, **SMALL)) for i in range(3)]
    wait_until(lambda: jobs[0].step >= 1, what="the first job starting")
    started = time.perf_counter()
    studio.close(timeout=10)
    assert time.perf_counter() - started < 5  # interrupted, not run to the end (3 × 100 × 50 ms)
    # The queued ones stay queued for the next start (test_durable.py); their waiters are told so.
    assert [j.state for j in jobs] == ["interrupted", "queued", "queued"]
    assert job_states(studio) == ["interrupted", "queued", "queued"]
    assert jobs[1].started is None and jobs[2].started is None  # the queued ones never ran
    with pytest.raises(ModelUnavailable, match="stays queued and runs when the studio starts again"):
        jobs[1].wait(1)
    assert studio.registry.loaded_image_model() is None


def test_shutdown_never_frees_an_image_engine_that_is_still_generating(studio, caplog):
    engine = studio.registry.image_engine("plain")
    started, release = threading.Event(), threading.Event()
    closed = []
    real = engine.generate

    def stubborn(*args, **kwargs):  # ignores interrupt until the test releases it
        started.set()
        release.wait(30)
        return real(*args, **{**kwargs, "control": None})

    engine.generate = stubborn
    engine.close = lambda: closed.append(True)
    job = studio.images.submit(ImageRequest(prompt="stuck", steps=1, **SMALL))
    assert started.wait(10)
    studio.close(timeout=0.5)
    assert closed == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith(f"image job {job.id} is still running") for w in warnings)
    assert any(w.startswith("image model 'plain' is still generating") for w in warnings)
    release.set()
    assert job.done.wait(10) and job.state == "interrupted" and len(job.result.images) == 1


# -- waiting for image jobs holds no server thread; a client that goes away cancels its job --------


def test_a_hundred_waiting_image_requests_leave_the_server_answering(server, slow_plain):
    studio = server.studio
    before = jobs_count(studio)

    async def scenario() -> dict[str, float]:
        limits = httpx.Limits(max_connections=150, max_keepalive_connections=150)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as clients:
            body = {"prompt": "queued", "steps": 40, **SMALL}
            requests = [asyncio.create_task(clients.post("/sdapi/v1/txt2img", json=body)) for _ in range(100)]
            deadline = time.time() + 60
            while jobs_count(studio) - before < 100:
                assert time.time() < deadline, f"only {jobs_count(studio) - before} of 100 jobs were queued"
                await asyncio.sleep(0.05)
            timings = {}
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as probe:
                for path in ("/health", "/sdapi/v1/progress", "/v1/models"):
                    started = time.perf_counter()
                    r = await probe.get(path)
                    timings[path] = time.perf_counter() - started
                    assert r.status_code == 200, (path, r.text)
                progress = (await probe.get("/sdapi/v1/progress")).json()
                timings["job_count"] = progress["state"]["job_count"]
            for request in requests:  # the clients go away: every job they were waiting for is cancelled
                request.cancel()
            await asyncio.gather(*requests, return_exceptions=True)
            return timings

    timings = asyncio.run(scenario())
    assert timings["job_count"] >= 90
    for path in ("/health", "/sdapi/v1/progress", "/v1/models"):
        assert timings[path] < 1.0, f"{path} took {timings[path]:.2f} s with 100 image requests waiting"
    wait_until(
        lambda: not {"queued", "running"} & set(job_states(studio)[before:]),
        seconds=20,
        what="every abandoned job being recorded as interrupted",
    )
    states = job_states(studio)[before:]
    assert states.count("interrupted") >= 90 and set(states) <= {"done", "interrupted"}
    # The server and its queue go on as before.
    slow_plain.step_delay = 0
    assert server.api.txt2img(prompt="after", steps=1, seed=5, **SMALL).info["all_seeds"] == [5]


def test_a_client_that_disconnects_stops_its_running_image_job(server, slow_plain):
    studio = server.studio
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/sdapi/v1/txt2img", json={"prompt": "gone", "steps": 60, **SMALL}, timeout=0.6)
    job = studio.jobs.pending()[0] if studio.jobs.pending() else None
    wait_until(lambda: job_states(studio)[-1] == "interrupted", what="the job being interrupted")
    row = studio.db.conn.execute("SELECT started, finished FROM jobs ORDER BY created DESC LIMIT 1").fetchone()
    assert row["started"] is not None and row["finished"] - row["started"] < 2.5  # 60 steps would take 3 s
    assert job is None or job.step < 60


def test_a_client_that_disconnects_drops_its_queued_image_job(server, slow_plain):
    studio = server.studio
    kept: dict = {}
    first = threading.Thread(
        target=lambda: kept.update(r=server.api.txt2img(prompt="kept", steps=30, seed=7, **SMALL)), daemon=True
    )
    first.start()
    wait_until(lambda: studio.jobs.current is not None, what="the first job starting")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/images/generations", json={"prompt": "gone", "size": "64x64"}, timeout=0.5)
    wait_until(lambda: job_states(studio)[-1] == "interrupted", seconds=3, what="the queued job being dropped")
    row = studio.db.conn.execute("SELECT started FROM jobs ORDER BY created DESC LIMIT 1").fetchone()
    assert row["started"] is None  # dropped before it ever ran
    first.join(20)
    assert kept["r"].info["all_seeds"] == [7] and not kept["r"].info["interrupted"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_text_client_that_disconnects_cancels_its_answer(server, path, stream):
    studio = server.studio
    engine = studio.registry.engine("echo")
    engine.delay = 0.05
    words = " ".join(f"w{i}" for i in range(200))  # 10 s to echo in full
    body = {"model": "echo", "stream": stream}
    body.update({"messages": [{"role": "user", "content": words}]} if "chat" in path else {"prompt": words})
    try:
        if stream:
            with httpx.stream("POST", server.url + path, json=body, timeout=10) as r:
                # Read until the first words arrive: the answer is being generated; now go away.
                assert next(line for line in r.iter_lines() if "w0" in line)
        else:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(server.url + path, json=body, timeout=0.6)

        def last_record():
            return studio.db.conn.execute(
                "SELECT status, finish_reason, completion_tokens FROM responses ORDER BY created DESC LIMIT 1"
            ).fetchone()

        wait_until(lambda: last_record() and last_record()["status"] == "cancelled", seconds=5, what="cancelling")
        assert last_record()["finish_reason"] == "cancelled" and 0 < last_record()["completion_tokens"] < 100
    finally:
        engine.delay = 0
    # The model's worker is free at once for the next request.
    started = time.perf_counter()
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "next one"}]},
        timeout=10,
    )
    assert r.json()["choices"][0]["message"]["content"] == "next one" and time.perf_counter() - started < 2


# -- checks that can fail run before queueing, from capabilities known without loading ------------


@pytest.fixture(scope="module")
def pix2pix(tmp_path_factory):
    from tests.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-p2p"), kind="pix2pix")


def test_inpaint_with_an_instruct_pix2pix_model_is_refused_before_queueing(server, pix2pix):
    studio = server.studio
    studio.registry.add(pix2pix.folder, model_id="p2p-folder")
    assert studio.registry.resolve("p2p-folder").capabilities == ["edit"]
    server.api.txt2img(prompt="load plain", steps=1, **SMALL)
    assert studio.registry.loaded_image_model() == "plain"
    before = jobs_count(studio)
    image = Image.new("RGB", (64, 64), "gray")
    r = httpx.post(
        server.url + "/sdapi/v1/img2img",
        json={
            "prompt": "x",
            "init_images": [b64png(image)],
            "mask": b64png(Image.new("L", (64, 64), 255)),
            "override_settings": {"sd_model_checkpoint": "p2p-folder"},
            **SMALL,
        },
    )
    assert r.status_code == 422
    assert r.json()["detail"] == "model 'p2p-folder' cannot do inpaint; it can do edit"
    assert jobs_count(studio) == before
    assert studio.registry.loaded_image_model() == "plain"  # the bad request swapped nothing


def test_img2img_with_an_instruct_pix2pix_file_is_queued_as_edit(studio, pix2pix):
    info = studio.registry.add(pix2pix.single_file, model_id="p2p-file")  # capabilities from its header
    assert (info.unet_in_channels, info.capabilities) == (8, ["edit"])
    job = studio.images.submit(
        ImageRequest(prompt="make it snow", model="p2p-file", steps=1, seed=1, **SMALL),
        "img2img",
        init_image=Image.new("RGB", (64, 64), "gray"),
    )
    assert job.kind == "edit" and job.request["mode"] == "edit"  # recorded as what will run
    assert job.wait(120).mode == "edit"


def test_capabilities_of_a_model_added_before_are_read_once_and_kept(studio, pix2pix):
    studio.registry.add(pix2pix.single_file, model_id="old-p2p")
    with studio.db.tx() as conn:  # as an older studio stored it: no channels, every mode claimed
        info = json.loads(conn.execute("SELECT info FROM models WHERE id = 'old-p2p'").fetchone()[0])
        info.pop("unet_in_channels")
        info["capabilities"] = ["txt2img", "img2img", "inpaint"]
        conn.execute("UPDATE models SET info = ? WHERE id = 'old-p2p'", (json.dumps(info),))
    with pytest.raises(InvalidRequest, match="model 'old-p2p' cannot do txt2img; it can do edit"):
        studio.images.submit(ImageRequest(prompt="x", model="old-p2p", **SMALL))
    stored = json.loads(studio.db.conn.execute("SELECT info FROM models WHERE id = 'old-p2p'").fetchone()[0])
    assert (stored["unet_in_channels"], stored["capabilities"]) == (8, ["edit"])
    assert studio.registry.loaded_image_model() is None  # never loaded to find out


# -- one architecture detector, for the A1111 import, registry.add and the engine -----------------


def placeholder(path, in_channels: int, text_encoder: str = "cond_stage_model.transformer.text_model.") -> None:
    """A safetensors file with a checkpoint's key names and shapes, and one byte per tensor."""
    keys = {
        "model.diffusion_model.input_blocks.0.0.weight": [320, in_channels, 3, 3],
        f"{text_encoder}final_layer_norm.weight": [768],
    }
    header = {k: {"dtype": "U8", "shape": v, "data_offsets": [i, i + 1]} for i, (k, v) in enumerate(keys.items())}
    blob = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * len(keys))


@pytest.mark.parametrize(
    "in_channels, arch, capabilities",
    [
        (4, "sd15", ["txt2img", "img2img", "inpaint"]),
        (9, "sd15-inpainting", ["txt2img", "img2img", "inpaint"]),
        (8, "sd15-pix2pix", ["edit"]),
    ],
)
def test_a1111_import_and_registry_use_the_engines_detector(studio, tmp_path, in_channels, arch, capabilities):
    from aigc_studio.images.checkpoint_keys import detect_architecture
    from aigc_studio.models.a1111 import scan_a1111

    checkpoint = tmp_path / "webui" / "models" / "Stable-diffusion" / "model.safetensors"
    placeholder(checkpoint, in_channels)
    assert detect_architecture(checkpoint) == arch  # what the engine's single-file loading uses
    (found,) = scan_a1111(tmp_path / "webui", hashes=False)
    assert found.architecture == arch
    outcome = studio.models.import_a1111(tmp_path / "webui", hashes=False)
    assert outcome.added == [("model", "model.safetensors")]
    info = studio.registry.resolve("model")
    assert (info.unet_in_channels, info.capabilities) == (in_channels, capabilities)


def test_a_checkpoint_the_detector_cannot_read_is_still_added_and_fails_when_loaded(studio, tmp_path):
    unknown = tmp_path / "odd.safetensors"
    placeholder(unknown, 4, text_encoder="some_other_encoder.")
    info = studio.registry.add(unknown)
    assert (
        info.unet_in_channels is None and info.capabilities == [] and studio.registry.image_capabilities(info) is None
    )
    job = studio.images.submit(ImageRequest(prompt="x", model="odd", steps=1, **SMALL))  # nothing to refuse yet
    with pytest.raises(Exception, match="cannot load image model 'odd'"):
        job.wait(60)


# -- uploads: pixel limits from the header, unreadable images, bad base64 --------------------------


def small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, "PNG")
    return buf.getvalue()


BAD_IMAGES = {
    # name: (bytes or base64 text, status, words in the message)
    "40000x40000 header": (
        png_claiming(40000, 40000),
        413,
        "40000x40000 (1600 megapixels); the limit is 64 megapixels",
    ),
    "9000x8000 header": (png_claiming(9000, 8000), 413, "9000x8000 (72 megapixels); the limit is 64 megapixels"),
    "truncated PNG": (small_png()[:60], 422, "is not a readable image"),
    "not an image": (b"%PDF-1.7 a document", 422, "is not a readable image (PNG, JPEG or WebP): not an image format"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_open_image_refuses_huge_broken_and_foreign_images(case):
    data, status, words = BAD_IMAGES[case]
    with pytest.raises(TooLarge if status == 413 else InvalidRequest) as err:
        open_image(data, "init_images")
    # 400 is OpenAI's status for a bad value; under /sdapi it is answered as A1111's 422.
    assert words in err.value.message and err.value.status == (413 if status == 413 else 400)
    assert err.value.message.startswith("init_images") and err.value.param == "init_images"


def test_the_pixel_limit_is_a_setting(aigc_home):
    studio = Studio(load_config(model="echo", image_model="plain", max_image_megapixels=2))
    with pytest.raises(TooLarge, match=r"init_images is 2000x2000 \(4 megapixels\); the limit is 2 megapixels"):
        studio.images.open_image(png_claiming(2000, 2000), "init_images")
    # Images that arrive decoded (the web UI's) are held to it too, before anything is queued.
    with pytest.raises(TooLarge, match="the limit is 2 megapixels"):
        studio.images.submit(ImageRequest(**SMALL), "img2img", init_image=Image.new("RGB", (1600, 1600)))
    assert jobs_count(studio) == 0
    studio.close()


@pytest.mark.parametrize("where", ["init_images", "mask", "png-info"])
@pytest.mark.parametrize("case", [*BAD_IMAGES, "bad base64", "not a string"])
def test_sdapi_refuses_bad_uploads_with_a_4xx_and_queues_nothing(server, where, case):
    if case == "bad base64":
        payload, status, words = "this is not base64!!", 422, "is not valid base64"
    elif case == "not a string":
        payload, status, words = {"a": 1}, 422, "must be a base64-encoded image (a string), got dict"
    else:
        data, status, words = BAD_IMAGES[case]
        payload = base64.b64encode(data).decode()
    before = jobs_count(server.studio)
    good = b64png(Image.new("RGB", (64, 64)))
    if case == "not a string":  # the request models declare images as strings: the declaration answers
        words = "Input should be a valid string"
    if where == "png-info":
        r = httpx.post(server.url + "/sdapi/v1/png-info", json={"image": payload})
        name = "image"
    elif where == "mask":
        r = httpx.post(server.url + "/sdapi/v1/img2img", json={"init_images": [good], "mask": payload, **SMALL})
        name = "mask"
    else:
        r = httpx.post(server.url + "/sdapi/v1/img2img", json={"init_images": [payload], **SMALL})
        name = "init_images"
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(name) and words in r.json()["detail"]
    assert jobs_count(server.studio) == before
