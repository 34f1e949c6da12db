"""The template format: parsing, strict variables, rendering, round trip, and the store's precedence."""

from __future__ import annotations

import pytest

from aigc_studio.errors import NotFound
from aigc_studio.services.templates import BUILTIN_DIR, TemplateError, TemplateStore, parse_template

GOOD = '''
name = "blog"
language = "en"
kind = "article"
title = "Blog post"
system = "You write for {audience}."
prompt = """Write about {topic}. Use {{braces}} literally."""

[variables.topic]
description = "what it is about"
[variables.audience]
default = "everyone"
'''


def test_render_fills_defaults_and_keeps_values_verbatim():
    t = parse_template(GOOD, "blog.en.toml")
    system, prompt = t.render(topic="sets {a|b} and {x}")
    assert system == "You write for everyone."
    assert prompt == "Write about sets {a|b} and {x}. Use {braces} literally."
    assert t.render({"topic": "T", "audience": "kids"})[0] == "You write for kids."


def test_render_names_an_unknown_and_a_missing_variable():
    t = parse_template(GOOD, "blog.en.toml")
    with pytest.raises(TemplateError, match=r"no variable 'tone'.*topic, audience"):
        t.render(topic="T", tone="dry")
    with pytest.raises(TemplateError, match="needs a value for 'topic'"):
        t.render()


@pytest.mark.parametrize(
    "prompt, message",
    [
        ("Write about {topic", "expected '}'"),
        ("Write about topic}", "Single '}'"),
        ("Write about {topic} for {reader}", r"\{reader\} used but not declared"),
        ("Write about {topic.title}", "not a variable name"),
        ("Write about {0}", "not a variable name"),
        ("Write about {topic!r}", "not a variable name"),
        ("Write about it", "audience, topic declared but never used"),
    ],
)
def test_a_bad_template_is_refused_with_what_is_wrong(prompt, message):
    text = GOOD.replace('"""Write about {topic}. Use {{braces}} literally."""', repr(prompt).replace("'", '"'))
    text = text.replace('system = "You write for {audience}."\n', "")
    with pytest.raises(TemplateError, match=message):
        parse_template(text, "t.toml")


def test_round_trip_through_toml():
    t = parse_template(GOOD, "blog.en.toml")
    assert parse_template(t.to_toml(), "again") == t


def test_a_user_template_overrides_the_shipped_one_and_removing_it_restores_it(tmp_path):
    store = TemplateStore(tmp_path)
    shipped = store.get("polish", "en")
    assert shipped.source == "builtin"
    (tmp_path / "polish.en.toml").write_text(shipped.to_toml().replace("Polish the text", "Polish, gently, the text"))
    mine = store.get("polish.en")
    assert mine.source == "user" and "gently" in mine.prompt
    listed = {t.key: t for t in store.all()}
    assert listed["polish.en"].overrides_builtin and listed["polish.zh"].source == "builtin"
    (tmp_path / "polish.en.toml").unlink()
    assert store.get("polish").source == "builtin"
    with pytest.raises(NotFound, match=r"no template 'nope\.en'; there are: .*polish\.en"):
        store.get("nope")


def test_every_shipped_template_parses_and_is_named_by_its_file():
    templates = TemplateStore(BUILTIN_DIR / "no-user-dir").all()
    assert {"polish.en", "polish.zh"} <= {t.key for t in templates}
