"""`aigc serve --ray`: the embedded text model and a tiny Stable Diffusion model as Ray Serve deployments
on a local Ray cluster, behind the studio's own gateway on a real uvicorn, passing the same API tests as
the single-process server (imported from test_openai_api and test_sdapi, run here against this server
through the ``live``, ``client`` and ``tiny_server`` fixtures below).
"""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest

pytest.importorskip(
    "ray.serve", reason="the ray extra is not installed (pip install -e '.[ray]'; setup.sh --dev installs it)"
)

from aigc_studio.api.app import create_app
from aigc_studio.config import load_config
from aigc_studio.engines.ray_serve import RayEngineHost, RayImageEngine, RayTextEngine
from aigc_studio.studio import Studio

from .conftest import LiveServer
from .test_openai_api import (  # noqa: F401 - the same tests, on this module's server
    client,
    test_chat_non_streamed_is_deterministic_with_a_seed,
    test_client_going_away_cancels_and_keeps_the_partial_answer,
    test_four_concurrent_clients_get_what_they_would_get_alone,
    test_health_and_models,
    test_prompt_longer_than_context_is_400_with_both_numbers,
    test_resent_conversation_continues_in_history,
    test_stream_gives_the_same_text_and_a_usage_chunk,
)
from .test_sdapi import (  # noqa: F401
    test_a_models_own_defaults_beat_a1111s_api_defaults,
    test_dpmpp_2m_karras_runs_the_karras_schedule_on_a_real_model,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory, smollm_path):
    """A local Ray cluster (2 CPUs) serving both deployments, and the studio's gateway on uvicorn."""
    import webuiapi

    from tests.tiny_models import build_tiny_sd

    model = build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"), kind="sd15")
    old_home = os.environ.get("AIGC_HOME")
    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("ray-home"))
    started = time.perf_counter()
    host = RayEngineHost(num_cpus=2)
    studio = Studio(load_config(parallel=2), engine_host=host)
    try:
        studio.registry.add(model.folder, model_id="tiny-sd15")
        studio.registry.add(model.folder, model_id="tiny-fast", defaults={"steps": 2, "cfg_scale": 1.5})
        with LiveServer(create_app(studio)) as live:
            deadline = time.time() + 120
            while httpx.get(live.url + "/health", timeout=60).status_code != 200:
                assert time.time() < deadline, "the default model did not load on a Ray replica"
                time.sleep(0.1)
            live.studio = studio
            live.api = webuiapi.WebUIApi(host="127.0.0.1", port=int(live.url.rsplit(":", 1)[1]))
            live.started_in = time.perf_counter() - started
            yield live
    finally:
        studio.close()  # closes the Ray cluster it was given, too
        if old_home is not None:
            os.environ["AIGC_HOME"] = old_home


@pytest.fixture(scope="module")
def live(ray_server):
    return ray_server


@pytest.fixture(scope="module")
def tiny_server(ray_server):
    return ray_server


def test_the_models_run_on_ray_replicas_not_in_the_gateway(ray_server):
    from ray import serve

    registry = ray_server.studio.registry
    assert isinstance(registry.engine("smollm2-135m"), RayTextEngine)
    assert isinstance(registry.image_engine("tiny-sd15"), RayImageEngine)
    status = serve.status()
    for app in ("aigc-text", "aigc-image"):
        assert status.applications[app].status == "RUNNING"
    assert not status.proxies  # the studio's FastAPI app is the only HTTP server: Serve's proxy is off


def test_the_local_cluster_listens_on_loopback_but_for_each_replicas_grpc_port(ray_server):
    import ipaddress

    import psutil
    import ray

    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    exposed = []
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            listening = [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
            name = process.cmdline()[0]
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
            continue  # a worker that ended meanwhile
        for connection in listening:
            address = ipaddress.ip_address(connection.laddr.ip)
            address = getattr(address, "ipv4_mapped", None) or address
            if not address.is_loopback:
                exposed.append(name.split(":")[2] if name.startswith("ray::ServeReplica") else name)
    # Ray 2.60 binds each Serve replica's inter-deployment gRPC server to [::] (replica.py), nothing else.
    assert sorted(exposed) == ["ServeReplica", "ServeReplica"], exposed


def test_txt2img_through_ray_with_webuiapi_names_what_ran(ray_server):
    api = ray_server.api
    r = api.txt2img(
        prompt="a red house",
        seed=5,
        steps=2,
        width=64,
        height=64,
        sampler_name="Euler",
        override_settings={"sd_model_checkpoint": "tiny-sd15"},
    )
    assert r.image.size == (64, 64)
    model_hash = ray_server.studio.registry.model_hash(ray_server.studio.registry.resolve("tiny-sd15"))
    infotext = r.info["infotexts"][0]
    assert f"Seed: 5, Size: 64x64, Model hash: {model_hash}, Model: tiny-sd15" in infotext
    assert (r.info["sd_model_name"], r.info["sd_model_hash"], r.info["steps"]) == ("tiny-sd15", model_hash, 2)
    # The gallery's record of it says the same, and the PNG carries it.
    row = ray_server.studio.db.conn.execute("SELECT * FROM images ORDER BY created DESC LIMIT 1").fetchone()
    assert row["infotext"] == infotext and row["model"] == "tiny-sd15"
    assert api.png_info(r.image).info == infotext
    other = api.txt2img(prompt="a red house", seed=6, steps=2, width=64, height=64, sampler_name="Euler")
    assert other.image.tobytes() != r.image.tobytes()  # the replica ran the model with the seed it was given


def test_progress_skip_and_interrupt_reach_the_replica(ray_server):
    api = ray_server.api
    result = {}

    def generate():
        result["r"] = api.txt2img(prompt="slow", steps=150, n_iter=2, width=64, height=64, seed=9, sampler_name="Euler")

    worker = threading.Thread(target=generate)
    worker.start()
    deadline = time.time() + 60
    while (progress := api.get_progress())["state"]["sampling_step"] < 2:
        assert time.time() < deadline and worker.is_alive(), "no step reported from the replica"
        time.sleep(0.05)
    assert progress["state"]["sampling_steps"] == 150 and 0 < progress["progress"] < 1
    api.skip()  # the first batch stops part-way and the second begins
    while api.get_progress()["state"]["job_no"] < 1:
        assert time.time() < deadline and worker.is_alive(), "the skip did not reach the replica"
        time.sleep(0.05)
    api.interrupt()
    worker.join(60)
    r = result["r"]
    assert r.info["interrupted"] is True and r.info["all_seeds"] == [9, 10]
    for infotext in r.info["infotexts"]:  # each batch stopped part-way, and its record says how far it got
        assert 1 <= int(infotext.split("Steps run: ")[1].split(",")[0]) < 150


def test_a_replicas_refusal_is_a_4xx_with_its_own_words(ray_server):
    body = {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string"}}},
        "logit_bias": {"999999": 1},
    }
    r = httpx.post(ray_server.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "logit_bias" and "outside this model's vocabulary (0..49151)" in error["message"]
    assert "Traceback" not in error["message"] and "Ray" not in json.dumps(error)
