"""Compare: one prompt to several models side by side, with the echo and plain test engines (structure,
timings, saving, bad input), misbehaving remote servers (tests/remote_helpers.Scripted), the API on a live
server and the CLI. The real concurrency check with two SmolLM2s is tests/test_compare_live.py."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from aigc_studio.api.app import create_app
from aigc_studio.cli.main import cli
from aigc_studio.contracts import ImageRequest, TextOptions
from aigc_studio.errors import InvalidRequest, ModelNotFound, NotFound
from aigc_studio.services.compare import parse_axis

from .conftest import LiveServer, make_studio
from .remote_helpers import Scripted

pytestmark = pytest.mark.timeout(120)


def add_test_model(studio, model_id: str, engine: str) -> None:
    """Another model on a test engine (echo: text, plain: image) under its own name, as a second
    registered model would be."""
    kind = "image" if engine == "plain" else "text"
    info = {"capabilities": ["txt2img", "img2img"]} if kind == "image" else {"context_length": 2048}
    with studio.db.tx() as conn:
        conn.execute(
            "INSERT INTO models (id, kind, engine, path, aliases, info, created) VALUES (?,?,?,?,?,?,?)",
            (model_id, kind, engine, "", "[]", json.dumps(info), time.time()),
        )


@pytest.fixture
def studio(tmp_path):
    s = make_studio(tmp_path / "home", model="echo", image_model="plain")
    add_test_model(s, "echo3", "echo")
    add_test_model(s, "plain3", "plain")
    yield s
    s.close()


@pytest.fixture
def scripted():
    server = Scripted()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- text: structure ----------------------------------------------------------------------------------


def test_each_pane_streams_its_answer_then_its_stats_and_the_comparison_is_saved_and_reopened(studio):
    comparison = studio.compare.text(
        "one two three four five", ["echo", "echo3"], system="Be brief.", options=TextOptions(max_tokens=3, seed=7)
    )
    events = list(comparison)
    assert events[-1].type == "done" and events[-1].comparison_id == comparison.id
    for pane, model in enumerate(["echo", "echo3"]):
        mine = [e for e in events if e.pane == pane]
        assert [e.type for e in mine] == ["delta", "delta", "delta", "pane_done"]
        assert {e.model for e in mine} == {model}
        assert "".join(e.text for e in mine[:-1]) == "one two three "
        done = mine[-1]
        assert done.text == "one two three "
        stats = done.stats
        assert stats["finish_reason"] == "length" and stats["completion_tokens"] == 3
        assert stats["status"] == "done" and stats["seed"] == 7
        assert stats["sampling"]["max_tokens"] == 3 and stats["sampling"]["seed"] == 7
        assert 0 <= stats["ttft_ms"] <= stats["duration_ms"]
        assert stats["tokens_per_s"] > 0
    saved = studio.compare.get(comparison.id)
    assert saved["kind"] == "text" and saved["prompt"] == "one two three four five"
    assert saved["models"] == ["echo", "echo3"]
    assert saved["request"] == {"system": "Be brief.", "options": {"seed": 7, "max_tokens": 3}}
    assert [p["text"] for p in saved["results"]] == ["one two three ", "one two three "]
    assert [p["finish_reason"] for p in saved["results"]] == ["length", "length"]
    assert saved["duration_ms"] >= max(p["duration_ms"] for p in saved["results"])
    assert studio.compare.list()[0]["id"] == comparison.id
    # a comparison leaves no conversation in chat history: it is its own record
    assert studio.history.list() == []


def test_the_panes_run_at_the_same_time(studio):
    for model in ("echo", "echo3"):
        studio.registry.worker(model).engine.delay = 0.1  # 10 words: 1 s each when alone
    prompt = " ".join(f"w{i}" for i in range(10))
    started = time.perf_counter()
    events = list(studio.compare.text(prompt, ["echo", "echo3"]))
    elapsed = time.perf_counter() - started
    assert elapsed < 1.6, f"the two 1-second answers took {elapsed:.2f} s together: they ran one after the other"
    # the deltas of the two panes interleave
    order = [e.pane for e in events if e.type == "delta"]
    assert order != sorted(order)


def test_a_pane_reading_a_long_prompt_says_how_far_and_the_record_keeps_none_of_it(studio):
    from aigc_studio.ui.compare import panes_html

    engine = studio.registry.worker("echo3").engine
    engine.prompt_step, engine.delay = 2, 0.2  # only echo3 reads in steps, of 2 words, each 0.2 s
    comparison = studio.compare.text("one two three four five", ["echo", "echo3"], options=TextOptions(max_tokens=2))
    events, shown = [], []
    for event in comparison:
        events.append(event)
        if event.type == "reading":
            shown.append(panes_html("en", comparison.panes))
    reading = [e for e in events if e.type == "reading"]
    assert {e.pane for e in reading} == {1} and {e.model for e in reading} == {"echo3"}
    # 5 words and the message's 2 (the echo engine's count)
    assert [e.read for e in reading] == [0, 2, 4, 6] and {e.prompt_tokens for e in reading} == {7}
    first_text = next(i for i, e in enumerate(events) if e.type == "delta" and e.pane == 1)
    assert all(events.index(e) < first_text for e in reading)
    assert reading[0].as_dict() == {"type": "reading", "pane": 1, "model": "echo3", "read": 0, "prompt_tokens": 7}
    # The pane says so while it reads; the saved panes keep no trace of it.
    assert any(re.search(r"Reading the prompt: \d of 7 tokens", html) for html in shown), shown
    saved = studio.compare.get(comparison.id)["results"]
    assert all("reading" not in p for p in saved) and [p["text"] for p in saved] == ["one two ", "one two "]


def test_stopping_a_comparison_stops_every_pane_and_keeps_what_was_answered(studio):
    for model in ("echo", "echo3"):
        studio.registry.worker(model).engine.delay = 0.05
    comparison = studio.compare.text(" ".join(["word"] * 100), ["echo", "echo3"])
    events = iter(comparison)
    for event in events:
        if event.type == "delta":
            break
    events.close()
    saved = studio.compare.get(comparison.id)
    assert {p["status"] for p in saved["results"]} == {"cancelled"}
    assert all(0 < len(p["text"].split()) < 100 for p in saved["results"] if p["text"])


@pytest.mark.parametrize(
    "models, message",
    [
        (["echo"], "a comparison takes 2-4 text models, got 1"),
        (["echo", "echo3", "echo", "echo3", "echo"], "a comparison takes 2-4 text models, got 5"),
        (["echo", "ECHO"], "each model may be compared once; echo is given more than once (echo, ECHO)"),
    ],
)
def test_too_few_too_many_or_repeated_models_are_refused_before_anything_runs(studio, models, message):
    with pytest.raises(InvalidRequest) as refused:
        studio.compare.text("hi", models)
    assert refused.value.message == message and refused.value.param == "models"
    assert studio.compare.list() == []


def test_an_unknown_model_is_named_and_nothing_runs(studio):
    with pytest.raises(ModelNotFound) as refused:
        studio.compare.text("hi", ["echo", "nope"])
    assert refused.value.message.startswith("The model 'nope' does not exist; available: ")
    assert studio.compare.list() == []
    with pytest.raises(InvalidRequest, match="prompt must not be empty"):
        studio.compare.text("  ", ["echo", "echo3"])


# -- text: remote servers that fail --------------------------------------------------------------------


def test_an_unreachable_remote_is_an_error_in_its_pane_and_the_others_finish(studio):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    studio.models.add_remote("gone", url, "m", check=False)
    events = list(studio.compare.text("alpha beta", ["echo", "gone", "echo3"]))
    errors = [e for e in events if e.type == "pane_error"]
    assert len(errors) == 1 and errors[0].pane == 1 and errors[0].model == "gone"
    assert errors[0].message == f"remote model 'gone' ({url}) is unreachable: [Errno 111] Connection refused"
    done = {e.pane: e.text for e in events if e.type == "pane_done"}
    assert done == {0: "alpha beta", 2: "alpha beta"}
    saved = studio.compare.get(events[-1].comparison_id)["results"]
    assert [p["status"] for p in saved] == ["done", "error", "done"]
    assert saved[1]["error"] == errors[0].message


@pytest.mark.parametrize(
    "behaviour, expected",
    [
        ("500", "the GPU caught fire"),
        ("bad-json", "sent something that is not JSON: '{not json'"),
    ],
)
def test_a_remote_that_answers_500_or_malformed_json_fails_only_its_pane(studio, scripted, behaviour, expected):
    scripted.behaviour = behaviour
    studio.models.add_remote("flaky", scripted.url, "scripted", check=False)
    events = list(studio.compare.text("alpha beta", ["flaky", "echo"]))
    error = next(e for e in events if e.type == "pane_error")
    assert error.pane == 0 and expected in error.message, error.message
    assert next(e for e in events if e.type == "pane_done").text == "alpha beta"


def test_a_remote_that_hangs_times_out_in_its_pane_and_the_others_finish(studio, scripted):
    scripted.behaviour = "hang"
    studio.models.add_remote("stuck", scripted.url, "scripted", check=False)
    engine = studio.registry.worker("stuck").engine
    engine.timeout, engine._client.timeout = 1.0, httpx.Timeout(1.0, connect=1.0)
    started = time.perf_counter()
    events = list(studio.compare.text("alpha beta", ["echo", "stuck"]))
    assert time.perf_counter() - started < 10
    error = next(e for e in events if e.type == "pane_error")
    assert error.model == "stuck" and "sent nothing for 1 s" in error.message
    assert error.text == "Hello"  # what came before the silence is kept
    assert next(e for e in events if e.type == "pane_done").text == "alpha beta"


def test_a_remote_that_answers_is_timed_like_a_local_model(studio, scripted):
    studio.models.add_remote("fine", scripted.url, "scripted", check=False)
    events = list(studio.compare.text("alpha", ["fine", "echo"]))
    done = next(e for e in events if e.type == "pane_done" and e.model == "fine")
    assert done.text == "Hello there" and done.stats["finish_reason"] == "stop"
    assert done.stats["completion_tokens"] == 2 and done.stats["ttft_ms"] is not None


# -- images ---------------------------------------------------------------------------------------------


def _params(infotext: str) -> dict:
    line = infotext.splitlines()[-1]
    return dict(part.split(": ", 1) for part in line.split(", "))


def test_an_image_row_runs_the_same_request_over_each_model(studio):
    request = ImageRequest(prompt="a red fox", steps=2, width=64, height=64, cfg_scale=5, seed=11)
    comparison = studio.compare.images_compare(request, ["plain", "plain3"])
    events = list(comparison)
    assert [e.type for e in events] == ["cell", "cell", "done"]
    cells = [e.cell for e in events[:2]]
    assert [c["model"] for c in cells] == ["plain", "plain3"]
    first, second = (_params(c["infotext"]) for c in cells)
    # the infotexts differ exactly in the model
    assert {k for k in first if first[k] != second.get(k)} == {"Model"}
    assert first["Seed"] == "11" and first["CFG scale"] == "5" and second["Model"] == "plain3"
    assert all(Image.open(c["path"]).size == (64, 64) for c in cells)
    grid = Image.open(comparison.grid_path)
    assert grid.width >= 128 and grid.height > 64  # two images side by side under their labels
    saved = studio.compare.get(comparison.id)
    assert saved["kind"] == "image" and saved["grid_path"] == str(comparison.grid_path)
    assert saved["request"]["axes"] == [{"name": "model", "values": ["plain", "plain3"]}]
    assert [c["image_id"] for c in saved["results"]] == [c["image_id"] for c in cells]


def test_an_xy_grid_varies_exactly_the_parameters_on_its_axes(studio):
    request = ImageRequest(prompt="a lake", steps=2, width=64, height=64)
    comparison = studio.compare.images_compare(request, ["plain"], [parse_axis("cfg=3,7,11"), parse_axis("steps=1,2")])
    cells = [e.cell for e in comparison if e.type == "cell"]
    assert [(c["x"], c["y"]) for c in cells] == [(3.0, 1), (7.0, 1), (11.0, 1), (3.0, 2), (7.0, 2), (11.0, 2)]
    params = [_params(c["infotext"]) for c in cells]
    assert [p["CFG scale"] for p in params] == ["3", "7", "11"] * 2
    assert [p["Steps"] for p in params] == ["1"] * 3 + ["2"] * 3
    for p in params[1:]:  # one seed for all: only cfg and steps differ
        assert {k for k in p if p[k] != params[0][k]} <= {"CFG scale", "Steps"}
    grid = Image.open(comparison.grid_path)
    # three columns over two rows of 64-pixel images, under a header row and after a label column
    assert grid.height == 2 * 64 + 32 and grid.width > 3 * 64
    header = grid.crop((0, 0, grid.width, 32)).convert("L")
    assert header.getextrema()[0] < 100  # the axis labels are drawn


@pytest.mark.parametrize(
    "models, axes, message",
    [
        (["plain"], [], "an image comparison needs 2-4 models or a grid axis (e.g. cfg=3,7,11)"),
        (["plain", "plain"], [], "each model may be compared once; plain is given more than once (plain, plain)"),
        (["plain"], ["cfg=3"], "grid axis cfg_scale takes 2-8 values, got 1"),
        (["plain"], ["cfg=3,7", "cfg=1,2"], "the two grid axes both vary cfg_scale; vary two different ones"),
        (["plain"], ["cfg=3,99"], "grid: cfg_scale: Input should be less than or equal to 30"),
        (["plain"], ["cfg=1,2,3,4,5", "steps=1,2,3,4"], "an image comparison has at most 16 cells, got 20"),
        (["plain"], ["colour=1,2"], "grid axis must be NAME=V1,V2,... with NAME one of"),
        (["plain"], ["cfg=3,3.0"], "grid axis cfg_scale repeats 3.0; give each value once"),
    ],
)
def test_bad_image_comparisons_are_refused_and_nothing_is_queued(studio, models, axes, message):
    with pytest.raises(InvalidRequest) as refused:
        studio.compare.images_compare(
            ImageRequest(prompt="x", width=64, height=64), models, [parse_axis(a) for a in axes]
        )
    assert refused.value.message.startswith(message), refused.value.message
    assert studio.jobs.pending() == [] and studio.images.list() == []


def test_dynamic_prompts_are_refused_in_a_comparison(studio):
    request = ImageRequest(prompt="a {red|blue} boat", width=64, height=64, dynamic_prompts="random")
    with pytest.raises(InvalidRequest, match="a comparison gives every cell the same prompt"):
        studio.compare.images_compare(request, ["plain", "plain3"])
    assert studio.images.list() == []


def test_a_grid_of_samplers_refuses_an_unknown_one_before_any_cell_runs(studio):
    with pytest.raises(InvalidRequest, match="unknown sampler"):
        studio.compare.images_compare(
            ImageRequest(prompt="x", width=64, height=64), ["plain"], [parse_axis("sampler=Euler,Nope")]
        )
    assert studio.images.list() == []


def test_reading_a_comparison_that_does_not_exist(studio):
    with pytest.raises(NotFound, match="no comparison with id 'cmp-0'"):
        studio.compare.get("cmp-0")


# -- API on a live server ---------------------------------------------------------------------------


def _sse(response) -> list[dict]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    return events


def test_the_api_streams_the_panes_and_keeps_the_comparison(studio):
    with LiveServer(create_app(studio, load_default=False)) as live:
        body = {"prompt": "red green blue", "models": ["echo", "echo3"], "options": {"max_tokens": 2, "seed": 3}}
        with httpx.stream("POST", live.url + "/api/compare", json=body, timeout=30) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = _sse(r)
        assert [e["type"] for e in events if e.get("pane") == 1] == ["delta", "delta", "pane_done"]
        done = events[-1]
        assert done["type"] == "done"
        record = httpx.get(f"{live.url}/api/compare/{done['comparison_id']}").json()
        assert [p["text"] for p in record["results"]] == ["red green ", "red green "]
        assert record["results"][0]["finish_reason"] == "length" and record["results"][0]["seed"] == 3

        whole = httpx.post(live.url + "/api/compare", json={**body, "stream": False}, timeout=30)
        assert whole.status_code == 200 and whole.json()["kind"] == "text"
        assert [p["completion_tokens"] for p in whole.json()["results"]] == [2, 2]
        listed = httpx.get(live.url + "/api/compare").json()
        assert [c["id"] for c in listed] == [whole.json()["id"], done["comparison_id"]]

        r = httpx.post(live.url + "/api/compare", json={"prompt": "x", "models": ["echo"]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "models"
        r = httpx.post(live.url + "/api/compare", json={"prompt": "x", "models": ["echo", "nope"]})
        assert r.status_code == 404 and "The model 'nope' does not exist" in r.json()["error"]["message"]
        r = httpx.post(live.url + "/api/compare", json={"prompt": "x", "models": ["echo", "Echo"]})
        assert r.status_code == 400
        assert (
            r.json()["error"]["message"] == "each model may be compared once; echo is given more than once (echo, Echo)"
        )
        assert httpx.get(live.url + "/api/compare/cmp-0").status_code == 404
        assert len(httpx.get(live.url + "/api/compare").json()) == 2  # the refused ones saved nothing


def test_the_api_compares_images_in_a_grid_and_serves_the_grid(studio):
    with LiveServer(create_app(studio, load_default=False)) as live:
        body = {
            "prompt": "a boat",
            "width": 64,
            "height": 64,
            "steps": 2,
            "seed": 5,
            "models": ["plain", "plain3"],
            "grid": [{"name": "cfg", "values": [3, 9]}],
        }
        r = httpx.post(live.url + "/api/compare/images", json=body, timeout=60)
        assert r.status_code == 200, r.text
        record = r.json()
        assert record["request"]["axes"] == [
            {"name": "cfg_scale", "values": [3.0, 9.0]},
            {"name": "model", "values": ["plain", "plain3"]},
        ]
        assert [(c["x"], c["y"]) for c in record["results"]] == [
            (3.0, "plain"),
            (9.0, "plain"),
            (3.0, "plain3"),
            (9.0, "plain3"),
        ]
        assert all(c["infotext"].splitlines()[-1].count("Seed: 5") == 1 for c in record["results"])
        image = httpx.get(f"{live.url}/api/images/{record['results'][0]['image_id']}.png")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        grid = httpx.get(f"{live.url}/api/compare/{record['id']}/grid.png")
        assert grid.status_code == 200 and grid.content.startswith(b"\x89PNG")

        r = httpx.post(live.url + "/api/compare/images", json={**body, "grid": [{"name": "steps", "values": [1, 500]}]})
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("grid: steps: Input should be less")
        r = httpx.get(live.url + "/api/compare/images")  # not read as a comparison called "images"
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        r = httpx.post(live.url + "/api/compare/images", json={"prompt": "x", "models": ["plain"]})
        assert r.status_code == 400 and "needs 2-4 models or a grid axis" in r.json()["error"]["message"]


# -- CLI ------------------------------------------------------------------------------------------------


def test_the_cli_prints_each_answer_labelled_then_the_timings_and_shows_it_again(studio):
    runner = CliRunner()
    env = {"AIGC_HOME": str(studio.config.home), "AIGC_MODEL": "echo"}
    result = runner.invoke(
        cli, ["compare", "sun moon stars", "-m", "echo", "-m", "echo3", "--max-tokens", "2"], env=env
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "── [1] echo ─" in out and "── [2] echo3 ─" in out and out.count("sun moon\n") == 2
    table = out[out.index("TTFT ms") :]
    assert " 1. echo " in table and " 2. echo3" in table and table.count("length") == 2
    comparison_id = studio.compare.list()[0]["id"]
    assert f"saved as {comparison_id}" in out
    shown = runner.invoke(cli, ["compare", "show", comparison_id], env=env)
    assert shown.exit_code == 0 and "sun moon" in shown.output and "── [2] echo3 ─" in shown.output
    listed = runner.invoke(cli, ["compare", "list"], env=env)
    assert comparison_id in listed.output and "echo, echo3" in listed.output

    refused = runner.invoke(cli, ["compare", "hi", "-m", "echo"], env=env)
    assert refused.exit_code == 1 and "Error: a comparison takes 2-4 text models, got 1" in refused.output
    refused = runner.invoke(cli, ["compare", "hi", "-m", "echo", "-m", "echo3", "--steps", "3"], env=env)
    assert refused.exit_code == 2 and "--steps only go with --image" in refused.output


def test_the_cli_draws_a_grid_and_prints_the_paths(studio):
    runner = CliRunner()
    env = {"AIGC_HOME": str(studio.config.home), "AIGC_MODEL": "echo", "AIGC_IMAGE_MODEL": "plain"}
    args = ["compare", "a hill", "--image", "-m", "plain", "--grid", "cfg=3,7", "--grid", "steps=1,2"]
    result = runner.invoke(cli, [*args, "--width", "64", "--height", "64", "--seed", "9"], env=env)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == [
        "[1/4] cfg_scale=3.0, steps=1",
        "[2/4] cfg_scale=7.0, steps=1",
        "[3/4] cfg_scale=3.0, steps=2",
        "[4/4] cfg_scale=7.0, steps=2",
    ]
    paths = [line.split(": ", 1)[1].rsplit(" (", 1)[0] for line in lines]
    assert all(Image.open(p).size == (64, 64) for p in paths) and all(p.endswith("-9.png") for p in paths)
    grid = result.output.split("grid: ", 1)[1].split()[0]
    assert Image.open(grid).size[1] == 2 * 64 + 32
