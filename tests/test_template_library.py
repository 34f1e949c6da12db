"""The template library: shipped templates, a user's templates created, edited, deleted, exported and
imported, every bad input refused with what is wrong, and a template run with the echo engine."""

from __future__ import annotations

import pytest

from aigc_studio.config import load_config
from aigc_studio.errors import NotFound
from aigc_studio.services.template_library import ShippedTemplate, TemplateExists, source_of, template_from_fields
from aigc_studio.services.templates import BUILTIN_DIR, TemplateError, TemplateStore
from aigc_studio.studio import Studio

GENERAL = ["blog-post", "tech-explainer", "product-copy", "summary", "code-review", "sd-prompt"]
EDIT_OPS = ["continue", "polish", "expand", "shorten", "summarize", "translate", "tone", "titles", "keywords"]

MINE = '''name = "haiku"
language = "en"
kind = "general"
title = "Haiku"
prompt = """Write a haiku about {subject}."""

[variables.subject]
description = "what it is about"
'''


@pytest.fixture
def studio(aigc_home):
    studio = Studio(load_config(model="echo"))
    yield studio
    studio.close()


def test_every_shipped_template_parses_and_renders_in_both_languages():
    shipped = {t.key: t for t in TemplateStore(BUILTIN_DIR / "no-user-dir").all()}
    for name in GENERAL + EDIT_OPS:
        for language in ("en", "zh"):
            template = shipped[f"{name}.{language}"]
            values = {v.name: f"<{v.name}>" for v in template.variables if v.required}
            system, prompt = template.render(values)
            assert all(f"<{name}>" in prompt for name in values), template.key
            assert "{" not in prompt and (system is None or "{" not in system), template.key
            assert template.title and template.description, template.key
    assert {shipped[f"{op}.zh"].kind for op in EDIT_OPS} == {"edit"}
    assert shipped["sd-prompt.en"].kind == "prompt" and shipped["blog-post.zh"].kind == "general"
    assert shipped["blog-post.zh"].title == "博客文章" and "为{audience}" in shipped["blog-post.zh"].prompt


def test_create_edit_export_import_delete_round_trip(studio):
    lib = studio.templates
    created = lib.save(MINE)
    assert (created.key, source_of(created)) == ("haiku.en", "user")
    assert (studio.config.home / "templates" / "haiku.en.toml").read_text() == MINE
    with pytest.raises(TemplateExists, match=r"a user template 'haiku\.en' already exists; replace it"):
        lib.save(MINE)
    edited = lib.save(MINE.replace("a haiku", "two haiku"), key="haiku.en", replace=True)
    assert edited.prompt == "Write two haiku about {subject}."
    name, text = lib.export("haiku.en")
    assert name == "haiku.en.toml" and "two haiku" in text
    assert lib.delete("haiku.en").restored is False
    with pytest.raises(NotFound, match=r"no template 'haiku\.en'; there are: .*polish\.en"):
        lib.get("haiku.en")
    lib.save(text)  # import the exported file
    assert lib.get("haiku.en").prompt == edited.prompt


def test_a_template_from_fields_is_checked_like_a_file(studio):
    text = template_from_fields(
        name="pitch",
        language="zh",
        kind="general",
        prompt="为{product}写一句广告语，语气{tone}。",
        variables={"product": "产品", "tone": {"description": "语气", "default": "轻松"}},
    )
    saved = studio.templates.save(text)
    assert saved.render(product="茶")[1] == "为茶写一句广告语，语气轻松。"
    with pytest.raises(TemplateError, match=r"\{tone\} used but not declared"):
        studio.templates.save(template_from_fields(name="x", language="en", kind="general", prompt="{tone}"))


def test_a_shipped_template_cannot_be_deleted_but_an_override_can_restoring_it(studio):
    lib = studio.templates
    with pytest.raises(ShippedTemplate, match=r"'polish\.en' is a shipped template and cannot be deleted"):
        lib.delete("polish.en")
    _, shipped = lib.export("polish.en")
    override = lib.save(shipped.replace("Polish the text below", "Gently polish the text below"), key="polish.en")
    assert source_of(override) == "override"
    assert source_of({t.key: t for t in lib.all()}["polish.en"]) == "override"
    assert source_of(lib.get("polish", "en")) == "override"  # asked by name and language alike
    assert lib.delete("polish.en").restored is True
    assert source_of(lib.get("polish.en")) == "shipped" and "Gently" not in lib.get("polish.en").prompt
    assert lib.get("polish", "zh").title == "润色"  # TemplateStore's way of asking works too


@pytest.mark.parametrize(
    "text, message",
    [
        (MINE.replace("{subject}", "{subjet}"), r"\{subjet\} used but not declared"),
        (MINE.replace("{subject}", "{subject"), r"expected '\}' before end of string"),
        (MINE.replace("{subject}.", "{subject}}."), r"Single '\}' encountered"),
        (MINE.replace('kind = "general"', 'kind = "general'), r"not a TOML file: .*line 3"),
        (MINE.replace('kind = "general"', 'kind = "poem"'), "kind must be one of article, edit, prompt, code, general"),
        (MINE.replace('name = "haiku"', 'name = "my haiku"'), "name 'my haiku' must be 1-64 letters"),
    ],
)
def test_a_bad_import_is_refused_with_what_is_wrong_and_nothing_is_written(studio, text, message):
    with pytest.raises(TemplateError, match=message):
        studio.templates.save(text, where="haiku.en.toml")
    assert not (studio.config.home / "templates" / "haiku.en.toml").exists()


def test_an_edit_must_keep_its_key_and_the_key_must_be_one(studio):
    studio.templates.save(MINE)
    with pytest.raises(TemplateError, match=r"holds 'limerick\.en' but is saved as 'haiku\.en'"):
        studio.templates.save(MINE.replace('"haiku"', '"limerick"'), key="haiku.en", replace=True)
    with pytest.raises(NotFound, match=r"no template 'nope\.en'"):
        studio.templates.save(MINE, key="nope.en", replace=True)
    with pytest.raises(TemplateError, match=r"a template key is NAME\.LANGUAGE .*got 'haiku'"):
        studio.templates.get("haiku")
    with pytest.raises(TemplateError, match="kind must be one of"):
        studio.templates.all(kind="poem")


def test_a_broken_user_file_is_reported_not_hiding_the_rest(studio):
    folder = studio.config.home / "templates"
    folder.mkdir(parents=True)
    (folder / "broken.en.toml").write_text('name = "broken"\nlanguage = \n')
    keys = {t.key for t in studio.templates.all()}
    assert "polish.en" in keys and "broken.en" not in keys
    [problem] = studio.templates.problems()
    assert "broken.en.toml: not a TOML file" in problem and "line 2" in problem
    assert studio.templates.delete("broken.en").restored is False


def test_run_renders_and_streams_a_one_off_generation(studio):
    studio.templates.save(MINE)
    prepared = studio.templates.prepare_run("haiku.en", {"subject": "the sea"})
    chunks = [c.text for c in studio.chat.start(prepared)]
    assert "".join(chunks) == "Write a haiku about the sea."
    assert studio.history.latest_id() is None  # a one-off generation: no conversation in chat history
    with pytest.raises(TemplateError, match=r"template 'haiku\.en' has no variable 'topic'; its variables: subject"):
        studio.templates.prepare_run("haiku.en", {"subject": "x", "topic": "y"})
    with pytest.raises(TemplateError, match=r"template 'haiku\.en' needs a value for 'subject'"):
        studio.templates.prepare_run("haiku.en", {})


def test_any_text_a_form_sends_round_trips_through_the_file(studio):
    odd = 'tab\there, DEL \x7f, NUL \x00, quote " and backslash \\ and 中文'
    text = template_from_fields(
        name="odd", language="en", kind="general", title=odd, prompt=odd + " {v}", variables={"v": odd}
    )
    saved = studio.templates.save(text)
    assert saved.title == odd and saved.prompt == odd + " {v}" and saved.variables[0].description == odd
    with pytest.raises(TemplateError, match=r"not a TOML file: .*Unicode scalar value"):
        studio.templates.save(template_from_fields(name="bad", language="en", kind="general", prompt="\ud800"))
