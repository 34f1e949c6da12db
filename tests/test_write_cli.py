"""`aigc write` and `aigc docs` as a user types them (echo engine; SmolLM2 for the language warning)."""

from __future__ import annotations

import io
import re

import click
import docx
import pytest
from click.testing import CliRunner

from aigc_studio.cli.main import cli


def aigc(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_write_streams_progress_to_stderr_and_the_article_to_stdout(aigc_home):
    r = aigc("write", "Local studios", "-m", "echo", "--length", "200", "--heading", "One", "--heading", "Two")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("# Local studios\n") and "\n## One\n" in r.stdout and "\n## Two\n" in r.stdout
    assert "[section 1/2] One" in r.stderr and "[section 2/2] Two" in r.stderr
    assert 'Write section 2 of 2, "Two"' in r.stderr  # the text as it streams (echo repeats its prompt)
    doc_id = r.stderr.split("Outline (")[1].split(")")[0]
    listing = aigc("docs", "list")
    assert listing.stdout.startswith(doc_id) and "v2   Local studios" in listing.stdout
    versions = aigc("docs", "versions", doc_id).stdout.splitlines()
    assert versions[0].endswith("outline") and versions[1].endswith("article written")


def test_outline_only_then_edit_continue_regenerate_export(aigc_home, tmp_path):
    r = aigc("write", "Tea", "-m", "echo", "--sections", "2", "--outline-only")
    assert r.exit_code == 0 and r.stdout == ""
    doc_id = r.stderr.split("Outline (")[1].split(")")[0]
    assert f"aigc docs continue {doc_id}" in r.stderr
    edited = aigc("docs", "outline", doc_id, "Green tea", "Black tea")
    assert "1. Green tea  (to write)" in edited.stdout
    out = tmp_path / "tea.md"
    done = aigc("docs", "continue", doc_id, "-q", "-o", str(out))
    assert done.exit_code == 0 and "## Black tea" in out.read_text()
    regen = aigc("docs", "regenerate", doc_id, "2", "-i", "Mention oolong.", "-q")
    assert "Mention oolong." in regen.stdout.split("## Black tea")[1]
    assert aigc("docs", "versions", doc_id).stdout.splitlines()[-1].endswith("section 2 regenerated")
    word = tmp_path / "tea.docx"
    assert aigc("docs", "export", doc_id, "-f", "docx", "-o", str(word)).stdout == f"wrote {word}\n"
    heads = [p.text for p in docx.Document(io.BytesIO(word.read_bytes())).paragraphs if p.style.name == "Heading 2"]
    assert heads == ["Green tea", "Black tea"]
    assert "Tea" in aigc("docs", "list", "--search", "oolong").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--length", "0"], "length: must be 100-20000 (words in English, characters in Chinese), got 0"),
        (["--length", "10000000"], "length: must be 100-20000"),
        (["--sections", "21"], "sections: must be 1-20, got 21"),
    ],
)
def test_bad_options_are_refused_with_the_range(aigc_home, args, message):
    r = aigc("write", "Tea", "-m", "echo", *args)
    assert r.exit_code == 2 and message in r.stderr
    assert aigc("docs", "list").stdout == ""


def test_empty_title_is_refused(aigc_home):
    r = aigc("write", "  ", "-m", "echo")
    assert r.exit_code == 2 and "title: must not be empty: give a title or keywords" in r.stderr


def test_ctrl_c_keeps_what_was_written_and_says_how_to_continue(aigc_home, monkeypatch):
    real_secho = click.secho

    def interrupted(message=None, *args, **kwargs):
        if isinstance(message, str) and message.startswith("\n[section 2/"):
            raise KeyboardInterrupt
        return real_secho(message, *args, **kwargs)

    monkeypatch.setattr(click, "secho", interrupted)
    r = aigc("write", "Tea", "-m", "echo", "--length", "200", "--heading", "A", "--heading", "B", "-q")
    assert r.exit_code == 1
    doc_id = r.stderr.split("Outline (")[1].split(")")[0]
    assert f"[stopped] what was written is kept in {doc_id}; continue with: aigc docs continue {doc_id}" in r.stderr
    assert "## A\n" in r.stdout and "## B" not in r.stdout  # what was written, on stdout all the same
    monkeypatch.setattr(click, "secho", real_secho)
    versions = aigc("docs", "versions", doc_id).stdout.splitlines()
    assert versions[-1].endswith("article written, stopped in section 2 of 2")
    aigc("docs", "continue", doc_id, "-q")
    assert aigc("docs", "versions", doc_id).stdout.splitlines()[-1].endswith("continued: section 2 written")


@pytest.mark.parametrize("terminal", [True, False])
def test_a_long_prompt_being_read_shows_on_a_terminal_only(aigc_home, capsys, monkeypatch, terminal):
    import sys

    from aigc_studio.cli.write import _render
    from aigc_studio.config import load_config
    from aigc_studio.services.writing import ArticleSpec
    from aigc_studio.studio import Studio

    studio = Studio(load_config(model="echo"))
    try:
        studio.registry.engine("echo").prompt_step = 40  # every prompt here is longer: read in steps
        monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
        run = studio.writing.start(ArticleSpec(title="Tea", length=200), headings=["Green", "Black"])
        assert _render(run, quiet=True)
    finally:
        studio.close()
    err = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().err)  # colours, which a terminal gets
    if not terminal:
        assert "reading" not in err
        return
    # Section 2's prompt is read after its heading is printed, and the line is cleared before what follows.
    after = err.split("[section 2/2] Black")[1]
    assert after.startswith("\n\r\033[K(reading section 2's prompt: 0 of ")
    assert "\r\033[K(reading section 2's prompt: 40 of " in after
    last = after.rindex("(reading ")
    assert after.index("tokens)\r\033[K", last) > last  # the last report, cleared before what comes next
    assert "(reading the prompt: 0 of " in err.split("[abstract]")[0].split("[section 2/2]")[1]
