"""Editing operations with the echo engine (it answers with the prompt it was given, so what each
operation asks, and where the answer lands, can be checked exactly), the diffs, and language fit."""

from __future__ import annotations

import threading

import pytest

from aigc_studio.config import load_config
from aigc_studio.contracts import TextOptions
from aigc_studio.errors import ContextLengthExceeded, InvalidRequest
from aigc_studio.models.registry import ModelInfo
from aigc_studio.services.editing import OPERATIONS, Change, EditRequest, char_diff, line_diff, parse_list
from aigc_studio.services.language_fit import detect_language, language_fit, model_languages
from aigc_studio.studio import Studio


@pytest.fixture
def studio(aigc_home):
    studio = Studio(load_config(model="echo"))
    yield studio
    studio.close()


def answer(studio, op, language, **values):
    """What the echo engine answers for ``op``: the user prompt of its template, as rendered."""
    return studio.templates.get(f"{op}.{language}").render(values)[1]


def test_polish_replaces_exactly_the_selection(studio):
    text = "First line stays.\nThis are a bad sentence.  \nLast line stays."
    start = text.index("This")
    end = text.index("Last")
    result = studio.editing.run(EditRequest(op="polish", text=text, start=start, end=end))
    proposal = answer(studio, "polish", "en", text="This are a bad sentence.")
    # The selection's own trailing spaces and newline stay around the answer.
    assert result.text == "First line stays.\n" + proposal + "  \n" + "Last line stays."
    assert (result.start, result.end, result.language, result.model) == (start, end, "en", "echo")
    assert result.original == text and result.finish_reason == "stop"
    # Echo answers with the prompt, which ends with the selection: the diff adds its instructions.
    assert result.diff.splitlines() == [
        "--- original",
        "+++ edited",
        "@@ -1,3 +1,5 @@",
        " First line stays.",
        "+" + proposal.split("\n")[0],
        "+",
        " This are a bad sentence.  ",
        " Last line stays.",
    ]
    assert result.changes == [
        Change("equal", "First line stays.\n"),
        Change("insert", proposal.removesuffix("This are a bad sentence.")),
        Change("equal", "This are a bad sentence.  \nLast line stays."),
    ]
    assert "".join(c.text for c in result.changes if c.op != "delete") == result.text
    assert "".join(c.text for c in result.changes if c.op != "insert") == text


def test_continue_inserts_after_the_selection_and_keeps_the_rest(studio):
    text = "The sea was calm. Then the wind came."
    at = text.index(" Then")
    result = studio.editing.run(EditRequest(op="continue", text=text, start=0, end=at))
    proposal = answer(studio, "continue", "en", text="The sea was calm.")
    assert result.text == "The sea was calm. " + proposal + " Then the wind came."
    whole = studio.editing.run(EditRequest(op="continue", text=text))
    assert whole.text == text + " " + answer(studio, "continue", "en", text=text)
    # A cursor (an empty selection) is where the continuation goes; Chinese takes no spaces around it.
    zh = "第一段。\n\n第二段。"
    at = zh.index("\n")
    cursor = studio.editing.run(EditRequest(op="continue", text=zh, start=at, end=at))
    assert cursor.text == "第一段。" + answer(studio, "continue", "zh", text="第一段。") + "\n\n第二段。"


def test_chinese_text_gets_the_chinese_template_and_a_character_diff(studio):
    text = "今天天气很好。我们去公园散步吧。"
    start, end = text.index("我们"), len(text)
    result = studio.editing.run(EditRequest(op="shorten", text=text, start=start, end=end))
    assert result.language == "zh"
    proposal = answer(studio, "shorten", "zh", text="我们去公园散步吧。")
    assert result.text == "今天天气很好。" + proposal
    assert result.changes[0] == Change("equal", "今天天气很好。")
    # No spaces in Chinese: still, one changed character is one change, the rest equal.
    assert char_diff("我们去公园散步吧。", "我们去花园散步吧。") == [
        Change("equal", "我们去"),
        Change("delete", "公"),
        Change("insert", "花"),
        Change("equal", "园散步吧。"),
    ]
    assert line_diff("第一行\n第二行", "第一行\n第三行").splitlines()[-2:] == ["-第二行", "+第三行"]


def test_english_display_diff_is_by_word():
    assert char_diff("the quick brown fox", "the slow brown fox") == [
        Change("equal", "the "),
        Change("delete", "quick"),
        Change("insert", "slow"),
        Change("equal", " brown fox"),
    ]


def test_translate_and_tone_fill_their_variables(studio):
    zh = studio.editing.run(EditRequest(op="translate", text="你好，世界。"))
    assert zh.text == answer(studio, "translate", "zh", text="你好，世界。", target="英文")
    en = studio.editing.run(EditRequest(op="translate", text="Hello, world."))
    assert "into Chinese" in en.text
    toned = studio.editing.run(EditRequest(op="tone", text="Send it now.", tone="polite"))
    assert toned.text == answer(studio, "tone", "en", text="Send it now.", tone="polite")
    forced = studio.editing.run(EditRequest(op="polish", text="Hello, world.", language="zh"))
    assert forced.language == "zh" and forced.text.startswith("请润色")


def test_titles_and_keywords_answer_a_list_and_leave_the_text(studio):
    text = "Cats sleep a lot."
    result = studio.editing.run(EditRequest(op="titles", text=text))
    assert result.text == text and not result.changed and result.diff == ""
    instructions = answer(studio, "titles", "en", text=text).split("\n\n")[0]
    assert result.items == [instructions, text]
    assert parse_list("1. Cats\n2) Dogs\n- “Birds”\n• Cats", "titles") == ["Cats", "Dogs", "Birds"]
    assert parse_list("人工智能、大模型，创作; AIGC", "keywords") == ["人工智能", "大模型", "创作", "AIGC"]


@pytest.mark.parametrize(
    "fields, message, param",
    [
        (
            {"start": 5, "end": 99},
            r"the selection 5:99 is outside the text, which has 11 characters; give 0 <= start <= end <= 11",
            "end",
        ),
        ({"start": 8, "end": 3}, r"the selection 8:3 is outside the text, which has 11 characters", "start"),
        ({"start": 4, "end": 4}, r"the selection 4:4 is empty; select the text to polish", "start"),
        ({"start": 5, "end": 6}, r"the selection 5:6 holds only spaces", "start"),
        ({"tone": "dry"}, r"tone is only for the operation 'tone', not 'polish'", "tone"),
        ({"target": "en"}, r"target is only for the operation 'translate', not 'polish'", "target"),
    ],
)
def test_bad_selections_and_fields_are_refused_with_what_is_allowed(studio, fields, message, param):
    with pytest.raises(InvalidRequest, match=message) as caught:
        studio.editing.prepare(EditRequest(op="polish", text="Hello world", **fields))
    assert caught.value.param == param and caught.value.status == 400


def test_tone_needs_a_tone_and_translate_a_different_language(studio):
    with pytest.raises(InvalidRequest, match="needs the tone to write in"):
        studio.editing.prepare(EditRequest(op="tone", text="Hello"))
    with pytest.raises(InvalidRequest, match="already in English; translate it to zh"):
        studio.editing.prepare(EditRequest(op="translate", text="Hello", target="en"))


def test_a_selection_over_the_context_is_refused_with_the_numbers(studio):
    long = " ".join(["word"] * 1500)  # echo: one token per word, a context of 2048
    with pytest.raises(ContextLengthExceeded, match=r"the text takes about 1502 tokens.*context of 2048 tokens"):
        studio.editing.prepare(EditRequest(op="polish", text=long))
    with pytest.raises(ContextLengthExceeded, match=r"the text \(14999 characters\) is too long.*2048 tokens"):
        studio.editing.prepare(EditRequest(op="summarize", text=" ".join(["word"] * 3000)))
    # The model is free for the next request: nothing was left holding it.
    assert studio.editing.run(EditRequest(op="polish", text="short")).finish_reason == "stop"


def test_cancel_leaves_the_original_untouched(studio):
    studio.registry.engine("echo").delay = 0.05
    text = "One two three four five six seven eight nine ten."
    run = studio.editing.start(studio.editing.prepare(EditRequest(op="polish", text=text)))
    seen = []
    for chunk in run:
        seen.append(chunk.text)
        if len(seen) == 3:
            threading.Thread(target=run.cancel).start()
    result = run.result
    assert result.finish_reason == "cancelled"
    assert result.text == text and not result.changed and result.diff == ""
    assert result.output == "".join(seen) and result.output  # what was written before the stop
    # Stopped before it began: nothing runs and the model is free.
    early = studio.editing.start(studio.editing.prepare(EditRequest(op="polish", text=text)))
    early.cancel()
    assert list(early) == [] and early.result.text == text and early.result.finish_reason == "cancelled"
    studio.registry.engine("echo").delay = 0


def test_a_token_limit_is_reported_not_hidden(studio):
    result = studio.editing.run(EditRequest(op="polish", text="Hello there", options=TextOptions(max_tokens=2)))
    assert result.finish_reason == "length"
    assert any("cut short" in note for note in result.notes)


def test_every_operation_is_listed_with_both_titles(studio):
    listed = {op["name"]: op for op in studio.editing.operations()}
    assert list(listed) == list(OPERATIONS)
    assert listed["polish"]["title_zh"] == "润色" and listed["translate"]["takes"] == ["target"]
    assert listed["keywords"]["result"] == "list" and listed["continue"]["placement"] == "insert"


def test_language_detection_and_fit(studio):
    assert detect_language("我喜欢用 Python 编程") == "zh"
    assert detect_language("The word 人工智能 means AI in Chinese") == "en"
    smol = studio.registry.resolve("smollm2")
    assert language_fit(smol, "en") is None
    warning = language_fit(smol, "zh")
    assert warning.startswith("the model 'smollm2-135m' writes English only, and this text is in Chinese")
    assert "aigc models pull qwen2.5-0.5b-instruct" in warning
    assert language_fit(studio.registry.resolve("echo"), "zh") is None  # languages not known: no guess
    # A catalog model pulled before the catalog listed languages: its entry still knows them.
    pulled_earlier = ModelInfo(id="qwen2.5-0.5b-instruct", engine="llamacpp", path="/models/qwen.gguf")
    assert {"en", "zh"} <= set(model_languages(pulled_earlier)) and language_fit(pulled_earlier, "zh") is None
