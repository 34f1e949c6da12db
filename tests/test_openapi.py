"""The OpenAPI schema tells the truth.

schemathesis fuzzes every API operation (/v1, /sdapi/v1, /api, /health) of a live server, as a user would
run it from the repository root (``st run URL/openapi.json``, which reads schemathesis.toml and
tests/fuzz_hooks.py), with all its default checks, a bounded number of examples per operation and no
randomness; it must find nothing. The other tests pin each bug such a run found, and what the schema
says about errors, methods and limits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aigc_studio.api.app import create_app
from aigc_studio.config import load_config
from aigc_studio.studio import Studio

from .conftest import LiveServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, smollm_path):
    """``aigc serve`` with the embedded SmolLM2 and the plain test image engine (tests/fuzz_hooks.py names
    them in the requests it keeps small)."""
    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("openapi-home"))
    studio = Studio(load_config(model="smollm2-135m", image_model="plain"))
    with LiveServer(create_app(studio)) as live:
        live.studio = studio
        yield live
    studio.close()


# The repository's schemathesis.toml (the hooks), and: a bounded, repeatable run that keeps nothing.
FUZZ_SETTINGS = """
[generation]
max-examples = 20
deterministic = true
database = "none"

[cache]
enabled = false
"""
# No operation is left out (none downloads models or stops the server; `aigc models pull` is the CLI's).
# One that had to be would be named here with its reason, passed to `st run` as --exclude-path, and
# subtracted from the count the run must report.
EXCLUDED: dict[str, str] = {}
REQUEST_TIMEOUT_S = 120  # each request's deadline: the slowest, a generation on a loaded machine, takes seconds
# The bounded run: the phases whose cases max-examples bounds (20 per operation). Schemathesis's coverage
# phase is not bounded that way: it sends every boundary value of every field, about 8,900 cases here,
# which took its server 6 min of CPU (26 min on a loaded machine); it runs with AIGC_FUZZ_COVERAGE=1.
BOUNDED_PHASES = "examples,fuzzing,stateful"
RUN_TIMEOUT_S = 1800  # the whole run's bound: it took 3 min 15 s under a load average of 4-9 (README)


def _schemathesis(server, tmp_path, phases: str, timeout: int = RUN_TIMEOUT_S) -> str:
    """Run ``st run`` on the server's schema with the repository's hooks and FUZZ_SETTINGS; its report,
    after asserting that it found nothing and tested every operation."""
    config = tmp_path / "schemathesis.toml"
    config.write_text((ROOT / "schemathesis.toml").read_text() + FUZZ_SETTINGS)
    st = Path(sys.executable).with_name("st")
    command = [str(st), "--config-file", str(config), "--no-color", "run", server.url + "/openapi.json"]
    # One worker: requests one at a time, so image jobs never pile up (and hypothesis is not thread-safe).
    command += ["--workers", "1", "--continue-on-failure", "--max-failures", "50", "--phases", phases]
    command += ["--request-timeout", str(REQUEST_TIMEOUT_S)]
    for path in EXCLUDED:
        command += ["--exclude-path", path]
    log = tmp_path / "schemathesis.log"
    with log.open("w") as out:
        try:
            run = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"schemathesis ran past {timeout} s; its output so far:\n{log.read_text()[-5000:]}")
    report = log.read_text()
    # the summary, every failure and error, each line cut short (a reproducing curl can be megabytes)
    assert run.returncode == 0, "\n".join(line[:500] for line in report.splitlines())[-20_000:]
    operations = sum(len(path) for path in httpx.get(server.url + "/openapi.json").json()["paths"].values())
    assert f"Tested: {operations - len(EXCLUDED)}" in report, report[-3000:]
    return report


@pytest.mark.fuzz
@pytest.mark.timeout(RUN_TIMEOUT_S + 120)
def test_schemathesis_finds_nothing(server, tmp_path):
    _schemathesis(server, tmp_path, BOUNDED_PHASES)
    # the fuzzer's generations all ran and none failed; the server still answers
    states = dict(server.studio.db.conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    assert states.get("done", 0) > 0 and set(states) <= {"done"}, states
    assert server.studio.jobs.pending() == []
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


@pytest.mark.fuzz
@pytest.mark.skipif(
    not os.environ.get("AIGC_FUZZ_COVERAGE"),
    reason="schemathesis's coverage phase (every field's boundaries, ~8,900 cases, 6 min of server CPU): "
    "AIGC_FUZZ_COVERAGE=1 runs it",
)
@pytest.mark.timeout(4 * RUN_TIMEOUT_S)
def test_schemathesis_coverage_phase_finds_nothing(server, tmp_path):
    _schemathesis(server, tmp_path, "coverage", timeout=4 * RUN_TIMEOUT_S)
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


# ---------------------------------------------------------------------------------------------------
# What such a run found, one by one.


def test_a_query_limit_out_of_range_is_a_400_naming_it(server):
    # was a 500: SQLite's OverflowError on a LIMIT past 64 bits
    r = httpx.get(server.url + "/api/images", params={"limit": "34329972966235148288"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "limit"
    assert error["message"] == "limit: Input should be less than or equal to 1000, got '34329972966235148288'"
    assert httpx.get(server.url + "/api/images", params={"limit": 0}).status_code == 400
    assert httpx.get(server.url + "/api/images", params={"limit": 1000}).status_code == 200


@pytest.mark.parametrize(
    "method, path, allowed, shape",
    [
        ("TRACE", "/v1/models", "GET, HEAD", "openai"),
        ("DELETE", "/v1/chat/completions", "POST", "openai"),
        ("PUT", "/health", "GET, HEAD", "openai"),
        ("GET", "/sdapi/v1/txt2img", "POST", "a1111"),
        ("PATCH", "/sdapi/v1/options", "GET, HEAD, POST", "a1111"),
        ("POST", "/api/images", "GET, HEAD", "openai"),
    ],
)
def test_an_undeclared_method_is_a_405_with_allow(server, method, path, allowed, shape):
    # was a 404 from the web UI mounted at "/", which answers every path the API routes do not take
    r = httpx.request(method, server.url + path)
    assert r.status_code == 405 and r.headers["allow"] == allowed
    message = f"{method} is not allowed on {path}; allowed: {allowed}"
    if shape == "openai":
        assert r.json() == {
            "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "method_not_allowed"}
        }
    else:
        assert r.json() == {"error": "MethodNotAllowed", "detail": message, "body": "", "errors": message}


def test_head_is_get_without_the_body(server):
    r = httpx.head(server.url + "/health")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == len(httpx.get(server.url + "/health").content)
    assert httpx.head(server.url + "/sdapi/v1/txt2img").headers["allow"] == "POST"


def test_an_unknown_api_path_is_a_404_in_its_apis_shape_and_the_web_ui_still_answers(server):
    r = httpx.get(server.url + "/v1/embeddings")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (
        r.json()["error"]["message"] == "there is no endpoint /v1/embeddings; the API's endpoints are listed at /docs"
    )
    r = httpx.post(server.url + "/sdapi/v1/extra-single-image", json={})
    assert r.status_code == 404 and set(r.json()) == {"error", "detail", "body", "errors"}
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.get(server.url + "/config").status_code == 200  # the UI's own routes stay the UI's


def test_the_schema_documents_each_error_with_the_body_it_has(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    assert "HTTPValidationError" not in str(schema)  # FastAPI's 422 (detail: a list) is never sent
    documented = {}
    for path, operations in schema["paths"].items():
        shape = "A1111ErrorBody" if path.startswith("/sdapi/") else "ErrorBody"
        for method, operation in operations.items():
            codes = {int(c) for c in operation["responses"]}
            documented[f"{method.upper()} {path}"] = codes
            for code in codes - {200, 201, 204}:  # 204: no body
                body = operation["responses"][str(code)]["content"]["application/json"]["schema"]
                expected = "HealthNotReady" if path == "/health" else shape
                assert body == {"$ref": f"#/components/schemas/{expected}"}, (path, code, body)
            if "requestBody" in operation:
                assert 413 in codes, path
    assert documented["GET /api/images"] == {200, 400, 429}
    assert documented["GET /api/images/{image_id}.png"] == {200, 404, 429}
    assert documented["GET /api/jobs/{job_id}"] == {200, 404}
    assert documented["GET /v1/models/{model_id}"] == {200, 404, 429}
    assert documented["GET /sdapi/v1/progress"] == {200, 422}
    assert documented["GET /health"] == {200, 503}
    assert documented["POST /v1/chat/completions"] == {200, 400, 404, 413, 422, 429, 503}
    assert documented["POST /sdapi/v1/txt2img"] == {200, 404, 409, 413, 422, 429, 503}
    streamed = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(streamed) == {"application/json", "text/event-stream"}


def test_a_value_of_the_wrong_type_is_refused_not_converted(server):
    r = httpx.post(server.url + "/sdapi/v1/txt2img", json={"prompt": "x", "steps": "20"})
    assert r.status_code == 422 and r.json()["detail"] == "steps: must be an integer, got '20'"
    r = httpx.post(server.url + "/sdapi/v1/txt2img", json={"prompt": "x", "tiling": 1})
    assert r.status_code == 422 and r.json()["detail"].startswith("tiling: Input should be a valid boolean")
    ask = [{"role": "user", "content": "Hi"}]
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "smollm2-135m", "messages": ask, "seed": False})
    assert r.status_code == 400 and r.json()["error"]["param"] == "seed"
    # an integer is an integer however JSON spells it, as JSON Schema says
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "smollm2", "messages": ask, "max_tokens": 2.0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 2


def test_an_empty_prompt_is_a_400_as_the_schema_says(server):
    r = httpx.post(server.url + "/v1/completions", json={"model": "smollm2-135m", "prompt": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    schema = httpx.get(server.url + "/openapi.json").json()["components"]["schemas"]["CompletionRequest"]
    assert {"type": "string", "minLength": 1} in schema["properties"]["prompt"]["anyOf"]


def test_options_of_the_wrong_type_are_refused_and_nothing_is_set(server):
    before = httpx.get(server.url + "/sdapi/v1/options").json()
    r = httpx.post(server.url + "/sdapi/v1/options", json={"jpeg_quality": 3.5, "n_rows": 2})
    assert r.status_code == 422 and r.json()["detail"] == "jpeg_quality: must be like 80, got 3.5"
    r = httpx.post(server.url + "/sdapi/v1/options", json={"sd_model_checkpoint": 5})
    assert r.status_code == 422 and "sd_model_checkpoint: must be a model name (text) or null, got 5" in r.text
    assert httpx.get(server.url + "/sdapi/v1/options").json() == before
    assert httpx.post(server.url + "/sdapi/v1/options", json={"jpeg_quality": 90.0}).status_code == 200
    assert httpx.get(server.url + "/sdapi/v1/options").json()["jpeg_quality"] == 90


def test_a_sampler_index_the_studio_does_not_know_is_refused_even_beside_a_sampler_name(server):
    body = {"prompt": "x", "steps": 1, "width": 64, "height": 64, "sampler_name": "Euler", "sampler_index": "k_foo"}
    r = httpx.post(server.url + "/sdapi/v1/txt2img", json=body)
    assert r.status_code == 422 and r.json()["detail"].startswith("sampler_index: unknown sampler 'k_foo'")


def test_an_image_size_must_be_one_the_studio_makes(server):
    body = {"prompt": "x", "model": "plain", "size": "10x10"}
    r = httpx.post(server.url + "/v1/images/generations", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        "size: must be WIDTHxHEIGHT, each side 64 to 2048 and a multiple of 8, got '10x10'"
    )
    r = httpx.post(server.url + "/v1/images/generations", json={**body, "size": "x64"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "size"  # was a 500 (int(''))


def test_a_recorded_image_whose_file_is_gone_is_a_404(server):
    body = {"prompt": "gone", "steps": 1, "width": 64, "height": 64}
    assert httpx.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=60).status_code == 200
    image = httpx.get(server.url + "/api/images", params={"limit": 1, "q": "gone"}).json()[0]
    assert httpx.get(f"{server.url}/api/images/{image['id']}.png").headers["content-type"] == "image/png"
    Path(image["path"]).unlink()
    r = httpx.get(f"{server.url}/api/images/{image['id']}.png")  # was a 500 (FileResponse of no file)
    assert r.status_code == 404
    assert (
        r.json()["error"]["message"]
        == f"image '{image['id']}' is recorded, but its file {image['path']} is no longer there"
    )


def test_a_job_has_one_shape_while_queued_and_from_its_record(server):
    body = {"prompt": "job", "steps": 2, "width": 64, "height": 64}
    assert httpx.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=60).status_code == 200
    job_id = server.studio.db.conn.execute("SELECT id FROM jobs ORDER BY created DESC LIMIT 1").fetchone()[0]
    live = httpx.get(f"{server.url}/api/jobs/{job_id}").json()
    assert (live["state"], live["progress"], live["steps"], live["source"]) == ("done", 1.0, 2, "sdapi")
    with server.studio.jobs._lock:  # as the queue forgets a job once 50 newer ones have ended
        del server.studio.jobs._jobs[job_id]
    recorded = httpx.get(f"{server.url}/api/jobs/{job_id}").json()
    assert set(recorded) == set(live)
    assert recorded == {**live, "step": None, "steps": None, "batch": None, "batches": None, "eta": None}
    assert httpx.get(f"{server.url}/api/jobs/job-none").status_code == 404


# ---------------------------------------------------------------------------------------------------
# The schema's name patterns accept exactly what the studio serves (as schemathesis reads them: ECMA).


def _served(field: str, text: str) -> bool:
    from pydantic import ValidationError

    from aigc_studio.contracts import ImageRequest

    if not text.strip():
        return True  # whitespace alone: the default, under /sdapi as in A1111
    try:
        ImageRequest(**{field: text})
    except ValidationError:
        return False
    return True


def _names(field: str) -> list[str]:
    from aigc_studio.contracts import HR_UPSCALERS, SAMPLERS, SCHEDULERS

    if field == "sampler_name":
        return [*SAMPLERS, *(f"{s} {k}" for s in SAMPLERS for k in [*SCHEDULERS, *SCHEDULERS.values()])]
    if field == "scheduler":
        return [*SCHEDULERS, *SCHEDULERS.values()]
    return list(HR_UPSCALERS)


@pytest.mark.parametrize("field", ["sampler_name", "scheduler", "hr_upscaler"])
def test_a_name_pattern_accepts_what_the_studio_takes(field):
    import jsonschema_rs
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from aigc_studio.services.a1111_schema import SAMPLER_PATTERN, SCHEDULE_PATTERN, UPSCALER_PATTERN

    pattern = {"sampler_name": SAMPLER_PATTERN, "scheduler": SCHEDULE_PATTERN, "hr_upscaler": UPSCALER_PATTERN}[field]
    valid = jsonschema_rs.validator_for({"type": "string", "pattern": pattern}).is_valid
    spaces = st.text(st.sampled_from(" \t\n\x1c\x85\u00a0\u3000\ufeff_x"), max_size=2)

    def variant(name: str, cases: list[bool], cut: int, pre: str, post: str) -> str:
        text = "".join(c.upper() if up else c.lower() for c, up in zip(name, cases + [False] * len(name), strict=False))
        if cut:  # a character lost, or doubled
            i = cut % len(text)
            text = text[:i] + text[i + 1 :] if cut > 0 else text[:i] + text[i] + text[i:]
        return pre + text + post

    texts = st.builds(
        variant,
        st.sampled_from(_names(field)),
        st.lists(st.booleans(), max_size=30),
        st.integers(-40, 40).filter(lambda n: n % 3 == 0),
        spaces,
        spaces,
    )

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(st.one_of(texts, st.text(max_size=12)))
    def check(text: str) -> None:
        assert valid(text) == _served(field, text), text

    check()
