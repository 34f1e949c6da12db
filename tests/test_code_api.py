"""/api/code on a live server: the echo model (its test-only canned replies make it answer with code)
and the real sandbox."""

from __future__ import annotations

import json

import httpx
import pytest

from aigc_studio import sandbox as sandbox_module
from aigc_studio.engines.echo import clear_replies, queue_replies

from .conftest import studio_server

SORT_JS = "function bubbleSort(a) {\n  return a.slice().sort((x, y) => x - y);\n}\n"
WRONG_JS = "function bubbleSort(a) {\n  return a;\n}\n"
CALL = "bubbleSort([5,2,8,1,9,3])"


def answer(code: str, tag: str = "js") -> str:
    return f"Here it is:\n```{tag}\n{code}```\nDone."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with studio_server(tmp_path_factory.mktemp("code-api-home"), load_default=False, model="echo") as live:
        yield live


@pytest.fixture(autouse=True)
def no_canned_replies():
    clear_replies()
    yield
    clear_replies()


def events(response: httpx.Response) -> list:
    found = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


def error(response: httpx.Response) -> dict:
    return response.json()["error"]


def post(server, path: str, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)


def test_generate_streams_events_in_order_and_stores_the_session(server):
    queue_replies(answer(SORT_JS))
    body = {"prompt": "write a JavaScript bubble sort", "run": {"call": CALL, "expect": "[1,2,3,5,8,9]"}}
    r = post(server, "/api/code/generate", body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = events(r)
    assert got[-1] == "[DONE]"
    kinds = [e["kind"] for e in got[:-1]]
    first_other = next(i for i, k in enumerate(kinds) if k != "delta")
    assert set(kinds[:first_other]) == {"delta"} and kinds[first_other:] == ["version", "run", "done"]
    assert "".join(e["text"] for e in got if isinstance(e, dict) and e["kind"] == "delta") == answer(SORT_JS)
    version, run, done = got[-4]["version"], got[-3]["run"], got[-2]
    assert (version["version"], version["language"], version["code"]) == (1, "javascript", SORT_JS)
    assert run["result"]["exit_code"] == 0 and run["matched"] is True
    assert run["result"]["stdout"].replace(" ", "").replace("\n", "") == "[1,2,3,5,8,9]"
    session = httpx.get(f"{server.url}/api/code/sessions/{done['session_id']}").json()
    assert [v["id"] for v in session["versions"]] == [version["id"]]
    assert [r["id"] for r in session["runs"]] == [run["id"]]
    assert session["messages"][0]["content"] == "write a JavaScript bubble sort"
    listed = httpx.get(server.url + "/api/code/sessions").json()
    assert any(s["id"] == done["session_id"] and s["runs"] == 1 for s in listed)


def test_generate_without_stream_returns_the_turn_with_each_repair_attempt(server):
    queue_replies(answer(WRONG_JS), answer(SORT_JS))
    body = {
        "prompt": "write a JavaScript bubble sort",
        "run": {"call": CALL, "expect": "[1,2,3,5,8,9]"},
        "repair": 2,
        "stream": False,
    }
    r = post(server, "/api/code/generate", body)
    assert r.status_code == 200, r.text
    turn = r.json()
    assert turn["attempts"] == 1 and turn["error"] is None and turn["finish_reason"] == "stop"
    assert [(v["version"], v["note"]) for v in turn["versions"]] == [(1, "generated"), (2, "repair 1/2")]
    assert [run["matched"] for run in turn["runs"]] == [False, True]
    assert turn["runs"][0]["result"]["stdout"] == "[ 5, 2, 8, 1, 9, 3 ]\n"


def test_refine_edit_and_diff(server):
    queue_replies(answer(WRONG_JS))
    first = post(server, "/api/code/generate", {"prompt": "write a JavaScript bubble sort", "stream": False}).json()
    session_id = first["session_id"]
    queue_replies(answer(SORT_JS))
    second = post(
        server, "/api/code/generate", {"prompt": "sort it for real", "session_id": session_id, "stream": False}
    ).json()
    assert [(v["version"], v["note"]) for v in second["versions"]] == [(2, "refined: sort it for real")]
    r = post(server, f"/api/code/sessions/{session_id}/versions", {"code": "console.log(42)\n"})
    assert r.status_code == 200
    edited = r.json()
    assert (edited["version"], edited["note"], edited["language"]) == (3, "edited", "javascript")
    a, b = first["versions"][0]["id"], second["versions"][0]["id"]
    d = httpx.get(server.url + "/api/code/diff", params={"a": a, "b": b}).json()
    assert d["diff"].splitlines()[:2] == ["--- v1", "+++ v2"]
    assert "-  return a;" in d["diff"] and "+  return a.slice().sort((x, y) => x - y);" in d["diff"]
    run = post(server, "/api/code/run", {"version_id": edited["id"], "expect": "42"}).json()
    assert (run["result"]["stdout"], run["matched"], run["version_id"]) == ("42\n", True, edited["id"])


def test_run_code_given_inline_is_stored_as_its_own_session(server):
    r = post(
        server,
        "/api/code/run",
        {"language": "py", "code": "import sys\nprint(sys.stdin.read()[::-1])", "stdin": "abc", "title": "rev.py"},
    )
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["result"]["stdout"] == "cba\n" and record["result"]["runtime"].startswith("Python 3")
    session = httpx.get(f"{server.url}/api/code/sessions/{record['session_id']}").json()
    assert session["title"] == "rev.py" and session["versions"][0]["note"] == "file: rev.py"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"language": "ruby", "code": "puts 1"}, 400, "language: Input should be 'python', 'py'"),
        ({"language": "js", "code": "   "}, 400, "code: must not be empty: give the program to run"),
        ({"language": "js"}, 400, "give version_id, or language and code"),
        ({"version_id": 1, "code": "x", "language": "js"}, 400, "give either version_id, or language and code"),
        (
            {"language": "js", "code": "1", "limits": {"wall_seconds": 120}},
            400,
            "limits.wall_seconds must be at most 60 (setting run_max_wall_seconds), got 120",
        ),
        ({"language": "js", "code": "1", "limits": {"memory_mb": "512"}}, 400, "limits.memory_mb"),
        ({"version_id": 999999}, 404, "no code version with id 999999"),
    ],
)
def test_bad_runs_are_4xx_and_store_nothing(server, body, status, message):
    before = httpx.get(server.url + "/api/code/sessions", params={"limit": 1000}).json()
    r = post(server, "/api/code/run", body)
    assert r.status_code == status, r.text
    assert message in error(r)["message"]
    assert httpx.get(server.url + "/api/code/sessions", params={"limit": 1000}).json() == before


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"prompt": " "}, 400, "prompt: must not be empty: give what the program should do"),
        ({"prompt": "x", "repair": 1}, 400, "repair needs a run"),
        ({"prompt": "x", "repair": 11, "run": {}}, 400, "repair: Input should be less than or equal to 10"),
        ({"prompt": "x", "language": "bash", "run": {}}, 400, "bash code cannot be run"),
        ({"prompt": "x", "session_id": "conv-00"}, 404, "no code session with id 'conv-00'"),
        ({"prompt": "x", "model": "nope"}, 404, "The model 'nope' does not exist"),
        ({"prompt": "x", "run": {"limits": {"processes": 4096}}}, 400, "limits.processes"),
    ],
)
def test_bad_turns_are_4xx_and_store_nothing(server, body, status, message):
    before = httpx.get(server.url + "/api/code/sessions", params={"limit": 1000}).json()
    r = post(server, "/api/code/generate", body)
    assert r.status_code == status, r.text
    assert message in error(r)["message"]
    assert httpx.get(server.url + "/api/code/sessions", params={"limit": 1000}).json() == before


def test_unknown_ids_are_404(server):
    assert httpx.get(server.url + "/api/code/sessions/conv-0").status_code == 404
    assert httpx.delete(server.url + "/api/code/sessions/conv-0").status_code == 404
    r = httpx.get(server.url + "/api/code/diff", params={"a": 999998, "b": 999999})
    assert r.status_code == 404 and "no code version with id 999998" in error(r)["message"]
    r = post(server, "/api/code/sessions/conv-0/versions", {"code": "x"})
    assert r.status_code == 404


def test_delete_removes_the_session(server):
    record = post(server, "/api/code/run", {"language": "js", "code": "console.log(1)"}).json()
    r = httpx.delete(f"{server.url}/api/code/sessions/{record['session_id']}")
    assert r.json() == {"deleted": record["session_id"]}
    assert httpx.get(f"{server.url}/api/code/sessions/{record['session_id']}").status_code == 404
    assert post(server, "/api/code/run", {"version_id": record["version_id"]}).status_code == 404


def test_without_a_sandbox_runs_are_503_naming_bubblewrap_and_nothing_is_stored(server, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox_module, "SAFE_PATH", str(tmp_path))  # bwrap is not found
    before = httpx.get(server.url + "/api/code/sessions", params={"limit": 1000}).json()
    r = post(server, "/api/code/run", {"language": "js", "code": "console.log(1)"})
    assert r.status_code == 503
    assert error(r)["code"] == "sandbox_unavailable" and "bubblewrap" in error(r)["message"]
    server.studio.sandbox._checked = False  # as a fresh server would: the turn checks before generating
    r = post(server, "/api/code/generate", {"prompt": "write a JavaScript sort", "run": {"call": CALL}})
    assert r.status_code == 503 and "bubblewrap" in error(r)["message"]
    assert httpx.get(server.url + "/api/code/sessions", params={"limit": 1000}).json() == before
