"""Durability (issue 13): what survives a SIGTERM, a SIGKILL and a restart.

The server tests start real `python -m aigc_studio serve` processes on loopback with a temporary
AIGC_HOME and a tiny Stable Diffusion model built from the real diffusers classes, stop them with real
signals, start them again on the same AIGC_HOME, and check what a user would see: the job states and
reasons through /api/jobs, the gallery and its files, the chat history, the database's integrity.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from aigc_studio.config import load_config
from aigc_studio.storage.db import Database
from aigc_studio.storage.files import TMP_SUFFIX, clean_stale, write_atomic
from aigc_studio.studio import Studio
from tests import postgres_server
from tests.conftest import make_studio
from tests.tiny_models import build_tiny_sd

GRACE = 3  # shutdown_grace for the servers here
MARGIN = 5  # cli.main.SHUTDOWN_MARGIN
SMALL = {"width": 64, "height": 64, "cfg_scale": 5, "sampler_name": "Euler"}


def wait_until(predicate, seconds: float = 120, what: str = "the condition"):
    deadline = time.time() + seconds
    while not (value := predicate()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def dead_pid() -> int:
    """The pid of a process that has ended (so no process has it now)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# -- atomic writes ----------------------------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from aigc_studio.storage.files import write_atomic
path, size = Path(sys.argv[1]), int(sys.argv[2])
i = 0
print("writing", flush=True)
while True:
    i += 1
    write_atomic(path, bytes([i % 251]) * size)
"""


def test_a_file_killed_mid_write_holds_the_old_content_or_the_new_never_a_part(tmp_path):
    target = tmp_path / "outputs" / "picture.png"
    size = 4 * 1024 * 1024
    write_atomic(target, b"\xff" * size)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for delay in (0.05, 0.2, 0.37, 0.5, 0.81):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(size)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline() == "writing\n"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        data = target.read_bytes()
        assert len(data) == size and data == bytes([data[0]]) * size, "a partly written file under its real name"
    # What the killed writers left: hidden temporary files; a start removes them, and nothing else.
    live = target.with_name(f".other.png.{os.getpid()}{TMP_SUFFIX}")  # this process still runs
    live.write_bytes(b"being written")
    removed, finished = clean_stale(tmp_path)
    assert finished == [] and live.exists() and target.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [live.name, "picture.png"]
    assert all(p.name.startswith(".picture.png.") for p in removed)


def test_a_temporary_file_whose_record_was_committed_is_put_in_place_at_start(tmp_path):
    final = tmp_path / "img-1-5.png"
    tmp = final.with_name(f".{final.name}.{dead_pid()}{TMP_SUFFIX}")
    tmp.write_bytes(b"complete")
    orphan = tmp_path / f".img-2-6.png.{dead_pid()}{TMP_SUFFIX}"
    orphan.write_bytes(b"never recorded")
    removed, finished = clean_stale(tmp_path, finish=lambda path: path == final)
    assert finished == [final] and final.read_bytes() == b"complete"
    assert removed == [orphan] and not orphan.exists()


def test_settings_are_written_whole(aigc_home):
    from aigc_studio.config import save_setting

    path = save_setting("shutdown_grace", 7)
    assert path.read_text() == "shutdown_grace = 7\n"
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temporary file left beside it
    assert load_config().shutdown_grace == 7


# -- real servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-durable"), kind="sd15")


def prepared_home(home: Path, tiny) -> Path:
    """An AIGC_HOME with the tiny model added as 'tiny' and made the default image model."""
    studio = make_studio(home, model="echo")
    studio.registry.add(tiny.folder, model_id="tiny")
    studio.close()
    return home


class Served:
    """`python -m aigc_studio serve` on a free loopback port, its output in a log file."""

    def __init__(self, home: Path, script: str | None = None, **settings):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        env = {
            **os.environ,
            "AIGC_HOME": str(home),
            "PYTHONPATH": os.pathsep.join(sys.path),
            "AIGC_IMAGE_MODEL": "tiny",
            "AIGC_SHUTDOWN_GRACE": str(GRACE),
            "AIGC_C2PA": "0",  # labels are not what these tests are about
            "OMP_NUM_THREADS": "1",  # see conftest's one_torch_thread
            **{f"AIGC_{k.upper()}": str(v) for k, v in settings.items()},
        }
        if postgres_server.SELECTED:
            env["AIGC_DATABASE_URL"] = postgres_server.server().database_for(home)
        self.log = home / f"serve-{self.port}.log"
        # ``script``: Python that runs the same `aigc serve` in-process after changing something first.
        command = ["-c", script] if script else ["-m", "aigc_studio"]
        self.process = subprocess.Popen(
            [sys.executable, *command, "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 120
        while True:
            assert self.process.poll() is None, f"aigc serve exited: {self.log.read_text()[-3000:]}"
            assert time.time() < deadline, "aigc serve did not become healthy"
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def job(self, job_id: str) -> dict:
        r = httpx.get(f"{self.url}/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self, sig: int) -> float:
        """Send ``sig``; seconds until the process ended."""
        started = time.perf_counter()
        self.process.send_signal(sig)
        self.process.wait(timeout=120)
        return time.perf_counter() - started


@contextmanager
def served(home: Path, script: str | None = None, **settings):
    server = Served(home, script, **settings)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


@contextmanager
def db(home: Path):
    """The database of the studio served in ``home``, opened as another process would open it."""
    if postgres_server.SELECTED:
        yield Database(postgres_server.server().database_for(home)).conn
        return
    conn = sqlite3.connect(home / "studio.db", timeout=30)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


def integrity_ok(conn) -> bool:
    # SQLite: the file a killed server wrote. PostgreSQL: the server, not the killed studio, wrote its
    # files (its own WAL recovery); what the studio committed is what the rest of the test reads.
    return postgres_server.SELECTED or conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def jobs(home: Path) -> list[dict]:
    with db(home) as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM jobs ORDER BY created")]


def have_jobs(home: Path, n: int, answers: list) -> bool:
    """``n`` jobs recorded; fails at once when a request was refused instead."""
    refused = [a.text for a in answers if isinstance(a, httpx.Response) and a.status_code != 200]
    assert not refused, refused
    return len(jobs(home)) == n


def post_in_background(url: str, body: dict, answers: list) -> threading.Thread:
    def post():
        try:
            answers.append(httpx.post(url, json=body, timeout=600))
        except httpx.HTTPError as exc:  # the server went away under it
            answers.append(exc)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def test_sigterm_interrupts_the_running_job_keeps_queued_ones_and_a_restart_runs_them_in_order(tmp_path, tiny):
    home = prepared_home(tmp_path / "home", tiny)
    answers: list = []
    with served(home) as server:
        txt2img = server.url + "/sdapi/v1/txt2img"
        post_in_background(txt2img, {"prompt": "a slow lighthouse", "steps": 150, "seed": 1, **SMALL}, answers)
        wait_until(lambda: have_jobs(home, 1, answers), what="the slow job being queued")
        for n in range(3):  # queued behind it, one after the other so their order is known
            post_in_background(txt2img, {"prompt": f"queued {n}", "steps": 2, "seed": 10 + n, **SMALL}, answers)
            wait_until(lambda n=n: have_jobs(home, n + 2, answers), what=f"queued job {n}")
        slow = jobs(home)[0]["id"]
        wait_until(lambda: (server.job(slow)["step"] or 0) >= 2, what="the slow job's second step")
        took = server.stop(signal.SIGTERM)
        log = server.log.read_text()
    # uvicorn ends by raising the signal it caught again, once it has shut down: the status says SIGTERM.
    assert server.process.returncode == -signal.SIGTERM, log[-3000:]
    assert "Application shutdown complete" in log and "exiting now" not in log  # not cut off by the bound
    assert took < GRACE + MARGIN, f"the server took {took:.1f} s to stop (grace {GRACE} s)"
    recorded = jobs(home)
    assert [j["state"] for j in recorded] == ["interrupted", "queued", "queued", "queued"]
    with db(home) as conn:
        image = conn.execute("SELECT * FROM images WHERE job_id = ?", (slow,)).fetchone()
    assert image is not None and "Steps: 150," in image["infotext"] and "Steps run: " in image["infotext"]
    assert Image.open(image["path"]).size == (64, 64)
    # The waiting clients were answered: the slow job's with what it made, the queued ones with a 503
    # that says their job stays queued.
    codes = sorted(a.status_code for a in answers if isinstance(a, httpx.Response))
    assert codes == [200, 503, 503, 503], answers
    assert any("stays queued" in a.text for a in answers if isinstance(a, httpx.Response) and a.status_code == 503)

    queued = [j["id"] for j in recorded[1:]]
    with served(home) as server:
        done = [wait_until(lambda j=j: server.job(j)["state"] == "done" and server.job(j), what=j) for j in queued]
        gallery = httpx.get(server.url + "/api/images", params={"q": "queued"}).json()
        log = server.log.read_text()
    assert [d["started"] for d in done] == sorted(d["started"] for d in done)  # in their original order
    assert sorted(r["seed"] for r in gallery) == [10, 11, 12]
    assert "restart: 3 queued job(s) resumed, 0 marked failed" in log


def test_sigkill_mid_batch_loses_no_finished_image_or_chat_turn(tmp_path, tiny, smollm_path):
    home = prepared_home(tmp_path / "home", tiny)
    answers: list = []
    with served(home, model="smollm2-135m") as server:
        # A finished chat turn, then a long answer that the kill cuts off.
        first = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hello."}]},
            timeout=120,
        ).json()
        hello = first["choices"][0]["message"]["content"]
        # A batch of eight: the kill comes after the first image is saved, while a later one is made.
        post_in_background(
            server.url + "/sdapi/v1/txt2img",
            {"prompt": "a batch", "steps": 20, "n_iter": 8, "seed": 3, **SMALL},
            answers,
        )
        wait_until(lambda: have_jobs(home, 1, answers), what="the batch job")
        batch = jobs(home)[0]["id"]
        post_in_background(
            server.url + "/sdapi/v1/txt2img", {"prompt": "behind", "steps": 2, "seed": 9, **SMALL}, answers
        )
        wait_until(lambda: have_jobs(home, 2, answers), what="the job behind it")

        def saved() -> int:
            with db(home) as conn:
                return conn.execute("SELECT count(*) FROM images WHERE job_id = ?", (batch,)).fetchone()[0]

        wait_until(lambda: saved() >= 1, seconds=300, what="the batch's first image")
        streaming = threading.Event()

        def long_answer():
            body = {
                "model": "smollm2",
                "stream": True,
                "max_tokens": 2000,
                "messages": [
                    {"role": "user", "content": "Say hello."},
                    {"role": "assistant", "content": hello},
                    {"role": "user", "content": "Now write a very long story about a lighthouse keeper."},
                ],
            }
            try:
                with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=120) as r:
                    for line in r.iter_lines():
                        if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                            streaming.set()
            except httpx.HTTPError:
                pass

        threading.Thread(target=long_answer, daemon=True).start()
        assert streaming.wait(120), "the answer never started"
        made = saved()
        assert server.job(batch)["state"] == "running"
        server.stop(signal.SIGKILL)

    # Before any restart: every visible file under outputs is a whole PNG with its record; the
    # database is consistent; the question being answered is stored.
    with db(home) as conn:
        assert integrity_ok(conn)
        recorded = {row["path"]: row for row in conn.execute("SELECT * FROM images")}
        messages = [(r["role"], r["content"]) for r in conn.execute("SELECT role, content FROM messages ORDER BY id")]
    visible = [p for p in (home / "outputs").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert sorted(str(p) for p in visible) == sorted(recorded) and len(recorded) >= made >= 1
    for path in visible:
        Image.open(path).load()  # whole: a truncated PNG raises here
    assert messages == [
        ("user", "Say hello."),
        ("assistant", hello),
        ("user", "Now write a very long story about a lighthouse keeper."),
    ]
    # What a killed writer leaves behind is cleaned at the start.
    stale = home / "outputs" / "images" / f".img-x-1.png.{dead_pid()}{TMP_SUFFIX}"
    stale.write_bytes(b"\x89PNG half")

    with served(home) as server:
        failed = server.job(batch)
        behind = next(j for j in jobs(home) if j["id"] != batch)
        resumed = wait_until(lambda: server.job(behind["id"])["state"] == "done" and server.job(behind["id"]))
        gallery = httpx.get(server.url + "/api/images", params={"q": "a batch"}).json()
    assert failed["state"] == "failed"
    assert failed["error"].startswith("the server stopped while this job ran (restart at 20")
    assert resumed["state"] == "done"
    assert len(gallery) == len(recorded) and all("Steps: 20," in g["infotext"] for g in gallery)
    assert not stale.exists()
    with db(home) as conn:
        response = conn.execute("SELECT status, error FROM responses ORDER BY created DESC LIMIT 1").fetchone()
        assert integrity_ok(conn)
        answers_now = conn.execute("SELECT count(*) FROM messages WHERE role = 'assistant'").fetchone()[0]
    assert response["status"] == "interrupted"
    assert response["error"].startswith("the server stopped while this answer was streamed (restart at 20")
    assert answers_now == 1  # the cut-off answer is not kept; the finished one is


def test_an_image_written_but_not_renamed_before_a_kill_is_put_in_place(tmp_path):
    """The narrowest window: the PNG whole under its temporary name and its record committed, the kill
    before the rename. The next start finishes the rename, so the gallery's record has its file."""
    os.environ["AIGC_HOME"] = str(tmp_path / "home")
    studio = Studio(load_config(model="echo"))
    from aigc_studio.contracts import ImageRequest

    result = studio.images.generate(ImageRequest(model="plain", prompt="kept", width=64, height=64, steps=1))
    path = result.images[0].path
    hidden = path.with_name(f".{path.name}.{dead_pid()}{TMP_SUFFIX}")
    os.replace(path, hidden)
    assert studio.recover()["images put in place"] == 1
    assert studio.images.file(result.images[0].id) == path
    assert Image.open(io.BytesIO(path.read_bytes())).size == (64, 64)
    studio.close()


def test_a_restart_reruns_an_img2img_job_with_its_input_and_says_why_others_cannot_run(tmp_path, monkeypatch):
    from aigc_studio.contracts import ImageRequest

    home = tmp_path / "home"
    monkeypatch.setenv("AIGC_HOME", str(home))
    studio = Studio(load_config(model="echo"))
    studio.registry.image_engine("plain").step_delay = 0.05
    small = {"model": "plain", "width": 64, "height": 64, "seed": 5}
    blocker = studio.images.submit(ImageRequest(prompt="blocker", steps=100, **small))
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    source.paste((20, 20, 220), (0, 0, 32, 64))
    edit = ImageRequest(prompt="an edit", steps=2, denoising_strength=0.5, **small)
    queued_edit = studio.images.submit(edit, "img2img", init_image=source, source="api")
    unsaved = studio.images.submit(ImageRequest(prompt="unsaved", steps=2, **small), keep=False)
    cell = studio.images.submit(ImageRequest(prompt="a cell", steps=2, **small), source="compare", resumable=False)
    wait_until(lambda: blocker.step >= 1, what="the first job running")
    assert (home / "jobs" / queued_edit.id / "init.png").is_file()
    studio.close(timeout=10)

    again = Studio(load_config(model="echo"))
    report = again.recover()
    assert report["jobs resumed"] == [queued_edit.id]
    assert sorted(report["jobs failed"]) == sorted([unsaved.id, cell.id])
    result = again.jobs.get(queued_edit.id).wait(60)
    # The same pixels as the same img2img made now from the same picture: the input came through whole.
    fresh = again.images.generate(edit, "img2img", init_image=source)
    assert result.mode == "img2img" and result.job_id == queued_edit.id
    assert result.images[0].image.tobytes() == fresh.images[0].image.tobytes()
    assert again.jobs.describe(queued_edit.id)["state"] == "done"
    assert not (home / "jobs" / queued_edit.id).exists()  # its input is removed once it has run
    reasons = {j: again.jobs.describe(j)["error"] for j in (unsaved.id, cell.id)}
    assert reasons[unsaved.id].endswith("its images were only for the client that asked (do_not_save_samples)")
    assert reasons[cell.id].endswith("it was part of a compare run, which does not survive a restart")
    assert all(r.startswith("the job was queued when the server stopped (restart at 20") for r in reasons.values())
    again.close()


# An image engine that ignores interrupts: one step, then it sleeps past any grace.
STUBBORN = """
import sys, time
from aigc_studio.contracts import StepInfo
from aigc_studio.engines import plain

def stubborn(self, request, mode, *, on_step=lambda info: None, **kwargs):
    on_step(StepInfo(1, request.steps, 0))
    time.sleep(600)

plain.PlainEngine.generate = stubborn
from aigc_studio.cli.main import cli
cli(sys.argv[1:], prog_name="aigc")
"""


def test_a_job_that_ignores_the_stop_cannot_hold_the_server_past_the_grace(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    answers: list = []
    with served(home, STUBBORN, image_model="plain") as server:
        post_in_background(server.url + "/sdapi/v1/txt2img", {"prompt": "stuck", "steps": 5}, answers)
        job = wait_until(lambda: have_jobs(home, 1, answers) and jobs(home)[0], what="the job")["id"]
        wait_until(lambda: server.job(job)["step"] == 1, what="its first step")
        took = server.stop(signal.SIGTERM)
        log = server.log.read_text()
    assert took < GRACE + MARGIN + 3, f"the server took {took:.1f} s to stop (grace {GRACE} s + {MARGIN} s)"
    # It ended by itself (the job's thread does not hold the process), before the hard bound.
    assert server.process.returncode == -signal.SIGTERM, log[-3000:]
    assert "Application shutdown complete" in log and "Internal Server Error" not in log
    # Its client was told, once the grace had passed, rather than cut off.
    assert [a.status_code for a in answers] == [503]
    assert f"did not stop within shutdown_grace ({GRACE} s)" in answers[0].json()["detail"]
    assert jobs(home)[0]["state"] == "running"  # cut off under it: the next start says so
    with served(home, image_model="plain") as server:
        failed = server.job(job)
    assert failed["state"] == "failed" and failed["error"].startswith("the server stopped while this job ran")


def test_a_code_turn_cut_off_mid_answer_keeps_its_question_and_earlier_turns(tmp_path, monkeypatch):
    """A code session's question is stored as its answer starts: a turn whose answer never ended (its
    process died: here the turn is left suspended mid-answer and a new studio starts on the same
    AIGC_HOME) keeps the question and the finished turn before it; the answer is marked interrupted."""
    from aigc_studio.engines.echo import clear_replies, queue_replies

    monkeypatch.setenv("AIGC_HOME", str(tmp_path / "home"))
    clear_replies()
    studio = Studio(load_config(model="echo"))
    queue_replies("```python\nprint(1)\n```", "```python\nprint(2)\n```")
    first = studio.code.turn("write a program that prints 1")
    assert [e.kind for e in first][-1] == "done"
    second = iter(studio.code.turn("now print 2", session_id=first.session_id))
    assert next(second).kind == "delta"  # the answer is streaming; the process "dies" here

    again = Studio(load_config(model="echo"))
    assert again.recover()["answers interrupted"] == 1
    session = again.history.get(first.session_id)
    contents = [(m["role"], m["content"]) for m in session["messages"]]
    assert contents[0] == ("user", "write a program that prints 1")
    assert contents[1] == ("assistant", "```python\nprint(1)\n```")
    assert contents[2][0] == "user" and "now print 2" in contents[2][1] and len(contents) == 3
    statuses = [r["status"] for r in again.db.conn.execute("SELECT status FROM responses ORDER BY created")]
    assert statuses == ["ok", "interrupted"]
    again.close()
    second.close()  # the first studio, still alive here, ends its turn
    studio.close()
    clear_replies()
