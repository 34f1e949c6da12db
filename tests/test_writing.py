"""The article pipeline with the echo engine (it answers with the prompt it was given, so what each
section was told is visible in its text): structure, regenerate, context fitting, stop and continue,
outline edits, user edits, search, bad input."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from aigc_studio.config import load_config
from aigc_studio.errors import InvalidRequest, NotFound
from aigc_studio.services.article_text import UNFINISHED, parse_headings, parse_markdown, parse_tags, summarize
from aigc_studio.services.writing import ArticleSpec
from aigc_studio.studio import Studio

HEADINGS = ["Why run models locally", "What you need", "Writing with a local model", "Where it falls short"]


@pytest.fixture
def studio(aigc_home):
    s = Studio(load_config(model="echo"))
    yield s
    s.close()


def run_all(run) -> list:
    return list(run)


def write(studio, headings=HEADINGS, **spec) -> tuple[str, list]:
    run = studio.writing.start(ArticleSpec(**{"title": "Local AI studios", "length": 400, **spec}), headings=headings)
    events = run_all(run)
    return run.document_id, events


def test_n_headings_give_n_sections_in_order(studio):
    doc_id, events = write(studio)
    starts = [(e.section, e.total, e.heading) for e in events if e.type == "section_start"]
    assert starts == [(i, 4, h) for i, h in enumerate(HEADINGS, 1)]
    assert [e.type for e in events][-3:] == ["abstract", "tags", "done"]
    version = studio.writing.get(doc_id)["version"]
    assert [s["heading"] for s in version["sections"]] == HEADINGS
    assert all(s["state"] == "done" for s in version["sections"])
    # Each section was asked for its own heading, with its number, and told the outline.
    for i, s in enumerate(version["sections"], 1):
        assert f'Write section {i} of 4, "{HEADINGS[i - 1]}"' in s["text"]
    content = version["content"]
    assert content.startswith("# Local AI studios\n")
    positions = [content.index(f"## {h}\n") for h in HEADINGS]
    assert positions == sorted(positions)
    assert version["abstract"] and version["abstract"] in content
    assert content.rstrip().splitlines()[-1].startswith("**Tags:** ")
    assert version["model"] == "echo" and version["reason"] == "article written"
    # The summary of the sections before: section 3 was told what 1 and 2 said, section 1 that it is first.
    assert "(this is the first section)" in version["sections"][0]["text"]
    assert "1. You are writing the article" in version["sections"][2]["text"]
    assert [v["reason"] for v in studio.writing.versions(doc_id)] == ["outline", "article written"]


def test_outline_from_the_model_is_parsed_and_stored_as_version_1(studio):
    run = studio.writing.start(ArticleSpec(title="Local AI", sections=2), outline_only=True)
    events = run_all(run)
    assert [e.type for e in events] == ["outline", "done"]
    doc = studio.writing.get(run.document_id)
    # The echo engine repeats the prompt: its first two lines are the "headings" asked for.
    assert doc["version"]["outline"] == events[0].headings
    assert len(events[0].headings) == 2 and events[0].headings[0].startswith('Plan an article titled "Local AI"')
    assert doc["versions"] == 1 and doc["version"]["reason"] == "outline"
    assert all(s["state"] == "pending" for s in doc["version"]["sections"])


def test_regenerating_one_section_changes_only_it(studio):
    doc_id, _ = write(studio)
    before = studio.writing.get(doc_id)["version"]
    events = run_all(studio.writing.regenerate(doc_id, 3, instruction="Give two concrete examples."))
    assert [e.section for e in events if e.type == "section_start"] == [3]
    after = studio.writing.get(doc_id)["version"]
    assert after["reason"] == "section 3 regenerated"
    assert "Give two concrete examples." in after["sections"][2]["text"]
    assert "Give two concrete examples." not in before["sections"][2]["text"]
    for i in (0, 1, 3):
        assert after["sections"][i]["text"] == before["sections"][i]["text"]
    assert after["abstract"] == before["abstract"] and after["tags"] == before["tags"]
    assert studio.writing.get(doc_id, 2)["version"]["content"] == before["content"]  # the old one stays


def test_regenerate_refuses_a_section_that_does_not_exist(studio):
    doc_id, _ = write(studio)
    with pytest.raises(NotFound, match=r"section must be 1-4 \(the document has 4\), got 5"):
        studio.writing.regenerate(doc_id, 5)
    assert len(studio.writing.versions(doc_id)) == 2


def test_small_context_leaves_out_summaries_and_notes_and_says_how_much(studio):
    engine = studio.registry.engine("echo")
    engine.context_length = 420
    notes = " ".join(f"note{i}" for i in range(400))
    doc_id, events = write(studio, notes=notes)
    trimmed = [e.message for e in events if e.type == "trimmed"]
    assert any(re.search(r"section 1: left out [\d,]+ of 3,089 characters of the reference notes", m) for m in trimmed)
    assert any(re.search(r"section 4: left out the summaries of sections 1-\d", m) for m in trimmed), trimmed
    assert all("420-token context" in m for m in trimmed)
    version = studio.writing.get(doc_id)["version"]
    assert version["notes"] == trimmed  # the stored record says it too
    assert all(s["state"] == "done" for s in version["sections"])
    # Every prompt fitted: the chat service refuses one that does not, and each section got its room.
    assert all(s["tokens"] > 0 for s in version["sections"])


def test_a_prompt_that_cannot_fit_is_an_error_that_keeps_what_was_written(studio):
    engine = studio.registry.engine("echo")
    engine.context_length = 100
    run = studio.writing.start(ArticleSpec(title="Tiny", length=100), headings=["A", "B"])
    events = run_all(run)
    assert events[-1].type == "error"
    assert "100-token context" in events[-1].message and "at least 48 needed" in events[-1].message
    assert [v["reason"] for v in studio.writing.versions(run.document_id)] == ["outline"]


def test_stop_keeps_what_was_written_and_continue_completes_it(studio):
    run = studio.writing.start(ArticleSpec(title="Local AI studios", length=400), headings=HEADINGS[:3])
    events, deltas = [], 0
    for event in run:
        events.append(event)
        if event.type == "delta" and event.section == 2:
            deltas += 1
            if deltas == 5:
                run.cancel()
    done = [e for e in events if e.type == "section_done"]
    assert [(e.section, e.state) for e in done] == [(1, "done"), (2, "partial")]
    assert events[-1].type == "cancelled"
    assert "1 of 3 sections written; section 2 is kept unfinished" in events[-1].message
    assert f"aigc docs continue {run.document_id}" in events[-1].message
    stopped = studio.writing.get(run.document_id)["version"]
    assert stopped["reason"] == "article written, stopped in section 2 of 3"
    assert [s["state"] for s in stopped["sections"]] == ["done", "partial", "pending"]
    partial_text = stopped["sections"][1]["text"]
    assert len(partial_text.split()) == 5
    assert f"## {HEADINGS[1]}\n\n{partial_text}\n\n{UNFINISHED}" in stopped["content"]
    first_text = stopped["sections"][0]["text"]

    events = run_all(studio.writing.continue_(run.document_id))
    assert [e.section for e in events if e.type == "section_start"] == [2, 3]
    final = studio.writing.get(run.document_id)["version"]
    assert final["reason"] == "continued: sections 2-3 written"
    assert [s["state"] for s in final["sections"]] == ["done", "done", "done"]
    assert final["sections"][0]["text"] == first_text
    assert UNFINISHED not in final["content"] and final["abstract"] and final["tags"]


def test_editing_the_outline_keeps_sections_whose_heading_is_unchanged(studio):
    doc_id, _ = write(studio)
    before = studio.writing.get(doc_id)["version"]
    new = [HEADINGS[1], "A new part", HEADINGS[0]]
    doc = studio.writing.set_outline(doc_id, new)
    v = doc["version"]
    assert v["reason"] == "outline edited" and v["outline"] == new
    assert v["sections"][0]["text"] == before["sections"][1]["text"]
    assert v["sections"][2]["text"] == before["sections"][0]["text"]
    assert v["sections"][1] == {**v["sections"][1], "text": "", "state": "pending"}
    events = run_all(studio.writing.continue_(doc_id))
    assert [e.section for e in events if e.type == "section_start"] == [2]
    with pytest.raises(InvalidRequest, match="an outline must have 1-20 headings, got 0"):
        studio.writing.set_outline(doc_id, [])
    with pytest.raises(InvalidRequest, match="heading 2 is empty"):
        studio.writing.set_outline(doc_id, ["One", "  "])


def test_a_users_edit_is_a_new_version_read_back_into_sections(studio):
    doc_id, _ = write(studio)
    edited = "# My own title\n\nMy abstract.\n\n## First\n\nHello **world**.\n\n## Second\n\nBye.\n\n**Tags:** a, b\n"
    doc = studio.writing.save(doc_id, edited)
    assert doc["title"] == "My own title"
    v = doc["version"]
    assert v["reason"] == "user edit" and v["content"] == edited
    assert v["outline"] == ["First", "Second"] and v["abstract"] == "My abstract." and v["tags"] == ["a", "b"]
    assert v["sections"][0]["text"] == "Hello **world**."
    run_all(studio.writing.regenerate(doc_id, 2))
    assert studio.writing.get(doc_id)["version"]["sections"][0]["text"] == "Hello **world**."
    with pytest.raises(InvalidRequest, match="content is empty"):
        studio.writing.save(doc_id, "  \n")


def test_documents_are_searchable_in_any_language(studio):
    doc_id, _ = write(studio, title="人工智能与大模型创作实践")
    other, _ = write(studio, title="Lighthouses")
    assert [d["id"] for d in studio.writing.list(query="大模型")] == [doc_id]
    assert [d["id"] for d in studio.writing.list(query="Lighthouses")] == [other]
    assert [d["id"] for d in studio.writing.list(query="Where it falls")] == [other, doc_id]
    assert {d["id"] for d in studio.writing.list()} == {doc_id, other}
    studio.writing.delete(other)
    with pytest.raises(NotFound, match=f"no document with id '{other}'"):
        studio.writing.get(other)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "   ", "title: must not be empty: give a title or keywords"),
        ("length", 0, "length: must be 100-20000 (words in English, characters in Chinese), got 0"),
        ("length", 10**7, "length: must be 100-20000 (words in English, characters in Chinese), got 10000000"),
        ("sections", 0, "sections: must be 1-20, got 0"),
        ("sections", 21, "sections: must be 1-20, got 21"),
        ("notes", "x" * 20_001, "notes: must be at most 20000 characters, got 20001"),
    ],
)
def test_bad_spec_is_refused_with_the_range(studio, field, value, message):
    from aigc_studio.errors import validation_message

    with pytest.raises(ValidationError) as caught:
        ArticleSpec(**{"title": "ok", field: value})
    assert message in validation_message(caught.value.errors())[0]
    assert studio.writing.list() == []


def test_language_fit_names_the_model_to_pull(studio):
    fit = studio.models.language_fit("smollm2", "zh")
    assert fit.fits is False and fit.suggestion == "qwen2.5-1.5b-instruct"
    assert "aigc models pull qwen2.5-1.5b-instruct" in fit.message
    assert studio.models.language_fit("smollm2", text="这是一段中文。").fits is False
    assert studio.models.language_fit("smollm2", text="plain English").fits is True
    assert studio.models.language_fit("echo", "zh").fits is None  # not known: nothing said
    run = studio.writing.start(ArticleSpec(title="写作", language="zh", model="smollm2"), headings=["一"])
    assert run.fit.fits is False


def test_chinese_article_uses_the_chinese_templates(studio):
    doc_id, _ = write(studio, title="本地大模型", language="zh", headings=["为什么在本地运行", "需要什么"])
    v = studio.writing.get(doc_id)["version"]
    assert "现在请写第 2 节（共 2 节）“需要什么”" in v["sections"][1]["text"]
    assert "**标签:** " in v["content"]


def test_parse_headings_from_model_answers():
    assert parse_headings('{"headings": ["One", "Two", "Three"]}', 3) == ["One", "Two", "Three"]
    assert parse_headings("Here is the outline:\n1. **Intro**\n2. Body\n3) End\n4. Extra", 3) == [
        "Intro",
        "Body",
        "End",
    ]
    assert parse_headings("- Alpha\n- Beta\n- alpha", 5) == ["Alpha", "Beta"]
    assert parse_headings("Section 1: Start\nSection 2: Finish", 2) == ["Start", "Finish"]
    assert parse_headings("第一节：背景\n第二节：方法", 2) == ["背景", "方法"]
    assert parse_headings('```json\n["A", "B"]\n```', 2) == ["A", "B"]
    assert parse_headings("", 3) == []


def test_tags_summaries_and_markdown_round_trip():
    assert parse_tags("#AI, local models，写作、 AI") == ["AI", "local models", "写作"]
    assert parse_tags('{"tags": ["a", "b"]}') == ["a", "b"]
    text = "First sentence here. Second one is longer and goes on. " * 10
    short = summarize(text, "en", 80)
    assert short.endswith(".") and len(short) <= 80
    parts = parse_markdown("# T\n\nAbs\n\n## A\n\n```\n## not a heading\n```\n\n## B\n\nb\n", "x")
    assert parts.title == "T" and parts.abstract == "Abs"
    assert [h for h, _ in parts.sections] == ["A", "B"] and "## not a heading" in parts.sections[0][1]


def test_parse_headings_from_json_cut_short():
    assert parse_headings('{"headings": ["Why tea", "How it is made", "Where it gr', 3) == ["Why tea", "How it is made"]


def test_articles_are_in_the_gallery_found_by_their_text_and_deleted_from_it(studio):
    doc_id, _ = write(studio)
    body = studio.writing.get(doc_id)["version"]["sections"][2]["text"]
    word = next(w for w in re.findall(r"[A-Za-z]{6,}", body) if w not in "Local AI studios")
    (entry,) = [e for e in studio.gallery.entries(kind="document")]
    assert (entry.kind, entry.id, entry.prompt, entry.model) == ("document", doc_id, "Local AI studios", "echo")
    assert [e.id for e in studio.gallery.entries(query=word) if e.kind == "document"] == [doc_id]
    assert [e for e in studio.gallery.entries(query="no such words at all") if e.kind == "document"] == []
    assert [e.id for e in studio.gallery.entries(model="smollm2-135m") if e.kind == "document"] == []
    with pytest.raises(InvalidRequest, match="is an article; only an image's parameters"):
        studio.gallery.reuse_fields(entry)
    studio.gallery.delete(entry)
    assert studio.gallery.entries(kind="document") == []
    with pytest.raises(NotFound):
        studio.writing.get(doc_id)


def test_a_long_prompt_is_reported_as_read_before_its_section_streams(studio):
    """An engine that reads a prompt in steps (llama.cpp, a long one): each section's ``reading`` events
    come after its ``section_start`` and before its first text; the outline's, abstract's and tags'
    before what they give. The text is as without them."""
    engine = studio.registry.engine("echo")
    engine.prompt_step = 40  # every prompt here is longer: read in steps of 40 words
    try:
        doc_id, events = write(studio, headings=HEADINGS[:2])
    finally:
        engine.prompt_step = 0
    types = [e.type for e in events]
    for section in (1, 2):
        mine = [(i, e) for i, e in enumerate(events) if e.section == section]
        start = next(i for i, e in mine if e.type == "section_start")
        reading = [(i, e) for i, e in mine if e.type == "reading"]
        first_delta = next(i for i, e in mine if e.type == "delta")
        assert reading and all(start < i < first_delta for i, _ in reading), types
        read = [e.read for _, e in reading]
        assert read == sorted(read) and read[0] == 0 and len(set(e.prompt_tokens for _, e in reading)) == 1
        assert read[-1] < reading[0][1].prompt_tokens and all(e.total == 2 for _, e in reading)
        assert reading[0][1].as_dict()["document_id"] == doc_id
    # The abstract and the tags read their prompts too (no section), each before its own event.
    tail = types[types.index("section_done", types.index("section_done") + 1) + 1 :]
    assert tail[0] == "reading" and tail.index("abstract") < tail.index("tags")
    assert tail[tail.index("abstract") + 1] == "reading"
    assert all(e.section is None for e in events if e.type == "reading" and events.index(e) > types.index("abstract"))
    version = studio.writing.get(doc_id)["version"]
    assert 'Write section 2 of 2, "What you need"' in version["sections"][1]["text"]
