"""Prompt craft with real components: A1111 styles files, the dynamicprompts package over real wildcard
files, expansion through the echo engine (structure), and images from the plain engine with their PNG
infotext and records read back."""

from __future__ import annotations

import json

import pytest

from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest
from aigc_studio.errors import InvalidRequest, NotFound
from aigc_studio.images.infotext import parse_infotext, read_infotext, to_request_fields
from aigc_studio.services.dynamic_prompts import MAX_COMBINATIONS
from aigc_studio.services.prompt_craft import idea_language
from aigc_studio.services.prompt_styles import (
    PromptStyle,
    StyleExists,
    apply_styles,
    parse_styles_csv,
    styles_csv,
)
from aigc_studio.studio import Studio

# A styles.csv as A1111 writes one: BOM, CRLF, quoting of commas, quotes and newlines.
A1111_CSV = (
    "\ufeffname,prompt,negative_prompt\r\n"
    'Cinematic,"cinematic still of {prompt}, shallow depth of field","cartoon, ""flat"" colors"\r\n'
    'Oil,"oil painting, thick brush strokes\nvisible canvas",blurry\r\n'
    "Plain,,\r\n"
)


@pytest.fixture
def studio(aigc_home):
    s = Studio(load_config(model="echo", image_model="plain"))
    yield s
    s.close()


def wildcards(home, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = home / "wildcards" / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


# -- styles ------------------------------------------------------------------------------------------


def test_styles_round_trip_a1111_styles_csv_byte_for_byte():
    styles = parse_styles_csv(A1111_CSV)
    assert styles == [
        PromptStyle("Cinematic", "cinematic still of {prompt}, shallow depth of field", 'cartoon, "flat" colors'),
        PromptStyle("Oil", "oil painting, thick brush strokes\nvisible canvas", "blurry"),
        PromptStyle("Plain", "", ""),
    ]
    assert styles_csv(styles) == A1111_CSV


def test_a1111s_older_name_text_header_is_read():
    assert parse_styles_csv("name,text\nold,an old style\n") == [PromptStyle("old", "an old style", "")]


def test_apply_styles_follows_a1111s_rule_in_order():
    cinematic = PromptStyle("c", "cinematic still of {prompt}, film grain", "cartoon, {prompt}")
    oil = PromptStyle("o", "oil painting", "blurry")
    assert apply_styles("a cat", "", [oil]) == ("a cat, oil painting", "blurry")
    assert apply_styles("a cat", "text", [cinematic]) == ("cinematic still of a cat, film grain", "cartoon, text")
    assert apply_styles("a cat", "text", [oil, cinematic]) == (
        "cinematic still of a cat, oil painting, film grain",
        "cartoon, text, blurry",
    )
    assert apply_styles("", "", [oil]) == ("oil painting", "blurry")


def test_style_store_add_edit_remove_export(studio, aigc_home):
    store = studio.prompts.styles
    store.save("Cinematic", "cinematic still of {prompt}", "cartoon, flat")
    store.save("Oil", "oil painting", "")
    with pytest.raises(StyleExists, match="already exists"):
        store.save("Oil", "x", replace=False)
    store.save("Oil", "oil painting, impasto", "blurry")
    assert store.get("Oil") == PromptStyle("Oil", "oil painting, impasto", "blurry")
    store.remove("Cinematic")
    assert [s.name for s in store.all()] == ["Oil"]
    assert (aigc_home / "styles.csv").read_bytes().decode("utf-8-sig") == (
        'name,prompt,negative_prompt\r\nOil,"oil painting, impasto",blurry\r\n'
    )
    with pytest.raises(NotFound, match="no style 'Gone'; the styles are: Oil"):
        store.remove("Gone")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('name,prompt,negative_prompt\nok,fine,\nbad,"never closed\n', "line 3"),
        ("name,prompt,negative_prompt\nok,fine,\ntoo,many,fields,here\n", "line 3: 4 fields, but the header has 3"),
        ("prompt,negative_prompt\nx,y\n", "line 1 must be the header name,prompt,negative_prompt"),
        ("name,prompt\na,1\na,2\n", "line 3: the style 'a' is there twice"),
        ("name,prompt\n,nameless\n", "line 2: name must be a non-empty text"),
    ],
)
def test_a_malformed_styles_file_is_an_error_naming_the_line_and_nothing_is_replaced(studio, text, words):
    store = studio.prompts.styles
    store.save("Keep", "kept", "")
    before = store.path.read_bytes()
    with pytest.raises(InvalidRequest, match=words):
        store.import_csv(text, "upload.csv", replace=True)
    assert store.path.read_bytes() == before


def test_import_merges_or_replaces(studio):
    store = studio.prompts.styles
    store.save("Keep", "kept", "")
    assert [s.name for s in store.import_csv(A1111_CSV)] == ["Cinematic", "Oil", "Plain"]
    assert [s.name for s in store.all()] == ["Keep", "Cinematic", "Oil", "Plain"]
    store.import_csv("name,prompt\nOnly,one\n", replace=True)
    assert [s.name for s in store.all()] == ["Only"]


# -- wildcards and dynamic prompts ---------------------------------------------------------------------


def test_combinatorial_lists_every_combination(studio, aigc_home):
    wildcards(aigc_home, {"colors": "red\nblue\n", "animals/cats": "tabby\n# a comment\nsiamese\n"})
    prompts = studio.prompts.preview("a {small|big} __colors__ __animals/cats__", "combinatorial")
    assert sorted(prompts) == sorted(
        f"a {size} {color} {cat}"
        for size in ("small", "big")
        for color in ("red", "blue")
        for cat in ("tabby", "siamese")
    )
    assert sorted(studio.prompts.preview("{2$$a|b|c}", "combinatorial")) == sorted(
        ["a,b", "a,c", "b,a", "b,c", "c,a", "c,b"]
    )


def test_same_seed_same_random_pick_and_another_seed_can_differ(studio, aigc_home):
    wildcards(aigc_home, {"colors": "\n".join(f"color{i}" for i in range(20))})
    template = "a __colors__ {car|boat|plane|train} on a {road|river|hill}"
    first = studio.prompts.preview(template, "random", count=5, seed=7)
    assert studio.prompts.preview(template, "random", count=5, seed=7) == first
    others = [studio.prompts.preview(template, "random", count=5, seed=s) for s in range(8, 12)]
    assert any(o != first for o in others)
    assert all(p.startswith("a color") for p in first)


def test_wildcards_are_listed_with_their_values(studio, aigc_home):
    wildcards(aigc_home, {"colors": "red\nblue\n", "animals/cats": "tabby\n"})
    listed = {w.name: w.values for w in studio.prompts.dynamic.wildcards()}
    assert listed == {"colors": ["blue", "red"], "animals/cats": ["tabby"]}


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("a {red|blue car", "'{' at character 3 is never closed"),
        ("a red|blue} car", "'}' at character 11 closes no '{'"),
        ("a __missing__ car", "no wildcard file for __missing__"),
        ("a __nested__", "in wildcard __nested__: no wildcard file for __gone__"),
    ],
)
def test_bad_templates_are_clear_errors(studio, aigc_home, template, words):
    wildcards(aigc_home, {"nested": "x __gone__\n"})
    with pytest.raises(InvalidRequest, match=words):
        studio.prompts.preview(template, "combinatorial")


def test_too_many_combinations_gives_the_bound(studio, aigc_home):
    wildcards(aigc_home, {"n": "\n".join(str(i) for i in range(11))})
    with pytest.raises(InvalidRequest, match=f"more than {MAX_COMBINATIONS} prompts.*at most {MAX_COMBINATIONS}"):
        studio.prompts.preview("__n__ __n__", "combinatorial")


# -- images --------------------------------------------------------------------------------------------


def test_dynamic_prompts_give_each_image_its_prompt_in_infotext_and_record(studio, aigc_home):
    wildcards(aigc_home, {"colors": "red\nblue\ngreen\n"})
    request = ImageRequest(
        prompt="a __colors__ {car|boat}",
        negative_prompt="{blurry|dark}",
        steps=1,
        width=64,
        height=64,
        seed=100,
        dynamic_prompts="combinatorial",
    )
    result = studio.images.generate(request)
    used = [g.prompt for g in result.images]
    assert sorted(used) == sorted(f"a {c} {v}" for c in ("red", "blue", "green") for v in ("car", "boat"))
    assert [g.seed for g in result.images] == list(range(100, 106))
    for generated in result.images:
        parsed = parse_infotext(read_infotext(generated.path))
        assert parsed.prompt == generated.prompt
        assert parsed.negative_prompt in ("blurry", "dark")
        assert parsed.params["Template"] == "a __colors__ {car|boat}"
        assert parsed.params["Negative Template"] == "{blurry|dark}"
        assert parsed.params["Seed"] == str(generated.seed)  # the parameter line is still read
        assert to_request_fields(parsed)["prompt"] == generated.prompt
    rows = {r["id"]: r for r in studio.images.list()}
    for generated in result.images:
        row = rows[generated.id]
        assert row["prompt"] == generated.prompt and row["prompt_template"] == "a __colors__ {car|boat}"
        assert row["negative_template"] == "{blurry|dark}"
        # reusing the record makes this image again: the prompt that ran, no dynamic mode
        assert row["params"]["prompt"] == generated.prompt and row["params"]["dynamic_prompts"] is None
    assert [r["id"] for r in studio.images.list(query="__colors__")] != []
    info = result.a1111_info()
    assert info["all_prompts"] == used and info["infotexts"][0].endswith("\nNegative Template: {blurry|dark}")


def test_random_dynamic_prompts_follow_the_image_seed(studio, aigc_home):
    wildcards(aigc_home, {"colors": "\n".join(f"color{i}" for i in range(30))})

    def prompts(seed):
        request = ImageRequest(
            prompt="a __colors__ house",
            steps=1,
            width=64,
            height=64,
            seed=seed,
            batch_size=2,
            n_iter=2,
            dynamic_prompts="random",
        )
        return [g.prompt for g in studio.images.generate(request).images]

    first = prompts(5)
    assert len(first) == 4 and all(p.startswith("a color") for p in first)
    assert prompts(5) == first
    assert prompts(6) != first or prompts(7) != first


def test_styles_apply_to_the_image_and_infotext_records_the_styled_prompt(studio):
    studio.prompts.styles.save("Cinematic", "cinematic still of {prompt}, film grain", "cartoon")
    request = ImageRequest(prompt="a cat", negative_prompt="text", steps=1, width=64, height=64, styles=["Cinematic"])
    generated = studio.images.generate(request).images[0]
    parsed = parse_infotext(read_infotext(generated.path))
    assert (parsed.prompt, parsed.negative_prompt) == ("cinematic still of a cat, film grain", "text, cartoon")
    assert "Template" not in parsed.params
    row = studio.images.list()[0]
    assert row["styles"] == ["Cinematic"] and row["prompt"] == "cinematic still of a cat, film grain"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"styles": ["Nope"]}, "no style 'Nope'"),
        ({"prompt": "a {red|blue", "dynamic_prompts": "random"}, "never closed"),
        ({"prompt": "a __missing__", "dynamic_prompts": "random"}, "no wildcard file for __missing__"),
        ({"prompt": "{a|b|c|d|e|f|g|h|i|j|k} {a|b|c|d|e|f|g|h|i|j|k}", "dynamic_prompts": "combinatorial"}, "at most"),
    ],
)
def test_bad_image_prompts_queue_nothing(studio, fields, words):
    request = ImageRequest(**{"prompt": "x", "steps": 1, "width": 64, "height": 64, **fields})
    with pytest.raises((InvalidRequest, NotFound), match=words):
        studio.images.submit(request)
    assert studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


def test_braces_stay_literal_without_dynamic_prompts(studio):
    generated = studio.images.generate(ImageRequest(prompt="a {red|blue} car", steps=1, width=64, height=64)).images[0]
    assert parse_infotext(read_infotext(generated.path)).prompt == "a {red|blue} car"


# -- expansion -----------------------------------------------------------------------------------------


def test_expansion_runs_the_shipped_template_through_the_model_and_keeps_no_chat(studio):
    expansion = studio.prompts.expand("a lighthouse in a storm", seed=3)
    _system, prompt = studio.templates.get("sd-expand", "en").render(idea="a lighthouse in a storm")
    # The echo engine cannot be held to JSON, so its answer (the message it was sent) is the prompt.
    assert expansion.prompt == prompt and expansion.negative_prompt == ""
    assert (expansion.model, expansion.template, expansion.structured) == ("echo", "sd-expand.en", False)
    assert expansion.seed == 3
    count = studio.db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
    assert count == 0


def test_a_chinese_idea_uses_the_chinese_template(studio):
    assert idea_language("一只在雨中的猫") == "zh" and idea_language("a cat") == "en"
    expansion = studio.prompts.expand("一只在雨中的猫")
    assert expansion.template == "sd-expand.zh" and "想法：一只在雨中的猫" in expansion.prompt
    assert studio.prompts.expand("a cat", language="zh").template == "sd-expand.zh"


@pytest.mark.parametrize(
    ("idea", "kwargs", "words"),
    [("  ", {}, "idea must not be empty"), ("x" * 2001, {}, "at most 2000"), ("cat", {"language": "fr"}, "en or zh")],
)
def test_bad_expansion_requests(studio, idea, kwargs, words):
    with pytest.raises(InvalidRequest, match=words):
        studio.prompts.expand(idea, **kwargs)


def test_expansion_answer_parsing():
    from aigc_studio.services.prompt_craft import _read_answer

    answer = json.dumps({"prompt": " a cat, detailed ", "negative_prompt": "blurry"})
    assert _read_answer(answer, True, "m") == ("a cat, detailed", "blurry")
    with pytest.raises(InvalidRequest, match="not the JSON asked for"):
        _read_answer('{"prompt": "a ca', True, "m")
    with pytest.raises(InvalidRequest, match="without a prompt"):
        _read_answer('{"text": "x"}', True, "m")


def test_prompt_craft_errors_read_in_chinese(studio):
    from aigc_studio.ui.messages import message_text

    with pytest.raises(InvalidRequest) as refused:
        studio.prompts.preview("a __gone__", "random")
    assert message_text("zh-CN", refused.value.message).startswith("template：找不到通配符 __gone__ 的文件")
    with pytest.raises(NotFound) as missing:
        studio.prompts.styles.get("Nope")
    assert message_text("zh-CN", missing.value.message).startswith("没有风格 'Nope'；现有风格：")
