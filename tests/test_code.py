"""The code service on the echo engine (answers set with its test-only canned replies) and the real
sandbox: turns, versions, refinement, runs, self-repair, edits, diffs, and what a bad request leaves."""

from __future__ import annotations

import pytest

from aigc_studio import sandbox as sandbox_module
from aigc_studio.config import load_config
from aigc_studio.contracts import RunLimits, TextOptions
from aigc_studio.engines.echo import clear_replies, queue_replies
from aigc_studio.errors import ContextLengthExceeded, InvalidRequest, NotFound, SandboxUnavailable
from aigc_studio.services.code import RunSpec
from aigc_studio.studio import Studio

from . import schema

SORT_JS = "function bubbleSort(a) {\n  return a.slice().sort((x, y) => x - y);\n}\n"
WRONG_JS = "function bubbleSort(a) {\n  return a;\n}\n"
CALL = "bubbleSort([5,2,8,1,9,3])"


def answer(code: str, tag: str = "js") -> str:
    return f"Here is the program:\n\n```{tag}\n{code}```\n\nIt sorts the array."


@pytest.fixture
def studio(aigc_home):
    clear_replies()
    s = Studio(load_config(model="echo"))
    yield s
    s.close()
    clear_replies()


def first_event(events, kind):
    return next(e for e in events if e.kind == kind)


def kinds(events) -> list[str]:
    # Deltas collapsed: the order of everything else is what a client relies on.
    out = []
    for e in events:
        if e.kind != "delta" or not out or out[-1] != "delta":
            out.append(e.kind)
    return out


def test_a_turn_streams_the_answer_then_stores_its_code_as_version_1(studio):
    queue_replies(answer(SORT_JS))
    turn = studio.code.turn("write a JavaScript bubble sort")
    events = list(turn)
    assert kinds(events) == ["delta", "version", "done"]
    assert "".join(e.text for e in events if e.kind == "delta") == answer(SORT_JS)
    version = first_event(events, "version").version
    assert (version.block, version.version, version.language, version.note) == (1, 1, "javascript", "generated")
    assert version.code == SORT_JS
    assert events[-1].session_id == turn.session_id == version.session_id
    assert events[-1].finish_reason == "stop"

    session = studio.code.session(turn.session_id)
    assert session["title"] == "write a JavaScript bubble sort"
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", "write a JavaScript bubble sort"),
        ("assistant", answer(SORT_JS)),
    ]
    assert session["versions"][0]["message_id"] is not None
    # The session is a chat conversation too: in history with source "code".
    assert studio.history.get(turn.session_id)["source"] == "code"
    [listed] = studio.code.sessions()
    assert (listed["id"], listed["language"], listed["versions"], listed["runs"]) == (
        turn.session_id,
        "javascript",
        1,
        0,
    )


def test_a_long_prompt_is_reported_as_read_before_the_answer(studio):
    studio.registry.engine("echo").prompt_step = 3  # read in steps of 3 words
    queue_replies(answer(SORT_JS))
    events = list(studio.code.turn("write a JavaScript bubble sort for me please"))
    order = kinds(events)
    assert order[-3:] == ["delta", "version", "done"] and set(order[:-3]) == {"reading"}
    reading = [e.to_dict() for e in events if e.kind == "reading"]
    total = reading[0]["prompt_tokens"]
    assert reading == [{"kind": "reading", "read": n, "prompt_tokens": total} for n in range(0, total, 3)]
    assert first_event(events, "version").version.code == SORT_JS


def test_a_turn_with_a_run_runs_the_new_version_in_the_sandbox_and_stores_the_run(studio):
    queue_replies(answer(SORT_JS))
    turn = studio.code.turn("write a JavaScript bubble sort", run=RunSpec(call=CALL, expect="[1,2,3,5,8,9]"))
    events = list(turn)
    assert kinds(events) == ["delta", "version", "run", "done"]
    run = first_event(events, "run").run
    assert run.result.stdout == "[\n  1, 2, 3,\n  5, 8, 9\n]\n" or run.result.stdout == "[ 1, 2, 3, 5, 8, 9 ]\n"
    assert run.result.exit_code == 0 and run.result.limit is None and run.matched is True
    assert run.version_id == first_event(events, "version").version.id
    stored = studio.code.session(turn.session_id)["runs"]
    assert [(r["id"], r["matched"], r["result"]["stdout"]) for r in stored] == [(run.id, True, run.result.stdout)]
    assert stored[0]["spec"]["call"] == CALL


def test_the_language_comes_from_the_request_when_the_fence_has_no_tag(studio):
    queue_replies(answer("print(sorted([3, 1, 2]))\n", tag=""))
    events = list(studio.code.turn("用 Python 写一个排序", run=RunSpec()))
    version = first_event(events, "version").version
    assert version.language == "python"
    run = first_event(events, "run").run
    assert run.result.stdout == "[1, 2, 3]\n"


def test_a_chinese_request_is_sent_with_the_chinese_template(studio):
    # Echo answers with what it was sent: the rendered code-generate.zh template.
    events = list(studio.code.turn("用 JavaScript 写一个冒泡排序"))
    text = "".join(e.text for e in events if e.kind == "delta")
    assert text.startswith("请用 JavaScript 编写程序，需求如下：")
    assert "用 JavaScript 写一个冒泡排序" in text


def test_a_later_turn_refines_the_latest_code_and_adds_version_2(studio):
    queue_replies(answer(WRONG_JS))
    first = studio.code.turn("write a JavaScript bubble sort")
    list(first)
    # Unqueued, echo answers with the refine prompt itself: it shows what the model was sent.
    events = list(studio.code.turn("make it more concise", session_id=first.session_id))
    sent = "".join(e.text for e in events if e.kind == "delta")
    assert sent.startswith("This is the current JavaScript code:\n\n```\n" + WRONG_JS + "```")
    assert "Change it as follows: make it more concise" in sent
    version = first_event(events, "version").version
    assert (version.block, version.version, version.note) == (1, 2, "refined: make it more concise")
    assert version.language == "javascript"  # the untagged fence takes the session's language
    messages = studio.code.session(first.session_id)["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "write a JavaScript bubble sort",
        "make it more concise",
    ]


def test_the_model_sees_the_conversation_on_a_later_turn(studio):
    queue_replies(answer(WRONG_JS))
    first = studio.code.turn("write a JavaScript bubble sort")
    list(first)
    queue_replies(answer(SORT_JS))
    second = studio.code.turn("add comments", session_id=first.session_id)
    sent = [m.content for m in second._prepared.request.messages]
    assert sent[1:3] == ["write a JavaScript bubble sort", answer(WRONG_JS)]
    list(second)


def test_repair_sends_the_failure_back_until_the_output_matches(studio):
    queue_replies(answer(WRONG_JS), answer(WRONG_JS), answer(SORT_JS))
    turn = studio.code.turn("write a JavaScript bubble sort", run=RunSpec(call=CALL, expect="[1,2,3,5,8,9]"), repair=3)
    events = list(turn)
    attempt = ["attempt", "delta", "version", "run"]
    assert kinds(events) == ["delta", "version", "run", *attempt, *attempt, "done"]
    attempts = [(e.attempt, e.of) for e in events if e.kind == "attempt"]
    assert attempts == [(1, 3), (2, 3)]
    runs = [e.run for e in events if e.kind == "run"]
    assert [r.matched for r in runs] == [False, False, True]
    assert runs[0].result.stdout == "[ 5, 2, 8, 1, 9, 3 ]\n"
    session = studio.code.session(turn.session_id)
    assert [(v["version"], v["note"]) for v in session["versions"]] == [
        (1, "generated"),
        (2, "repair 1/3"),
        (3, "repair 2/3"),
    ]
    assert [r["version_id"] for r in session["runs"]] == [v["id"] for v in session["versions"]]
    # The repair prompt told the model what ran, what came out and what was expected.
    repair_prompt = session["messages"][2]["content"]
    assert repair_prompt.startswith("This JavaScript code failed when it ran:")
    assert "Standard output:\n[ 5, 2, 8, 1, 9, 3 ]" in repair_prompt
    assert "Expected output: [1,2,3,5,8,9]" in repair_prompt


def test_repair_stops_after_n_attempts_and_a_crash_counts_as_failure(studio):
    crash = "throw new Error('boom');\n"
    queue_replies(answer(crash), answer(crash), answer(crash))
    events = list(studio.code.turn("write a JavaScript thing", run=RunSpec(), repair=2))
    runs = [e.run for e in events if e.kind == "run"]
    assert len(runs) == 3 and all(r.result.exit_code == 1 for r in runs)
    assert "Error: boom" in runs[-1].result.stderr
    assert [e.attempt for e in events if e.kind == "attempt"] == [1, 2]
    assert events[-1].kind == "done"


def test_a_limit_hit_is_recorded_as_the_run_result(studio):
    queue_replies(answer("while True:\n    pass\n", tag="python"))
    limits = RunLimits(wall_seconds=1, cpu_seconds=1)
    events = list(studio.code.turn("loop forever in python", run=RunSpec(limits=limits)))
    run = first_event(events, "run").run
    assert run.result.limit in ("cpu", "wall") and run.result.exit_code is None and run.failed


def test_an_answer_without_code_ends_the_run_with_an_error_event(studio):
    queue_replies("I cannot write that, sorry. Please ask for something else.")
    events = list(studio.code.turn("write a JavaScript bubble sort", run=RunSpec()))
    assert kinds(events) == ["delta", "error"]
    assert events[-1].message.startswith("the answer has no code block to run")
    assert studio.code.session(events[-1].session_id)["versions"] == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "  "}, "prompt must not be empty"),
        ({"prompt": "x", "repair": 2}, "repair needs a run"),
        ({"prompt": "x", "repair": 11, "run": RunSpec()}, "repair must be 0-10 attempts, got 11"),
        ({"prompt": "x", "language": "bash", "run": RunSpec()}, "bash code cannot be run"),
        ({"prompt": "x", "language": "no spaces allowed"}, "language must be a language's name"),
        (
            {"prompt": "x", "run": RunSpec(limits=RunLimits(wall_seconds=600))},
            "limits.wall_seconds must be at most 60 (setting run_max_wall_seconds), got 600",
        ),
    ],
)
def test_bad_requests_are_refused_before_anything_is_stored(studio, kwargs, message):
    prompt = kwargs.pop("prompt")
    with pytest.raises(InvalidRequest) as caught:
        studio.code.turn(prompt, **kwargs)
    assert message in caught.value.message
    assert studio.code.sessions() == []
    assert studio.history.list() == []


def test_a_prompt_too_long_for_the_model_stores_nothing(studio):
    with pytest.raises(ContextLengthExceeded):
        studio.code.turn("write a sort", options=TextOptions(max_tokens=100_000))
    assert studio.history.list() == []


def test_an_unknown_session_or_version_is_not_found(studio):
    with pytest.raises(NotFound, match="no code session with id 'conv-nope'"):
        studio.code.turn("make it shorter", session_id="conv-nope")
    with pytest.raises(NotFound, match="no code version with id 99"):
        studio.code.run(99, RunSpec())
    with pytest.raises(NotFound):
        studio.code.diff(1, 2)


def test_without_a_sandbox_a_turn_with_a_run_is_refused_and_nothing_is_stored(studio, monkeypatch, tmp_path):
    # No bwrap on the PATH the sandbox searches: the real check fails, naming what is missing.
    monkeypatch.setattr(sandbox_module, "SAFE_PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        studio.code.turn("write a JavaScript bubble sort", run=RunSpec(call=CALL))
    assert studio.history.list() == []
    with pytest.raises(SandboxUnavailable):
        studio.code.run_source("js", "console.log(1)", RunSpec(), title="a.js")
    assert studio.code.sessions() == []


def test_an_edit_is_a_new_version_and_runs(studio):
    queue_replies(answer(WRONG_JS))
    turn = studio.code.turn("write a JavaScript bubble sort")
    list(turn)
    edited = studio.code.edit(turn.session_id, SORT_JS)
    assert (edited.block, edited.version, edited.language, edited.note, edited.message_id) == (
        1,
        2,
        "javascript",
        "edited",
        None,
    )
    record = studio.code.run(edited.id, RunSpec(call=CALL, expect="[1, 2, 3, 5, 8, 9]"))
    assert record.matched is True and record.session_id == turn.session_id
    shell = studio.code.edit(turn.session_id, "echo hi", language="bash", block=2)
    assert (shell.block, shell.version, shell.language) == (2, 1, "bash")
    with pytest.raises(InvalidRequest, match="sandbox runs python and javascript only"):
        studio.code.run(shell.id, RunSpec())
    with pytest.raises(InvalidRequest, match="block must be 1-3"):
        studio.code.edit(turn.session_id, "x", block=4)
    with pytest.raises(InvalidRequest, match="code must not be empty"):
        studio.code.edit(turn.session_id, "  \n")
    assert len(studio.code.session(turn.session_id)["versions"]) == 3


def test_diff_between_versions_is_labelled_v1_v2(studio):
    queue_replies(answer(WRONG_JS))
    turn = studio.code.turn("write a JavaScript bubble sort")
    list(turn)
    v2 = studio.code.edit(turn.session_id, SORT_JS)
    v1 = studio.code.session(turn.session_id)["versions"][0]
    assert studio.code.diff(v1["id"], v2.id).splitlines() == [
        "--- v1",
        "+++ v2",
        "@@ -1,3 +1,3 @@",
        " function bubbleSort(a) {",
        "-  return a;",
        "+  return a.slice().sort((x, y) => x - y);",
        " }",
    ]
    assert studio.code.diff(v2.id, v2.id) == ""


def test_run_source_keeps_the_file_as_a_session_of_its_own(studio):
    record = studio.code.run_source(
        "py",
        "import sys\nprint(sys.stdin.read().upper(), sys.argv[1:])",
        RunSpec(stdin="hi", args=["a", "b"]),
        title="shout.py",
    )
    assert record.result.stdout == "HI ['a', 'b']\n"
    [listed] = studio.code.sessions()
    assert (listed["title"], listed["language"], listed["versions"], listed["runs"]) == ("shout.py", "python", 1, 1)
    session = studio.code.session(listed["id"])
    assert session["versions"][0]["note"] == "file: shout.py"
    with pytest.raises(InvalidRequest, match="language must be one of python, py, python3, javascript"):
        studio.code.run_source("ruby", "puts 1", RunSpec(), title="a.rb")
    with pytest.raises(InvalidRequest, match="code must not be empty"):
        studio.code.run_source("py", " ", RunSpec(), title="a.py")


def test_delete_removes_the_session_its_versions_and_runs(studio):
    record = studio.code.run_source("js", "console.log(1)", RunSpec(), title="one.js")
    studio.code.delete(record.session_id)
    assert studio.code.sessions() == []
    with pytest.raises(NotFound):
        studio.code.run(record.version_id, RunSpec())
    with pytest.raises(NotFound):
        studio.code.delete(record.session_id)
    count = studio.db.conn.execute("SELECT count(*) FROM code_runs").fetchone()[0]
    assert count == 0


def test_cancel_before_the_answer_stores_nothing_and_after_it_skips_the_run(studio):
    turn = studio.code.turn("write a JavaScript bubble sort", run=RunSpec())
    turn.cancel()
    assert [e.kind for e in turn] == ["done"]
    assert studio.history.list() == []

    queue_replies(answer(SORT_JS))
    turn = studio.code.turn("write a JavaScript bubble sort", run=RunSpec(call=CALL))
    seen = []
    for event in turn:
        seen.append(event.kind)
        if event.kind == "version":
            turn.cancel()
    assert "run" not in seen and seen[-1] == "done"
    assert studio.code.session(turn.session_id)["runs"] == []


def test_chinese_requests_and_versions_round_trip(studio):
    queue_replies("好的：\n```python\n# 冒泡排序\ndef 排序(a):\n    return sorted(a)\nprint(排序([2, 1]))\n```")
    events = list(studio.code.turn("用 Python 写冒泡排序，加中文注释", run=RunSpec(expect="[1, 2]")))
    run = first_event(events, "run").run
    assert run.matched is True
    version = first_event(events, "version").version
    assert "# 冒泡排序" in studio.code.version(version.id).code


def test_a_run_in_a_session_of_another_language_says_it_cannot_run_it(studio):
    queue_replies(answer("echo hi\n", tag="bash"))
    first = studio.code.turn("write a bash script")
    list(first)
    queue_replies(answer("echo bye\n", tag="bash"))
    events = list(studio.code.turn("say bye instead", session_id=first.session_id, run=RunSpec()))
    assert events[-1].kind == "error"
    assert "version 2 is bash code; the sandbox runs python and javascript only" in events[-1].message


def test_a_caller_that_stops_iterating_mid_answer_keeps_the_answer_as_cancelled(studio):
    queue_replies(answer(SORT_JS))
    turn = studio.code.turn("write a JavaScript bubble sort", run=RunSpec())
    events = iter(turn)
    assert next(events).kind == "delta"
    events.close()
    session = studio.code.session(turn.session_id)
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"]
    assert session["messages"][1]["content"].startswith("Here ")
    assert session["runs"] == []  # nothing runs after the caller left
    # echo may have finished the answer before the stop reached it: a whole answer keeps its code
    status = studio.history.get(turn.session_id)["responses"][0]["status"]
    expected = [] if status == "cancelled" else [SORT_JS]
    assert [v["code"] for v in session["versions"]] == expected


def test_the_code_tables_come_with_migration_m009(studio):
    assert "m009_code" in studio.db.migrations_applied()
    assert {"code_versions", "code_runs"} <= schema.tables(studio.db)
