"""History in a real SQLite file (PostgreSQL with AIGC_TEST_POSTGRES=1): recording, search, export/import,
delete, migrations."""

from __future__ import annotations

import json

import pytest

from aigc_studio.config import load_config
from aigc_studio.contracts import Message, TextOptions, ToolCall
from aigc_studio.errors import ContextLengthExceeded, InvalidRequest, NotFound
from aigc_studio.storage.db import MIGRATIONS, Database
from aigc_studio.storage.history import messages_hash
from aigc_studio.studio import Studio

from .conftest import make_studio


@pytest.fixture
def studio(aigc_home):
    s = Studio(load_config(model="echo"))
    yield s
    s.close()


def say(studio, text, cid=None, **options):
    prepared = studio.chat.prepare(
        [Message(role="user", content=text)], conversation_id=cid, options=TextOptions(**options), source="test"
    )
    return studio.chat.complete(prepared)


def test_migrations_are_recorded_and_run_once(aigc_home):
    db = Database(aigc_home / "x.db")
    assert db.migrations_applied() == [fn.__name__ for fn in MIGRATIONS]
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    Database(aigc_home / "x.db")  # reopening applies nothing twice
    assert len(db.migrations_applied()) == len(MIGRATIONS)


def test_exchange_is_recorded_with_options_and_timings(studio):
    r = say(studio, "hello there friend", seed=5, max_tokens=2)
    conv = studio.history.get(r.conversation_id)
    assert [(m["role"], m["content"]) for m in conv["messages"]] == [
        ("user", "hello there friend"),
        ("assistant", "hello there "),
    ]
    resp = conv["responses"][0]
    assert resp["options"] == {"seed": 5, "max_tokens": 2}
    assert resp["finish_reason"] == "length" and resp["status"] == "ok" and resp["seed"] == 5
    assert resp["completion_tokens"] == 2 and resp["ttft_ms"] >= 0 and resp["duration_ms"] >= resp["ttft_ms"]


def test_continuing_a_conversation_sends_the_stored_turns(studio):
    r1 = say(studio, "one two")
    r2 = say(studio, "three", cid=r1.conversation_id)
    assert r2.conversation_id == r1.conversation_id
    assert [m.content for m in studio.history.messages(r1.conversation_id)] == ["one two", "one two", "three", "three"]
    assert r2.usage.prompt_tokens > r1.usage.prompt_tokens


def test_search_finds_substrings_in_english_and_chinese(studio):
    say(studio, "the lighthouse keeper")
    say(studio, "写一篇关于人工智能的文章")
    assert {r["content"] for r in studio.history.search("ighthou")} == {"the lighthouse keeper"}
    assert len(studio.history.search("人工智能")) == 2  # the question and its echo
    assert len(studio.history.search("智能")) == 2  # shorter than a trigram
    assert studio.history.search("nothing like this") == []
    with pytest.raises(InvalidRequest):
        studio.history.search("  ")


def test_delete_and_rename(studio):
    keep = say(studio, "keep me")
    gone = say(studio, "delete me")
    studio.history.rename(keep.conversation_id, "Kept")
    studio.history.delete(gone.conversation_id)
    assert [c["title"] for c in studio.history.list()] == ["Kept"]
    assert studio.history.search("delete me") == []
    with pytest.raises(NotFound):
        studio.history.delete(gone.conversation_id)


def test_export_import_round_trip(studio, aigc_home, tmp_path, monkeypatch):
    say(studio, "first conversation")
    r = say(studio, "second one", seed=9)
    say(studio, "and more", cid=r.conversation_id)
    exported = studio.history.export()
    other = make_studio(tmp_path / "other", model="echo")
    assert other.history.import_(exported) == (2, 0)
    assert other.history.import_(exported) == (0, 2)
    assert other.history.export() == exported
    with pytest.raises(InvalidRequest):
        other.history.import_({"conversations": []})


def test_failed_and_cancelled_requests_are_logged(studio):
    with pytest.raises(ContextLengthExceeded):
        say(studio, "word " * 3000)  # echo's context is 2048 "tokens"
    failed = studio.history.get(studio.history.latest_id())
    assert failed["responses"][0]["status"] == "error" and "context" in failed["responses"][0]["error"]

    studio.registry.engine("echo").delay = 0.05  # a word every 50 ms, so stopping early is seen
    prepared = studio.chat.prepare([Message(role="user", content="a b c d e f g h")], source="test")
    run = studio.chat.start(prepared)
    for i, _chunk in enumerate(run):
        if i == 1:
            break
    result = run.result  # waits for the engine to notice and for the record
    conv = studio.history.get(result.conversation_id)
    assert conv["responses"][0]["status"] == "cancelled"
    assert conv["responses"][0]["finish_reason"] == "cancelled"
    # Everything the engine produced is kept, including a word the client never read.
    assert conv["messages"][-1]["content"] in ("a b ", "a b c ")


def test_a_failed_write_leaves_earlier_history_intact(studio):
    ok = say(studio, "precious")
    with pytest.raises(studio.db.IntegrityError), studio.db.tx() as conn:
        conn.execute("INSERT INTO messages (conversation_id, role, content, created) VALUES ('x','user','y',0)")
    assert studio.history.get(ok.conversation_id)["messages"][0]["content"] == "precious"


def test_regenerate_answers_again_in_place_and_keeps_the_replaced_answer(studio):
    first = say(studio, "one two three")
    engine = studio.registry.engine("echo")
    prepared = studio.chat.prepare(
        [], conversation_id=first.conversation_id, regenerate=True, options=TextOptions(max_tokens=2), source="test"
    )
    assert [m.content for m in prepared.request.messages] == ["one two three"]
    again = studio.chat.complete(prepared)
    assert again.conversation_id == first.conversation_id and again.text == "one two "
    assert [m.content for m in studio.history.messages(first.conversation_id)] == ["one two three", "one two "]
    conv = studio.history.get(first.conversation_id)
    assert [(m["content"], m["superseded"]) for m in conv["messages"]] == [
        ("one two three", 0),
        ("one two three", 1),
        ("one two ", 0),
    ]
    # A retry that fails changes nothing: the answer shown stays the last good one.
    engine.count_prompt_tokens = lambda *a, **k: 10**6
    with pytest.raises(Exception, match="context"):
        studio.chat.prepare([], conversation_id=first.conversation_id, regenerate=True, source="test")
    del engine.count_prompt_tokens
    assert [m.content for m in studio.history.messages(first.conversation_id)] == ["one two three", "one two "]
    with pytest.raises(InvalidRequest, match="needs the conversation"):
        studio.chat.prepare([], regenerate=True)


CALL = ToolCall(id="call_abc123", name="get_weather", arguments='{"city": "Paris"}')
TOOL_TURNS = [
    Message(role="user", content="Weather in Paris?", name="ann"),
    Message(role="assistant", tool_calls=[CALL]),
    Message(role="tool", tool_call_id="call_abc123", content="18 degrees and sunny"),
]


def test_tool_turns_are_stored_restored_and_recognised_when_resent(studio):
    first = studio.chat.complete(studio.chat.prepare(list(TOOL_TURNS), source="test"))
    assert first.text == "Weather in Paris?"  # echo answers the last user message
    restored = studio.history.messages(first.conversation_id)
    assert restored[:3] == TOOL_TURNS
    # The client resends everything, the answer and one more question: the same conversation goes on.
    resent = [*TOOL_TURNS, Message(role="assistant", content=first.text), Message(role="user", content="And Rome?")]
    second = studio.chat.complete(studio.chat.prepare(resent, source="test"))
    assert second.conversation_id == first.conversation_id
    conv = studio.history.get(first.conversation_id)
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert conv["messages"][1]["tool_calls"] == [CALL.model_dump()] and conv["messages"][1]["content"] == ""
    assert conv["messages"][2]["tool_call_id"] == "call_abc123" and conv["messages"][0]["name"] == "ann"
    # Changed arguments are another conversation, not this one.
    other = CALL.model_copy(update={"arguments": '{"city": "Rome"}'})
    changed = [TOOL_TURNS[0], Message(role="assistant", tool_calls=[other]), *resent[2:]]
    third = studio.chat.complete(studio.chat.prepare(changed, source="test"))
    assert third.conversation_id != first.conversation_id


def test_results_of_several_tool_calls_continue_the_conversation_that_called_them(studio):
    calls = [CALL, CALL.model_copy(update={"id": "call_def456", "arguments": '{"city": "Rome"}'})]
    asked = studio.chat.complete(studio.chat.prepare([Message(role="user", content="Paris and Rome?")], source="test"))
    # The stored answer is replaced here by the calls a real model made; the client resends those.
    studio.db.conn.execute(
        "UPDATE messages SET tool_calls = ?, content = '' WHERE conversation_id = ? AND role = 'assistant'",
        (json.dumps([c.model_dump() for c in calls]), asked.conversation_id),
    )
    studio.db.conn.execute(
        "UPDATE conversations SET tail_hash = ? WHERE id = ?",
        (
            messages_hash(
                [Message(role="user", content="Paris and Rome?"), Message(role="assistant", tool_calls=calls)]
            ),
            asked.conversation_id,
        ),
    )
    results = [Message(role="tool", tool_call_id=c.id, content=f"result {i}") for i, c in enumerate(calls)]
    turns = [Message(role="user", content="Paris and Rome?"), Message(role="assistant", tool_calls=calls), *results]
    answer = studio.chat.complete(studio.chat.prepare(turns, source="test"))
    assert answer.conversation_id == asked.conversation_id
    roles = [m["role"] for m in studio.history.get(asked.conversation_id)["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "assistant"]


def test_plain_conversations_hash_as_before_so_older_ones_are_still_recognised():
    import hashlib

    plain = [Message(role="user", content="hi"), Message(role="assistant", content="hello")]
    before = hashlib.sha256(json.dumps([["user", "hi"], ["assistant", "hello"]]).encode()).hexdigest()
    assert messages_hash(plain) == before


def test_export_and_import_keep_tool_turns(studio, aigc_home):
    r = studio.chat.complete(studio.chat.prepare(list(TOOL_TURNS), source="test"))
    data = json.loads(json.dumps(studio.history.export([r.conversation_id])))
    studio.history.delete(r.conversation_id)
    assert studio.history.import_(data) == (1, 0)
    assert studio.history.messages(r.conversation_id)[:3] == TOOL_TURNS


def test_model_defaults_fill_what_the_request_leaves_unset(studio, smollm_path):
    """A catalog model's defaults apply in the chat service (so to the CLI, the API and the UI alike)."""
    studio.registry.add(smollm_path, model_id="catalog-like", defaults={"temperature": 0.2, "top_k": 7})
    prepared = studio.chat.prepare(
        [Message(role="user", content="hi")], model="catalog-like", options=TextOptions(top_k=3), source="test"
    )
    assert (prepared.request.options.temperature, prepared.request.options.top_k) == (0.2, 3)
    assert prepared.record.options == {"temperature": 0.2, "top_k": 3}


def test_history_show_prints_tool_calls_and_results(studio):
    from click.testing import CliRunner

    from aigc_studio.cli.main import cli

    r = studio.chat.complete(studio.chat.prepare(list(TOOL_TURNS), source="test"))
    shown = CliRunner().invoke(cli, ["history", "show", r.conversation_id], catch_exceptions=False).output
    assert '-> get_weather({"city": "Paris"})  [call_abc123]' in shown
    assert "tool: (to call_abc123)\n18 degrees and sunny" in shown


def test_a_run_not_stored_answers_but_leaves_no_conversation(studio):
    before = studio.history.list(limit=1000)
    prepared = studio.chat.prepare([Message(role="user", content="one two three")], source="write", store=False)
    result = studio.chat.complete(prepared)
    assert result.text and result.conversation_id is None
    assert studio.history.list(limit=1000) == before
