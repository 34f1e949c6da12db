"""The model_memory setting: with "one", a text request and an image request each free the other kind
of model (never one that a job still runs on), and the freed model loads again on its next request;
with "both", the default text model and the image model stay loaded side by side."""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from aigc_studio.cli.main import cli
from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest, Message
from aigc_studio.engines import plain
from aigc_studio.engines.echo import EchoEngine
from aigc_studio.errors import SettingError
from aigc_studio.studio import Studio

from .conftest import studio_server


def make(memory: str) -> Studio:
    return Studio(load_config(model="echo", image_model="plain", model_memory=memory))


def ask(studio: Studio, text: str, model: str = "echo") -> str:
    prepared = studio.chat.prepare([Message(role="user", content=text)], model=model, source="cli")
    return studio.chat.complete(prepared).text


def draw(studio: Studio, seed: int = 3):
    return studio.images.generate(ImageRequest(prompt="a red door", steps=2, seed=seed, width=64, height=64))


def loaded(studio: Studio) -> dict:
    """What the loaded-models view says: {model id: loaded} for the models in play."""
    return {m.id: m.loaded for m in studio.models.overview().models if m.id in ("echo", "plain")}


def test_one_keeps_only_the_kind_last_asked_for_and_says_what_it_freed(aigc_home, caplog):
    studio = make("one")
    try:
        assert ask(studio, "first answer") == "first answer"
        assert loaded(studio) == {"echo": True, "plain": False}
        with caplog.at_level(logging.INFO, logger="aigc_studio.registry"):
            result = draw(studio)
        assert len(result.images) == 1 and not result.interrupted
        assert loaded(studio) == {"echo": False, "plain": True}
        assert studio.registry.loaded() == []
        freed = [r.getMessage() for r in caplog.records if "model_memory=one" in r.getMessage()]
        assert freed == ["model_memory=one: freed text model 'echo' to make room for image model 'plain'"]

        caplog.clear()
        with caplog.at_level(logging.INFO, logger="aigc_studio.registry"):
            assert ask(studio, "answered again after the reload") == "answered again after the reload"
        assert loaded(studio) == {"echo": True, "plain": False}
        freed = [r.getMessage() for r in caplog.records if "model_memory=one" in r.getMessage()]
        assert freed == ["model_memory=one: freed image model 'plain' to make room for text model 'echo'"]

        # And back: the image model loads again and makes the same picture.
        again = draw(studio)
        assert again.images[0].image.tobytes() == result.images[0].image.tobytes()
        assert loaded(studio) == {"echo": False, "plain": True}
    finally:
        studio.close()


def test_both_keeps_the_text_and_the_image_model(aigc_home, caplog):
    studio = make("both")
    try:
        with caplog.at_level(logging.INFO, logger="aigc_studio.registry"):
            ask(studio, "hello")
            draw(studio)
            ask(studio, "hello again")
        assert loaded(studio) == {"echo": True, "plain": True}
        assert studio.models.overview().model_memory == "both"
        assert not [r for r in caplog.records if "freed" in r.getMessage()]
    finally:
        studio.close()


class GatedPlain(plain.PlainEngine):
    """The plain engine, waiting in ``generate`` until let go, and refusing use after close (a real
    engine would crash or draw garbage)."""

    started = threading.Event()
    go_on = threading.Event()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closed = False

    def generate(self, *args, **kwargs):
        GatedPlain.started.set()
        assert GatedPlain.go_on.wait(30), "the test never let the generation go on"
        if self.closed:
            raise RuntimeError("the image engine was freed under its generation")
        return super().generate(*args, **kwargs)

    def close(self):
        self.closed = True


def test_one_never_frees_the_image_model_under_a_running_generation(aigc_home, monkeypatch):
    monkeypatch.setattr(plain, "PlainEngine", GatedPlain)
    GatedPlain.started.clear()
    GatedPlain.go_on.clear()
    studio = make("one")
    try:
        job = studio.images.submit(ImageRequest(prompt="a red door", steps=2, seed=3, width=64, height=64))
        assert GatedPlain.started.wait(30)
        # A text request while the picture is being made: it is answered, and the image model stays.
        assert ask(studio, "while drawing") == "while drawing"
        assert loaded(studio) == {"echo": True, "plain": True}
        GatedPlain.go_on.set()
        result = job.wait(30)
        assert len(result.images) == 1 and not result.interrupted
        assert result.images[0].path.is_file()
        # The text model was asked for last: the image model goes as soon as its generation ends.
        assert loaded(studio) == {"echo": True, "plain": False}
    finally:
        GatedPlain.go_on.set()
        studio.close()


class SlowEcho(EchoEngine):
    """The echo engine, waiting before its first word until let go; refuses use after close."""

    started = threading.Event()
    go_on = threading.Event()

    def __init__(self):
        super().__init__("echo", 2048)
        self.closed = False

    def stream(self, request, cancel):
        SlowEcho.started.set()
        assert SlowEcho.go_on.wait(30), "the test never let the answer go on"
        for chunk in super().stream(request, cancel):
            if self.closed:
                raise RuntimeError("the text engine was freed under its answer")
            yield chunk

    def close(self):
        self.closed = True


def test_one_never_frees_the_text_model_under_a_running_answer(aigc_home):
    SlowEcho.started.clear()
    SlowEcho.go_on.clear()
    studio = make("one")
    studio.registry._load = lambda info: SlowEcho()
    try:
        answer: list[str] = []
        thread = threading.Thread(target=lambda: answer.append(ask(studio, "the whole answer arrives")))
        thread.start()
        assert SlowEcho.started.wait(30)
        result = draw(studio)  # an image while the answer runs: made, and the text model stays
        assert len(result.images) == 1
        assert loaded(studio) == {"echo": True, "plain": True}
        SlowEcho.go_on.set()
        thread.join(30)
        assert answer == ["the whole answer arrives"]
        # The image model was asked for last: the text model goes once its answer has ended.
        deadline = time.monotonic() + 10
        while loaded(studio)["echo"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert loaded(studio) == {"echo": False, "plain": True}
    finally:
        SlowEcho.go_on.set()
        studio.close()


@pytest.mark.parametrize("where", ["option", "environment"])
def test_a_bad_value_names_the_allowed_ones(aigc_home, monkeypatch, where):
    if where == "option":
        with pytest.raises(SettingError) as err:
            load_config(model_memory="half")
        assert str(err.value) == "option --model-memory: model_memory must be one of both, one, got 'half'"
    else:
        monkeypatch.setenv("AIGC_MODEL_MEMORY", "half")
        run = CliRunner().invoke(cli, ["models", "list"])
        assert run.exit_code == 1
        assert "environment variable AIGC_MODEL_MEMORY: model_memory must be one of both, one, got 'half'" in run.output


def test_the_cli_lists_the_setting(aigc_home, monkeypatch):
    monkeypatch.setenv("AIGC_MODEL_MEMORY", "one")
    listing = CliRunner().invoke(cli, ["models", "list"]).output
    assert "model_memory = one: only the kind of model last asked for stays loaded" in listing


# -- the real models, through the server: SmolLM2 and a tiny Stable Diffusion ------------------------


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from .tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"), kind="sd15")


def test_one_through_the_apis_with_smollm2_and_a_tiny_sd_model(tmp_path, tiny_sd):
    def prepare(studio):
        studio.registry.add(tiny_sd.folder, model_id="tiny-sd15")

    chat = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 8,
        "temperature": 0,
    }
    image = {"prompt": "a red door", "steps": 2, "width": 64, "height": 64, "seed": 5}
    with studio_server(tmp_path / "home", prepare=prepare, model="smollm2-135m", model_memory="one") as live:

        def state() -> dict:
            body = httpx.get(live.url + "/api/models").json()
            assert body["model_memory"] == "one"
            return {m["id"]: m["loaded"] for m in body["models"] if m["id"] in ("smollm2-135m", "tiny-sd15")}

        assert state() == {"smollm2-135m": True, "tiny-sd15": False}  # the default loads at start
        first = httpx.post(live.url + "/v1/chat/completions", json=chat, timeout=120).json()
        picture = httpx.post(live.url + "/sdapi/v1/txt2img", json=image, timeout=300)
        assert picture.status_code == 200 and len(picture.json()["images"]) == 1
        assert json.loads(picture.json()["info"])["sd_model_name"] == "tiny-sd15"
        assert state() == {"smollm2-135m": False, "tiny-sd15": True}
        assert live.studio.registry.loaded() == []

        # SmolLM2 loads again and answers as before (temperature 0); the image model is gone.
        second = httpx.post(live.url + "/v1/chat/completions", json=chat, timeout=120).json()
        assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
        assert state() == {"smollm2-135m": True, "tiny-sd15": False}
