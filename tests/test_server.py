"""Server behaviour that is not about the model: health while loading, binding, errors shape."""

from __future__ import annotations

import threading
import time

import httpx

from aigc_studio.api.app import create_app
from aigc_studio.config import load_config
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
