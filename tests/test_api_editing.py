"""/api/write/ops, /api/write/edit and /api/templates on a live server (echo model), and one real
polish by the embedded SmolLM2 through the API."""

from __future__ import annotations

import json

import httpx
import pytest

from .conftest import studio_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with studio_server(tmp_path_factory.mktemp("edit-api-home"), load_default=False, model="echo") as live:
        yield live


def events(response: httpx.Response) -> list:
    """The data of each server-sent event, JSON-decoded ("[DONE]" as it is)."""
    found = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


def error(response: httpx.Response) -> dict:
    return response.json()["error"]


def test_ops_lists_every_operation_in_both_languages(server):
    ops = httpx.get(server.url + "/api/write/ops").json()
    assert [o["name"] for o in ops] == [
        "continue",
        "polish",
        "expand",
        "shorten",
        "summarize",
        "translate",
        "tone",
        "titles",
        "keywords",
    ]
    tone = next(o for o in ops if o["name"] == "tone")
    assert (tone["title_en"], tone["title_zh"], tone["takes"]) == ("Change tone", "改变语气", ["tone"])


def test_edit_answers_the_new_text_and_the_diff(server):
    text = "春天来了。花开了，草绿了。"
    start = text.index("花")
    r = httpx.post(server.url + "/api/write/edit", json={"op": "polish", "text": text, "start": start})
    assert r.status_code == 200
    body = r.json()
    prompt = server.studio.templates.get("polish.zh").render(text="花开了，草绿了。")[1]
    assert body["text"] == "春天来了。" + prompt and body["changed"] is True
    assert (body["language"], body["start"], body["end"], body["finish_reason"]) == ("zh", 5, 13, "stop")
    assert body["changes"][0] == {"op": "equal", "text": "春天来了。"}
    assert "".join(c["text"] for c in body["changes"] if c["op"] != "insert") == text
    assert body["diff"].startswith(
        "--- original\n+++ edited\n@@ -1 +1,3 @@\n-春天来了。花开了，草绿了。\n+春天来了。请润色"
    )


def test_edit_streams_deltas_then_the_result(server):
    r = httpx.post(server.url + "/api/write/edit", json={"op": "keywords", "text": "cats, dogs", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = events(r)
    assert got[-1] == "[DONE]" and got[-2]["type"] == "result"
    deltas = "".join(e["text"] for e in got[:-2])
    assert deltas == got[-2]["output"] and got[-2]["items"][-1] == "cats, dogs"
    assert got[-2]["text"] == "cats, dogs" and got[-2]["changed"] is False


@pytest.mark.parametrize(
    "body, status, message",
    [
        (
            {"op": "polish", "text": "Hello", "start": 2, "end": 40},
            400,
            "the selection 2:40 is outside the text, which has 5 characters; give 0 <= start <= end <= 5",
        ),
        ({"op": "polish", "text": "Hello", "start": 3, "end": 3}, 400, "the selection 3:3 is empty"),
        ({"op": "tone", "text": "Hello"}, 400, "the operation 'tone' needs the tone to write in"),
        ({"op": "polish", "text": "Hello", "target": "zh"}, 400, "target is only for the operation 'translate'"),
        ({"op": "rhyme", "text": "Hello"}, 400, "op: Input should be 'continue', 'polish'"),
        ({"op": "polish", "text": ""}, 400, "text: String should have at least 1 character"),
        ({"op": "polish", "text": "Hello", "model": "nope"}, 404, "The model 'nope' does not exist"),
    ],
)
def test_bad_edits_are_4xx_naming_the_problem(server, body, status, message):
    r = httpx.post(server.url + "/api/write/edit", json=body)
    assert r.status_code == status and message in error(r)["message"]


def test_templates_crud_export_import_over_http(server):
    url = server.url + "/api/templates"
    shipped = httpx.get(url, params={"kind": "general", "language": "zh"}).json()
    assert {t["key"] for t in shipped} == {
        "blog-post.zh",
        "tech-explainer.zh",
        "product-copy.zh",
        "summary.zh",
        "code-review.zh",
    }
    created = httpx.post(
        url,
        json={
            "name": "slogan",
            "language": "en",
            "prompt": "A slogan for {product}.",
            "variables": {"product": {"description": "what to sell"}},
        },
    )
    assert created.status_code == 201 and created.json()["source"] == "user"
    again = httpx.post(url, json={"name": "slogan", "language": "en", "prompt": "x"})
    assert again.status_code == 409 and error(again)["code"] == "template_exists"
    edited = httpx.put(url + "/slogan.en", json={"prompt": "Two slogans for {product}.", "variables": {"product": {}}})
    assert edited.status_code == 200 and edited.json()["prompt"] == "Two slogans for {product}."
    exported = httpx.get(url + "/slogan.en/export")
    assert exported.headers["content-disposition"] == 'attachment; filename="slogan.en.toml"'
    assert httpx.delete(url + "/slogan.en").json() == {"deleted": "slogan.en", "restored": False}
    assert httpx.get(url + "/slogan.en").status_code == 404
    imported = httpx.post(url, json={"toml": exported.text})
    assert imported.status_code == 201 and imported.json()["prompt"] == "Two slogans for {product}."
    ran = httpx.post(url + "/slogan.en/run", json={"variables": {"product": "tea"}, "model": "echo"})
    assert ran.json()["text"] == "Two slogans for tea." and ran.json()["finish_reason"] == "stop"
    streamed = events(httpx.post(url + "/slogan.en/run", json={"variables": {"product": "tea"}, "stream": True}))
    assert streamed[-2]["type"] == "result" and streamed[-2]["text"] == "Two slogans for tea."


def test_template_override_and_restore_over_http(server):
    url = server.url + "/api/templates"
    r = httpx.delete(url + "/polish.en")
    assert r.status_code == 409 and error(r)["code"] == "template_is_shipped"
    r = httpx.put(url + "/polish.en", json={"kind": "edit", "prompt": "Tidy: {text}", "variables": {"text": {}}})
    assert r.json()["source"] == "override"
    assert httpx.delete(url + "/polish.en").json() == {"deleted": "polish.en", "restored": True}
    assert httpx.get(url + "/polish.en").json()["source"] == "shipped"


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        (
            "post",
            "",
            {"name": "t", "language": "en", "prompt": "About {topic"},
            400,
            "expected '}' before end of string",
        ),
        (
            "post",
            "",
            {"name": "t", "language": "en", "prompt": "About {topic}"},
            400,
            "{topic} used but not declared under [variables]",
        ),
        (
            "post",
            "",
            {"name": "t", "language": "en", "prompt": "Hi", "variables": {"x": {}}},
            400,
            "variable x declared but never used",
        ),
        ("post", "", {"toml": 'name = "t"\nlanguage = "en"\nkind = \n'}, 400, "not a TOML file"),
        (
            "post",
            "",
            {"name": "t", "language": "en", "prompt": "Hi", "replace": 0},
            400,
            "Input should be a valid boolean",
        ),
        ("put", "/nope.en", {"prompt": "Hi"}, 404, "no template 'nope.en'"),
        ("get", "/polish", None, 400, "key: String should match pattern"),
        (
            "post",
            "/blog-post.en/run",
            {"variables": {"topic": "AI", "mood": "x"}},
            400,
            "template 'blog-post.en' has no variable 'mood'; its variables: topic, audience, tone, length, notes",
        ),
        ("post", "/blog-post.en/run", {"variables": {}}, 400, "template 'blog-post.en' needs a value for 'topic'"),
    ],
)
def test_bad_templates_are_4xx_naming_the_problem(server, method, path, body, status, message):
    r = httpx.request(method.upper(), server.url + "/api/templates" + path, json=body)
    assert r.status_code == status and message in error(r)["message"], r.text
    assert not (server.studio.config.home / "templates" / "t.en.toml").exists()


def test_a_real_polish_by_smollm2_through_the_api(live):
    text = "The studio run on your own computer. It keep every result."
    r = httpx.post(
        live.url + "/api/write/edit",
        json={"op": "polish", "text": text, "options": {"seed": 1, "temperature": 0, "max_tokens": 60}},
        timeout=120,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "smollm2-135m" and body["language"] == "en"
    # An answer that ran into max_tokens says so; one that ended on its own has nothing to note.
    cut = "the answer was cut short by the token limit or the model's context; it may end mid-sentence"
    assert body["notes"] == ([] if body["finish_reason"] == "stop" else [cut])
    # A 135M model may hand the text back as it was: what is checked is that its answer is the proposal,
    # and that the diff says exactly what differs.
    assert body["output"].strip() and body["text"] == body["output"].strip()
    assert body["changed"] == (body["text"] != text) and body["finish_reason"] in ("stop", "length")
    assert "".join(c["text"] for c in body["changes"] if c["op"] != "insert") == text
    assert "".join(c["text"] for c in body["changes"] if c["op"] != "delete") == body["text"]
    assert body["usage"]["completion_tokens"] > 0
    zh = httpx.post(
        live.url + "/api/write/edit", json={"op": "polish", "text": "今天天气很好。", "options": {"max_tokens": 2}}
    )
    assert any("writes English only" in note for note in zh.json()["notes"])


def test_a_long_text_streams_how_far_it_has_been_read_then_the_answer(live):
    """A text longer than one step (prompt_batch, 128 tokens) is read in steps: progress events first."""
    text = " ".join(["The studio keeps every result with its parameters and its label."] * 20)
    with httpx.stream(
        "POST",
        live.url + "/api/write/edit",
        json={"op": "summarize", "text": text, "stream": True, "options": {"seed": 1, "max_tokens": 4}},
        timeout=120,
    ) as r:
        assert r.status_code == 200
        r.read()
        found = events(r)
    kinds = [e["type"] if isinstance(e, dict) else e for e in found]
    progress = [e for e in found if isinstance(e, dict) and e["type"] == "progress"]
    total = found[-2]["usage"]["prompt_tokens"]
    assert total > 256
    assert [e["read"] for e in progress] == list(range(0, total, 128)) and {e["total"] for e in progress} == {total}
    assert kinds.index("delta") > kinds.index("progress") and kinds[-2:] == ["result", "[DONE]"]
    assert "progress" not in kinds[kinds.index("delta") :]


def test_the_schema_declares_each_status_these_routes_answer(server):
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    codes = {f"{m.upper()} {p}": {int(c) for c in op["responses"]} for p, ops in paths.items() for m, op in ops.items()}
    assert codes["POST /api/write/edit"] == {200, 400, 404, 413, 429}
    assert codes["POST /api/templates"] == {201, 400, 409, 413, 429}
    assert codes["DELETE /api/templates/{key}"] == {200, 400, 404, 409, 429}
    assert codes["POST /api/templates/{key}/run"] == {200, 400, 404, 413, 429}
    streamed = paths["/api/write/edit"]["post"]["responses"]["200"]["content"]
    assert set(streamed) == {"application/json", "text/event-stream"}
    exported = paths["/api/templates/{key}/export"]["get"]["responses"]["200"]["content"]
    assert set(exported) == {"application/toml"}
