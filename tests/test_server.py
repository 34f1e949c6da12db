"""Server behaviour that is not about the model: health while loading, binding, errors shape, settings
that are checked, the log, request body limits."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from aigc_studio.api.app import create_app
from aigc_studio.config import load_config, save_setting
from aigc_studio.errors import SettingError
from aigc_studio.studio import Studio

from .conftest import LiveServer


def test_health_is_503_while_the_default_model_loads(aigc_home):
    studio = Studio(load_config(model="echo"))
    release = threading.Event()
    real_load = studio.registry._load

    def slow_load(info):
        release.wait(10)
        return real_load(info)

    studio.registry._load = slow_load
    with LiveServer(create_app(studio)) as server:
        r = httpx.get(server.url + "/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        release.set()
        deadline = time.time() + 10
        while (r := httpx.get(server.url + "/health")).status_code != 200:
            assert time.time() < deadline
            time.sleep(0.02)
        assert r.json() == {"status": "ok", "model": "echo", "version": r.json()["version"]}
    studio.close()


def test_health_reports_a_default_model_that_cannot_load(aigc_home, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    studio = Studio(load_config(model="echo"))
    studio.registry.add(bad, model_id="broken")
    studio.registry.default_model = "broken"
    with LiveServer(create_app(studio)) as server:
        deadline = time.time() + 20
        while (r := httpx.get(server.url + "/health")).json()["status"] == "loading":
            assert time.time() < deadline
            time.sleep(0.05)
        assert r.status_code == 503 and "broken" in r.json()["error"]
        # A request for the broken model is a clear 4xx, not a 500 that clients would retry.
        r = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "broken", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 422 and "cannot load" in r.json()["error"]["message"]
        r = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "still here"}]},
        )
        assert r.json()["choices"][0]["message"]["content"] == "still here"
    studio.close()


def test_default_bind_is_loopback(aigc_home):
    assert load_config().host == "127.0.0.1"
    assert load_config().port == 7860


def test_settings_from_file_env_and_flag(aigc_home, monkeypatch):
    aigc_home.mkdir(parents=True)
    (aigc_home / "config.toml").write_text('model = "echo"\nport = 9000\n')
    assert load_config().model == "echo" and load_config().port == 9000
    monkeypatch.setenv("AIGC_PORT", "9100")
    assert load_config().port == 9100
    assert load_config(port=9200).port == 9200
    (aigc_home / "config.toml").write_text('modle = "echo"\n')
    try:
        load_config()
    except ValueError as exc:
        assert "modle" in str(exc) and "model" in str(exc)
    else:
        raise AssertionError("a misspelt setting must be refused")


def test_the_server_and_its_page_never_reach_beyond_loopback(aigc_home, monkeypatch):
    """No analytics, version checks or fonts from outside: a local studio talks to no one."""
    import socket

    looked_up: list[str] = []
    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1", None):
            looked_up.append(str(host))
            raise socket.gaierror(f"test guard: {host} is not loopback")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    studio = Studio(load_config(model="echo", image_model="plain"))
    with LiveServer(create_app(studio)) as server:
        assert httpx.get(server.url + "/").status_code == 200
        assert "AIGC Studio" in httpx.get(server.url + "/config").text
        r = httpx.post(
            server.url + "/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert r.status_code == 200
        time.sleep(1.0)  # background threads started at mount have had time to try
    studio.close()
    assert looked_up == []


# -- settings: a value the studio cannot start with is refused where it is read or saved ---------


@pytest.mark.parametrize(
    "toml, message",
    [
        ("port = 0", "port must be an integer from 1 to 65535, got 0"),
        ('port = ""', "port must be an integer from 1 to 65535, got ''"),
        ('host = "my host!"', "host must be an IP address (127.0.0.1, ::1, 0.0.0.0) or a host name (localhost)"),
        ("threads = -2", "threads must be an integer from 0 to 1024, got -2"),
        ('max_loaded = "two"', "max_loaded must be an integer from 1 to 64, got 'two'"),
        ("context = 1.5", "context must be an integer of at least 0, got 1.5"),
    ],
)
def test_bad_values_in_config_toml_are_refused_naming_key_and_file(aigc_home, toml, message):
    aigc_home.mkdir(parents=True)
    (aigc_home / "config.toml").write_text(toml + "\n")
    with pytest.raises(SettingError) as err:
        load_config()
    assert err.value.message.startswith(f"{aigc_home / 'config.toml'}: {message}")


def test_bad_environment_variables_and_options_are_refused_naming_them(aigc_home, monkeypatch):
    monkeypatch.setenv("AIGC_CONTEXT", "-5")
    with pytest.raises(SettingError, match=r"^environment variable AIGC_CONTEXT: context must be an integer of at"):
        load_config()
    monkeypatch.delenv("AIGC_CONTEXT")
    monkeypatch.setenv("AIGC_HOST", "")
    with pytest.raises(SettingError, match=r"^environment variable AIGC_HOST: host must be an IP address"):
        load_config()
    monkeypatch.delenv("AIGC_HOST")
    with pytest.raises(SettingError, match=r"^option --port: port must be an integer from 1 to 65535, got 70000$"):
        load_config(port=70000)
    config = load_config(host="::1", port="8080", threads="4")
    assert (config.host, config.port, config.threads) == ("::1", 8080, 4)


def test_saving_a_bad_setting_is_refused_and_the_file_is_kept(aigc_home):
    save_setting("port", 9000)
    before = (aigc_home / "config.toml").read_text()
    for key, value, message in [
        ("port", "", "port must be an integer from 1 to 65535, got ''"),
        ("host", "bad host", "host must be an IP address"),
        ("max_loaded", -1, "max_loaded must be an integer from 1 to 64, got -1"),
        ("model", "  ", "model must not be empty"),
        ("colour", "red", "unknown setting 'colour'; known: host, port"),
    ]:
        with pytest.raises(SettingError) as err:
            save_setting(key, value)
        assert err.value.message.startswith(message) and err.value.param == key
    assert (aigc_home / "config.toml").read_text() == before
    assert load_config().port == 9000


@pytest.mark.parametrize("command", [["serve"], ["chat", "hello", "-m", "echo"]])
def test_aigc_with_a_bad_config_toml_prints_one_line_and_exits(aigc_home, command):
    aigc_home.mkdir(parents=True)
    (aigc_home / "config.toml").write_text('port = ""\n')
    env = {**os.environ, "AIGC_HOME": str(aigc_home), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "aigc_studio", *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert done.stderr == f"Error: {aigc_home / 'config.toml'}: port must be an integer from 1 to 65535, got ''\n"
    assert done.stdout == ""


# -- the server log: a user's mistake is one line, a bug keeps its traceback ---------------------


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_a_users_mistake_is_one_log_line_and_a_bug_logs_its_traceback(aigc_home):
    studio = Studio(load_config(model="echo", image_model="plain", max_body_mb=1))
    ours, uvicorns = Collect(), Collect()
    logging.getLogger("aigc_studio").addHandler(ours)
    logging.getLogger("aigc_studio").setLevel(logging.INFO)
    with LiveServer(create_app(studio, load_default=False)) as server:
        logging.getLogger("uvicorn.error").addHandler(uvicorns)
        try:
            mistakes = [
                ("/v1/chat/completions", {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}, 404),
                ("/v1/chat/completions", {"model": "echo", "messages": [], "temperature": "hot"}, 400),
                ("/sdapi/v1/txt2img", {"prompt": "x", "width": 513}, 422),
                ("/sdapi/v1/img2img", {"init_images": ["bm90IGFuIGltYWdl"]}, 422),
                ("/sdapi/v1/txt2img", {"prompt": "x" * 2**21}, 413),
                ("/sdapi/v1/txt2img", {"prompt": "x", "override_settings": {"sd_model_checkpoint": "nope"}}, 404),
            ]
            for path, body, status in mistakes:
                before = len(ours.records)
                r = httpx.post(server.url + path, json=body)
                assert r.status_code == status, r.text
                lines = [rec for rec in ours.records[before:]]
                assert len(lines) == 1, [rec.getMessage() for rec in lines]
                assert lines[0].getMessage().startswith(f"POST {path} refused ({status}): ")
                assert lines[0].exc_info is None
            assert uvicorns.records == []

            def bug():
                raise RuntimeError("a bug in the registry")

            studio.registry.all = bug
            r = httpx.get(server.url + "/v1/models")
            assert r.status_code == 500
            assert r.json()["error"]["message"] == "internal error (RuntimeError); the server log has the details"
            # uvicorn logs the traceback after the 500 has been sent: wait for it, bounded
            deadline = time.monotonic() + 10
            while not uvicorns.records and time.monotonic() < deadline:
                time.sleep(0.02)
            (logged,) = uvicorns.records
            assert logged.exc_info is not None and "a bug in the registry" in str(logged.exc_info[1])
        finally:
            logging.getLogger("aigc_studio").removeHandler(ours)
            logging.getLogger("uvicorn.error").removeHandler(uvicorns)
    studio.close()


# -- request bodies: a size limit, in the path's error shape ---------------------------------------


def test_a_request_body_over_the_limit_is_a_413_in_the_paths_shape(aigc_home):
    studio = Studio(load_config(model="echo", image_model="plain", max_body_mb=1))
    big = json.dumps({"model": "echo", "prompt": "x" * (2 * 2**20)}).encode()
    limit = "the request body is larger than the limit of 1 MiB (setting max_body_mb, environment variable "
    limit += "AIGC_MAX_BODY_MB)"

    def chunks():  # no Content-Length: counted as it streams in
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    headers = {"content-type": "application/json"}
    with LiveServer(create_app(studio, load_default=False)) as server:
        for content in (big, chunks()):
            r = httpx.post(server.url + "/v1/completions", content=content, headers=headers)
            assert r.status_code == 413
            assert r.json()["error"] == {
                "message": limit,
                "type": "invalid_request_error",
                "param": None,
                "code": "too_large",
            }
        for content in (big, chunks()):
            r = httpx.post(server.url + "/sdapi/v1/img2img", content=content, headers=headers)
            assert r.status_code == 413 and r.json()["detail"] == limit and r.json()["error"] == "TooLarge"
        r = httpx.post(server.url + "/v1/completions", json={"model": "echo", "prompt": "still fine"})
        assert r.json()["choices"][0]["text"] == "still fine"
    assert studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
    studio.close()


def test_stopping_aigc_serve_cancels_an_answer_in_progress_and_exits_cleanly(aigc_home, smollm_path):
    import signal
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AIGC_HOME": str(aigc_home), "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "aigc_studio", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            assert time.time() < deadline and server.poll() is None, "aigc serve did not start"
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        streaming, ended = threading.Event(), []

        def long_answer():
            body = {
                "model": "smollm2",
                "stream": True,
                "max_tokens": 4000,
                "messages": [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}],
            }
            try:
                with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r:
                    for line in r.iter_lines():
                        if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                            streaming.set()
                        if line:
                            ended.append(line)
            except httpx.HTTPError as exc:
                ended.append(exc)

        client = threading.Thread(target=long_answer, daemon=True)
        client.start()
        assert streaming.wait(60), "the answer never started"
        started = time.perf_counter()
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0 and time.perf_counter() - started < 15
    assert "Traceback" not in output and "Aborted" not in output
    client.join(10)
    assert ended[-1] == "data: [DONE]"  # the client got a proper end, not a dropped connection
    rows = Studio(load_config()).db.conn.execute("SELECT status, finish_reason FROM responses").fetchall()
    assert [tuple(r) for r in rows] == [("cancelled", "cancelled")]
