"""Remote models: any OpenAI-compatible server as a studio model.

The real path runs llama.cpp's own OpenAI-compatible server (its C++ server loop, from xllamacpp's wheel,
in a process of its own) with the embedded model on a loopback port and uses it through the studio's chat
service, /v1 (the official openai client) and the CLI. The failure cases (a 500, malformed JSON, a hang, a
refused key) need a server that misbehaves on purpose: a small http.server on loopback that the test
scripts.
"""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from aigc_studio.api.app import create_app
from aigc_studio.cli.main import cli
from aigc_studio.contracts import Message, TextOptions, TextRequest
from aigc_studio.engines.remote import RemoteEngine
from aigc_studio.errors import InvalidRequest, ModelLoadError, RemoteError

from . import postgres_server
from .conftest import LiveServer, make_studio
from .remote_helpers import Scripted, free_port, llama_cpp_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def llama_server(smollm_path):
    """llama.cpp's OpenAI-compatible server with the embedded model, as "smol"."""
    with llama_cpp_server(smollm_path) as base:
        yield base


@pytest.fixture
def scripted():
    server = Scripted()
    yield server
    server.close()


def ask(studio, model: str, text: str = "Say hi", **options):
    prepared = studio.chat.prepare([Message(role="user", content=text)], model=model, options=TextOptions(**options))
    return studio.chat.complete(prepared)


def test_the_embedded_model_behind_llama_cpp_server_answers_as_a_studio_model(tmp_path, llama_server):
    studio = make_studio(tmp_path / "home", model="echo")
    try:
        info, listed = studio.models.add_remote("smol-remote", llama_server, "smol")
        assert listed == ["smol"] and info.engine == "remote" and info.path == llama_server
        result = ask(studio, "smol-remote", "Name a colour.", max_tokens=12, temperature=0, seed=1)
        # The same request straight to the server, greedy: the studio passed it on unchanged.
        direct = httpx.post(
            llama_server + "/chat/completions",
            json={
                "model": "smol",
                "messages": [{"role": "user", "content": "Name a colour."}],
                "max_tokens": 12,
                "temperature": 0,
                "seed": 1,
            },
            timeout=60,
        ).json()
        assert result.text == direct["choices"][0]["message"]["content"] and result.text
        assert result.finish_reason == "length"
        stored = studio.history.get(studio.history.latest_id())
        assert stored["responses"][-1]["model"] == "smol-remote"
    finally:
        studio.close()


def test_v1_and_the_cli_use_a_remote_model_like_a_local_one(tmp_path, llama_server):
    import openai

    home = tmp_path / "home"
    runner = CliRunner()
    env = {"AIGC_HOME": str(home), "AIGC_MODEL": "echo", **postgres_server.env_for(home)}
    added = runner.invoke(
        cli, ["models", "add-remote", "smol-remote", "--base-url", llama_server, "--model", "smol"], env=env
    )
    assert added.exit_code == 0, added.output
    assert f"added smol-remote → {llama_server} (smol, no key); the server lists 1 model(s)" in added.output
    listed = runner.invoke(cli, ["models", "list"], env=env)
    assert "smol-remote" in listed.output and f"→ {llama_server} (smol)" in listed.output
    assert "file missing" not in listed.output

    studio = make_studio(home, model="echo")
    try:
        with LiveServer(create_app(studio)) as live:
            client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused")
            assert "smol-remote" in [m.id for m in client.models.list()]
            pieces = [
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(
                    model="smol-remote",
                    messages=[{"role": "user", "content": "Say hi"}],
                    max_tokens=8,
                    stream=True,
                )
                if c.choices
            ]
            assert len([p for p in pieces if p]) >= 2 and "".join(pieces).strip()
    finally:
        studio.close()


def test_the_key_reaches_only_the_server(tmp_path, scripted):
    home = tmp_path / "home"
    runner = CliRunner()
    env = {"AIGC_HOME": str(home), "AIGC_MODEL": "echo", **postgres_server.env_for(home)}
    secret = "sk-test-do-not-leak-4242"
    added = runner.invoke(
        cli,
        ["models", "add-remote", "hosted", "--base-url", scripted.url, "--model", "scripted", "--api-key-stdin"],
        input=secret + "\n",
        env=env,
    )
    assert added.exit_code == 0, added.output
    assert "key stored" in added.output and secret not in added.output
    keys = home / "keys.json"
    assert keys.stat().st_mode & 0o777 == 0o600 and json.loads(keys.read_text()) == {"hosted": secret}

    studio = make_studio(home, model="echo")
    try:
        assert ask(studio, "hosted").text == "Hello there"
        headers, body = scripted.requests[-1]
        assert headers["Authorization"] == f"Bearer {secret}"
        assert body["model"] == "scripted" and body["stream"] is True
        with LiveServer(create_app(studio)) as live:
            models = httpx.get(live.url + "/v1/models").text + httpx.get(live.url + "/v1/models/hosted").text
        listed = runner.invoke(cli, ["models", "list"], env=env).output
        history = json.dumps(studio.history.export())
    finally:
        studio.close()
    stored = postgres_server.stored_bytes(home)
    logs = "".join(p.read_text(errors="replace") for p in home.rglob("*.log"))
    for where, text in {"/v1/models": models, "models list": listed, "history": history, "logs": logs}.items():
        assert secret not in text, f"the key leaked into {where}"
    assert secret.encode() not in stored

    # Removing the model forgets its key.
    assert runner.invoke(cli, ["models", "rm", "hosted"], env=env).exit_code == 0
    assert json.loads(keys.read_text()) == {}


def test_a_key_from_an_environment_variable_is_read_when_used_and_never_stored(tmp_path, scripted, monkeypatch):
    studio = make_studio(tmp_path / "home", model="echo")
    try:
        monkeypatch.setenv("SCRIPTED_KEY", "sk-from-env")
        studio.models.add_remote("env-model", scripted.url, "scripted", api_key_env="SCRIPTED_KEY")
        assert ask(studio, "env-model").text == "Hello there"
        assert scripted.requests[-1][0]["Authorization"] == "Bearer sk-from-env"
        assert not (tmp_path / "home" / "keys.json").exists()
        assert b"sk-from-env" not in postgres_server.stored_bytes(tmp_path / "home")
        studio.registry.unload("env-model")
        monkeypatch.delenv("SCRIPTED_KEY")
        with pytest.raises(ModelLoadError, match="environment variable SCRIPTED_KEY, which is not set"):
            ask(studio, "env-model")
    finally:
        studio.close()


def test_usage_comes_from_the_server_and_a_whole_json_answer_is_taken(tmp_path, scripted):
    studio = make_studio(tmp_path / "home", model="echo")
    try:
        studio.models.add_remote("s", scripted.url, "scripted")
        result = ask(studio, "s", temperature=0.3, top_k=5)
        assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 2)
        body = scripted.requests[-1][1]
        assert body["temperature"] == 0.3 and body["top_k"] == 5 and "seed" not in body
        scripted.behaviour = "json"
        assert ask(studio, "s").text == "all at once"
    finally:
        studio.close()


@pytest.mark.parametrize(
    ("behaviour", "status", "says"),
    [
        ("500", 502, "failed (HTTP 500): the GPU caught fire"),
        ("bad-json", 502, "sent something that is not JSON: '{not json'"),
        ("401", 502, "refused the API key (HTTP 401): invalid api key"),
    ],
)
def test_a_misbehaving_server_is_a_clear_error_and_nothing_is_recorded_as_an_answer(
    tmp_path, scripted, behaviour, status, says
):
    studio = make_studio(tmp_path / "home", model="echo")
    try:
        studio.models.add_remote("s", scripted.url, "scripted")
        scripted.behaviour = behaviour
        with pytest.raises(RemoteError) as caught:
            ask(studio, "s")
        assert caught.value.status == status and says in caught.value.message
        assert f"remote model 's' ({scripted.url})" in caught.value.message
        with LiveServer(create_app(studio)) as live:
            r = httpx.post(
                live.url + "/v1/chat/completions",
                json={"model": "s", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
        assert r.status_code == status and says in r.json()["error"]["message"]
    finally:
        studio.close()


def test_a_hung_server_times_out_and_a_cancel_ends_the_wait_at_once(scripted):
    scripted.behaviour = "hang"
    engine = RemoteEngine("s", scripted.url, "scripted", timeout=1.0)
    request = TextRequest(messages=[Message(role="user", content="hi")])
    started = time.perf_counter()
    with pytest.raises(RemoteError) as caught:
        list(engine.stream(request, threading.Event()))
    assert caught.value.status == 504 and "sent nothing for 1 s" in caught.value.message
    assert time.perf_counter() - started < 5

    cancel = threading.Event()
    slow = RemoteEngine("s", scripted.url, "scripted", timeout=60.0)
    threading.Timer(0.5, cancel.set).start()
    started = time.perf_counter()
    chunks = list(slow.stream(request, cancel))
    assert time.perf_counter() - started < 3
    assert chunks[0].text == "Hello" and chunks[-1].finish_reason == "cancelled"
    engine.close()
    slow.close()


def test_an_unreachable_server_and_bad_settings_are_refused_before_anything_is_added(tmp_path, scripted):
    studio = make_studio(tmp_path / "home", model="echo")
    nothing = f"http://127.0.0.1:{free_port()}/v1"
    try:
        with pytest.raises(RemoteError, match=f"the server at {nothing} cannot be reached"):
            studio.models.add_remote("gone", nothing, "x")
        with pytest.raises(InvalidRequest, match="does not list a model 'other'; it lists: scripted"):
            studio.models.add_remote("s", scripted.url, "other")
        with pytest.raises(InvalidRequest, match="base_url must be an http:// or https:// URL"):
            studio.models.add_remote("s", "ftp://example/v1", "x", check=False)
        with pytest.raises(InvalidRequest, match="must not hold a user or password"):
            studio.models.add_remote("s", "http://me:pw@127.0.0.1/v1", "x", check=False)
        with pytest.raises(InvalidRequest, match="already exists"):
            studio.models.add_remote("echo", scripted.url, "scripted")
        with pytest.raises(InvalidRequest, match="the environment variable NO_SUCH_KEY_VAR is not set"):
            studio.models.add_remote("s", scripted.url, "scripted", api_key_env="NO_SUCH_KEY_VAR")
        assert [m.id for m in studio.registry.all() if m.engine == "remote"] == []
        # Offline now, added anyway: a chat with it says the server cannot be reached.
        studio.models.add_remote("later", nothing, "x", check=False)
        with pytest.raises(RemoteError, match=r"remote model 'later' .* is unreachable"):
            ask(studio, "later")
    finally:
        studio.close()


def test_the_environment_never_carries_a_key_into_the_process_list(tmp_path, scripted):
    # The key is sent in a header of the studio's own process, never on a command line.
    studio = make_studio(tmp_path / "home", model="echo")
    try:
        studio.models.add_remote("s", scripted.url, "scripted", api_key="sk-cmdline-check")
        ask(studio, "s")
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        assert b"sk-cmdline-check" not in f.read()
                except OSError:
                    continue
    finally:
        studio.close()


LONG_TEXT = "Summarize this. " + " ".join(
    f"Paragraph {i}: the lighthouse keeper wrote down the weather, the ships and the tides of the day."
    for i in range(14)
)


def test_prompt_progress_is_asked_only_of_llama_cpps_server_and_only_for_a_long_prompt(scripted):
    long = TextRequest(messages=[Message(role="user", content=LONG_TEXT)])
    short = TextRequest(messages=[Message(role="user", content="hi")])
    steps = [
        {"total": 300, "cache": 0, "processed": 0, "time_ms": 0},
        {"total": 300, "cache": 0, "processed": 256, "time_ms": 900.5},
        {"total": 300, "cache": 0, "processed": 300, "time_ms": 1050},
    ]
    scripted.progress = steps  # what a llama.cpp server would stream; sent here whatever the request says

    # Not llama.cpp's server (GET /props is a 404, as from OpenAI): never sent the field; asked once.
    other = RemoteEngine("s", scripted.url, "scripted")
    list(other.stream(short, threading.Event()))
    assert not any(h.get("path") == "/props" for h, _ in scripted.requests)  # a short prompt asks nothing
    for _ in range(2):
        list(other.stream(long, threading.Event()))
        assert "return_progress" not in scripted.requests[-1][1]
    assert sum(h.get("path") == "/props" for h, _ in scripted.requests) == 1
    other.close()

    # llama.cpp's server: a long prompt asks for progress, and every step before the last comes through.
    scripted.props = {"build_info": "b11549", "default_generation_settings": {"n_ctx": 2048}}
    llama = RemoteEngine("s", scripted.url, "scripted")
    chunks = list(llama.stream(long, threading.Event()))
    assert scripted.requests[-1][1]["return_progress"] is True
    reported = [c.prompt_progress for c in chunks if c.prompt_progress is not None]
    assert [(p.read, p.total, p.ms) for p in reported] == [(0, 300, 0), (256, 300, 900.5)]
    assert chunks[len(reported)].text == "Hello"  # the steps come before the answer
    list(llama.stream(short, threading.Event()))
    assert "return_progress" not in scripted.requests[-1][1]
    # Asked for every step (/v1's return_progress): the last too, even for a short prompt.
    chunks = list(llama.stream(TextRequest(messages=short.messages, progress=True), threading.Event()))
    assert scripted.requests[-1][1]["return_progress"] is True
    assert [c.prompt_progress.read for c in chunks if c.prompt_progress] == [0, 256, 300]
    llama.close()


def test_a_remote_llama_cpp_server_reports_how_far_it_has_read_a_long_prompt(tmp_path, smollm_path):
    """The real format: llama.cpp's own server, reading in steps of 64, through the studio's engine and /v1."""
    import openai

    with llama_cpp_server(smollm_path, batch=64) as base:
        engine = RemoteEngine("smol-remote", base, "smol")
        request = TextRequest(
            messages=[Message(role="user", content=LONG_TEXT)], options=TextOptions(max_tokens=4, temperature=0)
        )
        chunks = list(engine.stream(request, threading.Event()))
        engine.close()
        reported = [c.prompt_progress for c in chunks if c.prompt_progress is not None]
        first_text = next(i for i, c in enumerate(chunks) if c.text)
        assert all(c.prompt_progress is None for c in chunks[first_text:])
        total = chunks[-1].usage.prompt_tokens
        assert total > 200 and {p.total for p in reported} == {total}
        reads = [p.read for p in reported]
        assert reads == sorted(reads) and reads[0] == 0 and reads[-1] < total and len(reads) >= 4
        assert all(r % 64 == 0 for r in reads)  # after each of the server's steps

        studio = make_studio(tmp_path / "home", model="echo")
        try:
            studio.models.add_remote("smol-remote", base, "smol")
            with LiveServer(create_app(studio)) as live:
                client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused")
                stream = client.chat.completions.create(
                    model="smol-remote",
                    messages=[{"role": "user", "content": "Again. " + LONG_TEXT}],  # not from the cache
                    max_tokens=4,
                    stream=True,
                    extra_body={"return_progress": True},
                )
                steps = [
                    c.model_extra["prompt_progress"] for c in stream if (c.model_extra or {}).get("prompt_progress")
                ]
            assert steps[-1]["processed"] == steps[-1]["total"] > 200  # asked for: the last step too
            assert [s["processed"] for s in steps] == sorted(s["processed"] for s in steps) and len(steps) >= 4
        finally:
            studio.close()
