"""`aigc templates ...` and `aigc rewrite` as a user types them (echo model: it answers with its prompt)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from aigc_studio.cli.main import cli


def aigc(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_templates_list_show_add_run_export_import_rm(aigc_home, tmp_path):
    listing = aigc("templates", "list")
    assert listing.exit_code == 0
    assert "blog-post.zh             general  shipped   博客文章" in listing.output.splitlines()
    assert "polish.en" in aigc("templates", "list", "--kind", "edit", "--lang", "en").output
    assert "blog-post" not in aigc("templates", "list", "--kind", "edit").output
    shown = aigc("templates", "show", "tone.zh")
    assert 'name = "tone"' in shown.output and "[variables.tone]" in shown.output

    added = aigc(
        "templates",
        "add",
        "--name",
        "greet",
        "--prompt",
        "Say hello to {who} in {style}.",
        "--var",
        "who=whom to greet",
        "--var",
        "style=how",
        "--default",
        "style=verse",
    )
    assert added.output == "added greet.en (user)\n"
    ran = aigc("templates", "run", "greet.en", "--var", "who=the sea", "-m", "echo")
    assert ran.exit_code == 0 and ran.output == "Say hello to the sea in verse.\n"
    rows = json.loads(aigc("templates", "list", "--json").output)
    assert {k: v for k, v in next(r for r in rows if r["key"] == "greet.en").items() if k != "variables"} == {
        "key": "greet.en",
        "kind": "general",
        "source": "user",
        "title": "",
    }

    out = tmp_path / "greet.en.toml"
    aigc("templates", "export", "greet.en", "-o", str(out))
    again = aigc("templates", "import", str(out))
    assert again.exit_code == 1 and "a user template 'greet.en' already exists" in again.output
    assert aigc("templates", "import", str(out), "--replace").output == "imported greet.en (user)\n"
    assert aigc("templates", "rm", "greet.en").output == "deleted greet.en\n"
    assert "greet.en" not in aigc("templates", "list").output


def test_templates_bad_input_is_one_line_naming_the_problem(aigc_home, tmp_path):
    r = aigc("templates", "add", "--name", "x", "--prompt", "About {topic} and {tone}", "--var", "topic=t")
    assert (
        r.exit_code == 1
        and r.output.strip() == "Error: template 'x.en': {tone} used but not declared under [variables]"
    )
    r = aigc("templates", "add", "--name", "x", "--prompt", "About {topic", "--var", "topic=t")
    assert r.exit_code == 1 and "expected '}' before end of string" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nlanguage = "en"\nkind = \n')
    r = aigc("templates", "import", str(bad))
    assert r.exit_code == 1 and f"{bad}: not a TOML file" in r.output and "line 3" in r.output
    r = aigc("templates", "rm", "polish.zh")
    assert r.exit_code == 1 and "'polish.zh' is a shipped template and cannot be deleted" in r.output
    r = aigc("templates", "run", "blog-post.en", "--var", "topic=AI", "--var", "mood=x", "-m", "echo")
    assert r.exit_code == 1 and "template 'blog-post.en' has no variable 'mood'" in r.output
    r = aigc("templates", "run", "blog-post.en", "-m", "echo")
    assert r.exit_code == 1 and "needs a value for 'topic'" in r.output


def test_templates_edit_a_shipped_one_overrides_it_and_rm_restores_it(aigc_home, tmp_path):
    shipped = aigc("templates", "show", "polish.en").output
    mine = tmp_path / "polish.en.toml"
    mine.write_text(shipped.replace("Polish the text below", "Gently polish the text below"))
    assert aigc("templates", "edit", "polish.en", str(mine)).output == "saved polish.en (override)\n"
    assert "override" in next(line for line in aigc("templates", "list").output.splitlines() if "polish.en" in line)
    assert aigc("templates", "rm", "polish.en").output == "deleted polish.en; the shipped template is back\n"
    assert aigc("templates", "show", "polish.en").output == shipped


def test_rewrite_streams_and_writes_nothing_unless_asked(aigc_home, tmp_path):
    src = tmp_path / "a.md"
    src.write_text("Keep this. Fix thsi. Keep that.")
    r = aigc("rewrite", "--op", "polish", str(src), "--selection", "11:20", "-m", "echo", "--diff")
    assert r.exit_code == 0
    assert r.output.startswith("Polish the text below") and "\n\nFix thsi.\n" in r.output
    assert "--- original\n+++ edited\n@@ -1 +1,3 @@\n-Keep this. Fix thsi. Keep that.\n+Keep this. Polish" in r.output
    assert src.read_text() == "Keep this. Fix thsi. Keep that."  # FILE untouched without --in-place

    out = tmp_path / "b.md"
    r = aigc("rewrite", "--op", "continue", str(src), "-m", "echo", "-o", str(out))
    assert r.exit_code == 0 and out.read_text().startswith("Keep this. Fix thsi. Keep that. Continue the text")
    r = aigc("rewrite", "--op", "shorten", str(src), "-m", "echo", "--in-place", "--max-tokens", "3")
    assert src.read_text() == "Shorten the text"  # the whole text replaced by the (cut-short) answer
    assert "cut short" in r.output


def test_rewrite_from_stdin_lists_and_refusals(aigc_home):
    r = aigc("rewrite", "--op", "keywords", "-", "-m", "echo", input="猫、狗")
    assert r.exit_code == 0 and r.output.splitlines()[-1] == "猫、狗"
    r = aigc("rewrite", "--op", "translate", "-", "-m", "echo", input="你好")
    assert "请把下面的文字翻译成英文" in r.output
    r = aigc("rewrite", "--op", "polish", "-", "--selection", "2:50", "-m", "echo", input="short")
    assert r.exit_code == 1 and "the selection 2:50 is outside the text, which has 5 characters" in r.output
    r = aigc("rewrite", "--op", "polish", "-", "--selection", "two", "-m", "echo", input="short")
    assert r.exit_code == 2 and "--selection takes START:END" in r.output
    r = aigc("rewrite", "--op", "polish", "-", "--in-place", "-m", "echo", input="short")
    assert r.exit_code == 2 and "--in-place needs a FILE" in r.output
    r = aigc("rewrite", "--op", "titles", "-", "--diff", "-m", "echo", input="short")
    assert r.exit_code == 2 and "titles gives a list" in r.output
    r = aigc("rewrite", "--op", "polish", "-", "--tone", "dry", "-m", "echo", input="short")
    assert r.exit_code == 1 and "tone is only for the operation 'tone'" in r.output


def test_rewrite_says_when_the_model_does_not_write_the_texts_language(aigc_home, smollm_path):
    r = aigc("rewrite", "--op", "polish", "-", "--max-tokens", "1", input="今天天气很好。")
    assert "note: the model 'smollm2-135m' writes English only, and this text is in Chinese" in r.output
    assert "aigc models pull qwen2.5-0.5b-instruct" in r.output
