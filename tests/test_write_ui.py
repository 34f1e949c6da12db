"""The Write tab in a real Chromium against a live studio on loopback (echo text model, slowed down so the
sections can be seen streaming in). Screenshots of the tab in English and Chinese go to the test's tmp
dir (and test-artifacts/)."""

from __future__ import annotations

import io
import re

import docx
import httpx
import pytest

from aigc_studio.services.article_spec import ArticleSpec

from .conftest import studio_server
from .ui_helpers import open_tab, screenshot, set_number, studio_pages, wait_until

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with studio_server(tmp_path_factory.mktemp("write-ui-home"), model="echo", image_model="plain") as live:
        live.studio.registry.engine("echo").delay = 0.01  # each section takes a second or two: visible
        yield live


@pytest.fixture
def page(browser, server):
    with studio_pages(browser, server.url, height=1300) as open_page:
        yield open_page()


def value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def status(page) -> str:
    return page.locator("#write-status").inner_text()


def test_write_from_a_title_regenerate_a_section_and_export(page, server, tmp_path):
    open_tab(page, "Write")
    page.fill("#write-title textarea", "Local AI studios")
    set_number(page, "write-sections", 3)
    set_number(page, "write-length", 300)
    page.click("#write-run")
    # The outline arrives, then the sections one by one: the bar says which, the editor grows.
    seen: list[tuple[str, int]] = []

    def streaming() -> bool:
        bar = page.locator("#write-progress").inner_text()
        seen.append((bar, value(page, "write-editor").count("\n## ")))
        return "Section 2/3" in bar and seen[-1][1] >= 1

    wait_until(streaming, timeout=60, what="section 2 streaming in")
    wait_until(lambda: "Done: saved as version 2" in status(page), timeout=60, what="the article")
    bars = [bar for bar, _ in seen]
    assert any("Section 1/3" in b for b in bars) and any("Section 2/3" in b for b in bars)
    doc_id = server.studio.writing.list()[0]["id"]
    stored = server.studio.writing.get(doc_id)["version"]
    assert value(page, "write-editor") == stored["content"]
    assert value(page, "write-outline").splitlines() == stored["outline"] and len(stored["outline"]) == 3
    screenshot_en = tmp_path / "write-en.png"
    page.screenshot(path=str(screenshot_en), full_page=True)
    screenshot(page, "write-en")

    set_number(page, "write-regen-n", 2)
    page.fill("#write-regen-instruction textarea", "Name three tools.")
    page.click("#write-regen")
    wait_until(lambda: "version 3" in status(page), timeout=60, what="the regenerated section")
    after = server.studio.writing.get(doc_id)["version"]
    assert after["reason"] == "section 2 regenerated"
    assert "Name three tools." in after["sections"][1]["text"]
    assert after["sections"][0]["text"] == stored["sections"][0]["text"]
    assert "Name three tools." in value(page, "write-editor")
    assert "v3 · section 2 regenerated" in page.locator("#write-versions input").input_value()

    page.locator("#write-format label", has_text="docx").click()
    page.click("#write-export")
    wait_until(lambda: "Exported Local-AI-studios.docx" in status(page), what="the export")
    link = page.locator("#write-file a").first
    wait_until(lambda: (link.get_attribute("href") or "").endswith(".docx"), what="the download link")
    href = link.get_attribute("href")
    word = httpx.get(href if href.startswith("http") else server.url + href)
    assert word.status_code == 200
    headings = [p.text for p in docx.Document(io.BytesIO(word.content)).paragraphs if p.style.name == "Heading 2"]
    assert headings == stored["outline"]

    # The language warning: SmolLM2 writes English only.
    page.locator("#write-lang label", has_text="中文").click()
    page.locator("#write-model input").click()
    page.get_by_role("option", name="smollm2-135m", exact=True).click()
    fit = page.locator("#write-fit")
    wait_until(lambda: "aigc models pull qwen2.5-1.5b-instruct" in fit.inner_text(), what="the language warning")
    assert "writes English only, not Chinese" in fit.inner_text()

    page.locator("#aigc-lang label", has_text="简体中文").click()
    wait_until(lambda: "写作" in page.get_by_role("tab").all_inner_texts(), what="Chinese labels")
    assert page.get_by_role("button", name="撰写文章").count() == 1
    fit = page.locator("#write-fit")
    wait_until(lambda: "只会写英文" in fit.inner_text(), what="the warning in Chinese")
    assert "aigc models pull qwen2.5-1.5b-instruct" in fit.inner_text()
    screenshot_zh = tmp_path / "write-zh.png"
    page.screenshot(path=str(screenshot_zh), full_page=True)
    screenshot(page, "write-zh")
    assert screenshot_en.stat().st_size > 10_000 and screenshot_zh.stat().st_size > 10_000
    print(f"screenshots: {screenshot_en} {screenshot_zh}")


def test_stop_keeps_the_sections_and_continue_finishes(page, server):
    open_tab(page, "Write")
    # "New" clears the form from the server: wait for it to land, or it can blank the title filled after it.
    page.fill("#write-title textarea", "to be cleared")
    page.click("#write-new")
    wait_until(lambda: value(page, "write-title") == "", what="the form cleared by New")
    page.fill("#write-title textarea", "Stopping midway")
    page.fill("#write-outline textarea", "First part\nSecond part\nThird part")
    set_number(page, "write-length", 600)
    echo = server.studio.registry.engine("echo")
    echo.delay = 0.05  # section 2 takes several seconds: the Stop lands inside it even on a loaded machine
    try:
        page.click("#write-run")
        wait_until(lambda: "Section 2/3" in page.locator("#write-progress").inner_text(), timeout=60, what="section 2")
        page.click("#write-stop")
        wait_until(lambda: "Stopped: 1 of 3 sections written" in status(page), timeout=30, what="the stop")
    finally:
        echo.delay = 0.01
    doc = server.studio.writing.list()[0]
    version = server.studio.writing.get(doc["id"])["version"]
    assert [s["state"] for s in version["sections"]][:1] == ["done"] and version["sections"][2]["state"] == "pending"
    page.click("#write-continue")
    wait_until(lambda: "Done: saved as version" in status(page), timeout=60, what="the rest")
    final = server.studio.writing.get(doc["id"])["version"]
    assert final["reason"].startswith("continued: sections") and all(s["state"] == "done" for s in final["sections"])
    assert final["sections"][0]["text"] == version["sections"][0]["text"]


def test_the_bar_says_how_far_a_long_section_prompt_has_been_read(page, server):
    open_tab(page, "Write")
    page.fill("#write-title textarea", "Reading first")
    page.fill("#write-outline textarea", "The only part")
    echo = server.studio.registry.engine("echo")
    echo.prompt_step, echo.delay = 10, 0.3  # the section's prompt is read 10 words a step, 0.3 s each
    try:
        page.click("#write-run")
        bar = page.locator("#write-progress")
        reading = r"Section 1/1: The only part · Reading the prompt: [1-9]\d* of \d+ tokens"
        wait_until(
            lambda: re.search(reading, bar.inner_text()),
            timeout=60,
            what="the reading shown in the bar",
        )
        page.click("#write-stop")
        wait_until(lambda: "Stopped" in status(page), timeout=30, what="the stop")
    finally:
        echo.prompt_step, echo.delay = 0, 0.01
    assert "Reading the prompt" not in bar.inner_text()


def test_the_editing_panel_under_the_article_polishes_a_selection(page, server):
    open_tab(page, "Write")
    text = "# Tea\n\nThis are a bad sentence.\n\nLast line stays."
    start, end = text.index("This"), text.index("\n\nLast")
    page.locator("#write-editor textarea").fill(text)
    page.evaluate(
        "([s, e]) => { const a = document.querySelector('#write-editor textarea'); a.focus();"
        " a.setSelectionRange(s, e); }",
        [start, end],
    )
    page.click("#edit-run")
    answer = page.locator("#edit-answer textarea")
    expected = server.studio.templates.get("polish.en").render({"text": text[start:end]})[1]
    wait_until(lambda: answer.input_value() == expected, timeout=60, what="the polished selection")
    assert value(page, "write-editor") == text  # nothing changes before Accept
    page.click("#edit-accept")
    wait_until(lambda: value(page, "write-editor") != text, what="the accepted text in the editor")
    assert value(page, "write-editor") == text[:start] + expected + text[end:]


def test_an_article_is_found_in_the_gallery_by_its_text(page, server):
    spec = {"title": "Gallery of teapots", "sections": 1, "length": 100}
    run = server.studio.writing.start(ArticleSpec(**spec), headings=["Porcelain"])
    list(run)
    stored = server.studio.writing.get(run.document_id)["version"]
    open_tab(page, "Gallery / History")
    search = page.locator("#gal-search textarea, #gal-search input").first
    search.fill("Porcelain")
    search.press("Enter")
    table = page.locator("#gal-table")
    wait_until(lambda: "Gallery of teapots" in table.inner_text(), what="the article in the gallery")
    assert "Article" in table.inner_text()
    page.locator("#gal-table [data-testid='cell-0-3']").click()
    wait_until(lambda: "Gallery of teapots" in page.locator("#gal-detail-title").inner_text(), what="opened")
    assert stored["sections"][0]["text"][:40] in page.locator("#gal-detail-text").inner_text()
    page.click("#gal-reuse")
    wait_until(lambda: "Write tab" in page.locator("#gal-note").inner_text(), what="where an article is opened")
