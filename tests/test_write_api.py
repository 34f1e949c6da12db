"""/api/write and /api/documents over a real server on loopback, with the echo engine."""

from __future__ import annotations

import io
import json
import time

import docx
import httpx
import pytest

from aigc_studio.api.app import create_app
from aigc_studio.config import load_config
from aigc_studio.studio import Studio

from .conftest import LiveServer

HEADINGS = ["Why run models locally", "What you need", "Where it falls short"]


@pytest.fixture
def server(aigc_home):
    studio = Studio(load_config(model="echo"))
    with LiveServer(create_app(studio, load_default=False)) as live:
        live.studio = studio
        yield live
    studio.close()


def stream(url: str, body: dict | None = None) -> list[dict]:
    events = []
    with httpx.stream("POST", url, json=body if body is not None else {}, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
    assert events[-1] == "[DONE]"
    return events[:-1]


def test_write_regenerate_edit_and_export_through_the_api(server):
    events = stream(
        server.url + "/api/write/article", {"title": "Local AI studios", "length": 300, "headings": HEADINGS}
    )
    doc_id = events[0]["document_id"]
    assert events[0] == {"type": "outline", "document_id": doc_id, "headings": HEADINGS}
    assert [(e["section"], e["heading"]) for e in events if e["type"] == "section_start"] == [
        (1, HEADINGS[0]),
        (2, HEADINGS[1]),
        (3, HEADINGS[2]),
    ]
    deltas = "".join(e["text"] for e in events if e["type"] == "delta" and e["section"] == 2)
    done = [e for e in events if e["type"] == "section_done"]
    assert done[1]["text"] == deltas.strip() and done[1]["state"] == "done"
    assert events[-1] == {"type": "done", "document_id": doc_id, "version": 2}

    doc = httpx.get(f"{server.url}/api/documents/{doc_id}").json()
    assert doc["title"] == "Local AI studios" and doc["versions"] == 2
    assert [s["heading"] for s in doc["version"]["sections"]] == HEADINGS
    assert doc["version"]["spec"] == {"title": "Local AI studios", "length": 300}

    events = stream(f"{server.url}/api/write/{doc_id}/sections/2/regenerate", {"instruction": "Name three tools."})
    assert [e["section"] for e in events if e["type"] == "section_start"] == [2]
    versions = httpx.get(f"{server.url}/api/documents/{doc_id}/versions").json()
    assert [v["reason"] for v in versions] == ["outline", "article written", "section 2 regenerated"]
    latest = httpx.get(f"{server.url}/api/documents/{doc_id}").json()["version"]
    assert "Name three tools." in latest["sections"][1]["text"]
    assert latest["sections"][0]["text"] == doc["version"]["sections"][0]["text"]

    edited = latest["content"].replace("# Local AI studios", "# Studios at home")
    saved = httpx.post(f"{server.url}/api/write/{doc_id}/versions", json={"content": edited}).json()
    assert saved["title"] == "Studios at home" and saved["version"]["reason"] == "user edit"

    outline = httpx.put(f"{server.url}/api/write/{doc_id}/outline", json={"headings": [HEADINGS[0], "New part"]})
    assert outline.status_code == 200
    assert [s["state"] for s in outline.json()["version"]["sections"]] == ["done", "pending"]
    events = stream(f"{server.url}/api/write/{doc_id}/continue")
    assert [e["section"] for e in events if e["type"] == "section_start"] == [2]

    found = httpx.get(f"{server.url}/api/documents", params={"q": "Studios at"}).json()
    assert [d["id"] for d in found] == [doc_id]

    md = httpx.get(f"{server.url}/api/documents/{doc_id}/export", params={"format": "md"})
    assert md.headers["content-type"] == "text/markdown; charset=utf-8"
    assert md.headers["content-disposition"] == "attachment; filename*=UTF-8''Studios-at-home.md"
    # The AIGC front matter (labels on by default), then the article.
    assert md.text.startswith("---\ntitle: 'Studios at home'\nAIGC: '{") and "\n---\n\n# Studios at home\n" in md.text
    page = httpx.get(f"{server.url}/api/documents/{doc_id}/export", params={"format": "html", "version": 2})
    assert page.headers["content-type"] == "text/html; charset=utf-8" and "<h1>Local AI studios</h1>" in page.text
    word = httpx.get(f"{server.url}/api/documents/{doc_id}/export", params={"format": "docx"})
    assert word.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument")
    headings = [p.text for p in docx.Document(io.BytesIO(word.content)).paragraphs if p.style.name == "Heading 2"]
    assert headings == [HEADINGS[0], "New part"]

    assert httpx.delete(f"{server.url}/api/documents/{doc_id}").json() == {"deleted": doc_id}
    gone = httpx.get(f"{server.url}/api/documents/{doc_id}")
    assert gone.status_code == 404 and gone.json()["error"]["message"].startswith(f"no document with id '{doc_id}'")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": ""}, "title: "),
        ({"title": "   "}, "title: must not be empty: give a title or keywords"),
        ({"title": "x", "length": 0}, "length: must be 100-20000 (words in English, characters in Chinese), got 0"),
        ({"title": "x", "length": 10**7}, "length: must be 100-20000"),
        ({"title": "x", "sections": 0}, "sections: must be 1-20, got 0"),
        ({"title": "x", "sections": 21}, "sections: must be 1-20, got 21"),
        ({"title": "x", "headings": []}, "headings: "),
        ({"title": "x", "model": "nope"}, "The model 'nope' does not exist"),
    ],
)
def test_bad_input_is_a_4xx_with_the_range_and_stores_nothing(server, body, message):
    response = httpx.post(server.url + "/api/write/article", json=body)
    assert response.status_code in (400, 404)
    assert message in response.json()["error"]["message"]
    outline = httpx.post(server.url + "/api/write/outline", json=body)
    assert outline.status_code in (400, 404) and message in outline.json()["error"]["message"]
    assert httpx.get(server.url + "/api/documents").json() == []


def test_errors_on_a_stored_document(server):
    events = stream(server.url + "/api/write/article", {"title": "T", "length": 100, "headings": ["A", "B"]})
    doc_id = events[0]["document_id"]
    bad = httpx.post(f"{server.url}/api/write/{doc_id}/sections/3/regenerate", json={})
    assert bad.status_code == 404
    assert bad.json()["error"]["message"] == "section must be 1-2 (the document has 2), got 3"
    missing = httpx.get(f"{server.url}/api/documents/{doc_id}", params={"version": 9})
    assert missing.status_code == 404 and "has no version 9; it has versions 1-2" in missing.json()["error"]["message"]
    empty = httpx.put(f"{server.url}/api/write/{doc_id}/outline", json={"headings": ["A", ""]})
    assert empty.status_code == 400 and "headings.1" in empty.json()["error"]["message"]
    fmt = httpx.get(f"{server.url}/api/documents/{doc_id}/export", params={"format": "pdf"})
    assert fmt.status_code == 400 and "format" in fmt.json()["error"]["message"]
    assert len(httpx.get(f"{server.url}/api/documents/{doc_id}/versions").json()) == 2


def test_a_client_that_goes_away_stops_the_run_and_what_was_written_is_kept(server):
    server.studio.registry.engine("echo").delay = 0.01
    body = {"title": "Leaving early", "length": 600, "headings": ["One", "Two", "Three"]}
    with httpx.stream("POST", server.url + "/api/write/article", json=body, timeout=60) as response:
        for line in response.iter_lines():
            event = json.loads(line.removeprefix("data: ")) if line.startswith("data: {") else {}
            if event.get("type") == "delta" and event.get("section") == 2:
                doc_id = event["document_id"]
                break
    deadline = time.time() + 20
    while len(server.studio.writing.versions(doc_id)) < 2:
        assert time.time() < deadline, "the stopped run was not saved"
        time.sleep(0.05)
    version = server.studio.writing.get(doc_id)["version"]
    assert version["reason"] == "article written, stopped in section 2 of 3"
    assert [s["state"] for s in version["sections"]] == ["done", "partial", "pending"]


def test_a_long_prompt_sends_reading_events_before_its_text(server):
    engine = server.studio.registry.engine("echo")
    engine.prompt_step = 40  # every prompt here is longer: read in steps of 40 words
    try:
        events = stream(server.url + "/api/write/article", {"title": "Tea", "length": 200, "headings": ["Green"]})
    finally:
        engine.prompt_step = 0
    types = [e["type"] for e in events]
    reading = [e for e in events if e["type"] == "reading" and e.get("section") == 1]
    assert types.index("section_start") < types.index("reading") < types.index("delta")
    assert [e["read"] for e in reading] == list(range(0, reading[0]["prompt_tokens"], 40))
    assert set(reading[0]) == {"type", "document_id", "section", "total", "read", "prompt_tokens"}
    assert events[-1]["type"] == "done"
