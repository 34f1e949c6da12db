"""The editing panel (ui/edit_tools.py) and the Templates section of Settings, in a real Chromium.

Until the Write tab exists on this branch, the panel is mounted in a small page this test builds: a
Textbox with elem_id "write-editor" (as the Write tab makes it) and the panel under it. The Templates
section is tested in the real app. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import time

import gradio as gr
import httpx
import pytest
from fastapi import FastAPI

from aigc_studio.api.app import create_app
from aigc_studio.ui import edit_tools
from aigc_studio.ui.common import UIContext
from aigc_studio.ui.i18n import I18N

from .conftest import LiveServer, make_studio
from .ui_helpers import choose, off_loopback, open_tab, screenshot, wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    home = tmp_path_factory.mktemp("edit-ui-home")
    old = os.environ.get("AIGC_HOME")
    studio = make_studio(home, model="echo", image_model="plain")
    yield studio
    studio.close()
    if old is not None:
        os.environ["AIGC_HOME"] = old


@pytest.fixture(scope="module")
def panel_page(studio):
    """A page with an editor and the operations panel under it, as the Write tab will have them."""
    ctx = UIContext(app=None, fixed_studio=studio)
    with gr.Blocks(title="edit panel") as blocks:
        editor = gr.Textbox(label="Document", lines=8, elem_id="write-editor")
        edit_tools.build(ctx, editor)
    app = FastAPI()
    gr.mount_gradio_app(app, blocks, path="/", i18n=I18N, ssr_mode=False, footer_links=[])
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="module")
def studio_server(studio):
    with LiveServer(create_app(studio)) as live:
        deadline = time.time() + 30
        while httpx.get(live.url + "/health").status_code != 200:
            assert time.time() < deadline
            time.sleep(0.05)
        yield live


@pytest.fixture
def open_page(browser):
    contexts, requested = [], []

    def opener(url: str, locale: str = "en-US", ready: str = "#write-editor textarea"):
        context = browser.new_context(locale=locale, viewport={"width": 1300, "height": 1000}, accept_downloads=True)
        context.on("request", lambda request: requested.append(request.url))
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(ready)
        return page

    yield opener
    for context in contexts:
        context.close()
    assert off_loopback(requested) == [], "the page reached beyond loopback"


def type_and_select(page, text: str, start: int, end: int) -> None:
    area = page.locator("#write-editor textarea")
    area.fill(text)
    page.evaluate(
        "([s, e]) => { const a = document.querySelector('#write-editor textarea'); a.focus();"
        " a.setSelectionRange(s, e); }",
        [start, end],
    )


def upload(page, path) -> None:
    with page.expect_file_chooser() as chooser:
        page.click("#tpl-import")
    chooser.value.set_files(str(path))


def editor_value(page) -> str:
    return page.locator("#write-editor textarea").input_value()


def note_text(page) -> str:
    return page.locator("#edit-note").inner_text()


def proposal(studio, op: str, language: str, **values) -> str:
    return studio.templates.get(f"{op}.{language}").render(values)[1]


def test_polish_a_selection_see_the_diff_and_accept_it(open_page, panel_page, studio):
    page = open_page(panel_page.url)
    text = "First line stays.\nThis are a bad sentence.\nLast line stays."
    start, end = text.index("This"), text.index("\nLast")
    type_and_select(page, text, start, end)
    studio.registry.engine("echo").delay = 0.01
    page.click("#edit-run")
    wait_until(lambda: "Accept" in note_text(page) or page.locator("#edit-diff ins").count(), what="the proposal")
    expected = proposal(studio, "polish", "en", text="This are a bad sentence.")
    assert page.locator("#edit-answer textarea").input_value() == expected
    inserted = page.locator("#edit-diff ins").all_inner_texts()
    assert "".join(inserted) == expected.removesuffix("This are a bad sentence.")
    assert page.locator("#edit-diff del").count() == 0
    assert editor_value(page) == text  # nothing changes before Accept
    screenshot(page, "edit-panel-diff-en")
    page.click("#edit-accept")
    wait_until(lambda: editor_value(page) != text, what="the accepted text in the editor")
    assert editor_value(page) == "First line stays.\n" + expected + "\nLast line stays."
    assert "Accepted" in note_text(page)
    assert not page.locator("#edit-accept").is_visible()


def test_no_selection_means_the_whole_text_and_lists_show_as_lists(open_page, panel_page, studio):
    page = open_page(panel_page.url)
    page.locator("#write-editor textarea").fill("Cats sleep a lot.")
    choose(page, "edit-op", "Extract keywords")
    page.click("#edit-run")
    wait_until(lambda: page.locator("#edit-diff li").count(), what="the keyword list")
    items = page.locator("#edit-diff li").all_inner_texts()
    assert items[-1] == "Cats sleep a lot." and len(items) == 2
    assert not page.locator("#edit-accept").is_visible() and editor_value(page) == "Cats sleep a lot."


def test_chinese_translate_shows_a_character_diff_and_reject_keeps_the_text(open_page, panel_page, studio):
    page = open_page(panel_page.url)
    text = "今天天气很好。我们去公园散步吧。"
    type_and_select(page, text, text.index("我们"), len(text))
    choose(page, "edit-op", "Translate")
    wait_until(lambda: page.locator("#edit-target").is_visible(), what="the target language choice")
    assert not page.locator("#edit-tone").is_visible()
    page.click("#edit-run")
    wait_until(lambda: page.locator("#edit-diff ins").count(), what="the proposal")
    expected = proposal(studio, "translate", "zh", text="我们去公园散步吧。", target="英文")
    assert page.locator("#edit-answer textarea").input_value() == expected
    assert page.locator("#edit-diff").inner_text().startswith("今天天气很好。")
    page.click("#edit-reject")
    wait_until(lambda: "Rejected" in note_text(page), what="the rejection")
    assert editor_value(page) == text and page.locator("#edit-diff ins").count() == 0


def test_stop_leaves_the_text_and_mistakes_are_one_message(open_page, panel_page, studio):
    page = open_page(panel_page.url)
    page.click("#edit-run")
    wait_until(lambda: "The editor is empty" in note_text(page), what="the empty-editor message")
    text = " ".join(f"word{i}" for i in range(80))
    page.locator("#write-editor textarea").fill(text)
    choose(page, "edit-op", "Change tone")
    wait_until(lambda: page.locator("#edit-tone").is_visible(), what="the tone box")
    page.click("#edit-run")
    wait_until(lambda: "needs the tone to write in" in note_text(page), what="the missing tone")
    page.fill("#edit-tone textarea", "friendly")
    studio.registry.engine("echo").delay = 0.1
    try:
        page.click("#edit-run")
        wait_until(lambda: "word3" in page.locator("#edit-answer textarea").input_value(), what="the answer to start")
        page.click("#edit-stop")
        wait_until(lambda: "Stopped" in note_text(page), timeout=20, what="the stop")
    finally:
        studio.registry.engine("echo").delay = 0.01
    assert editor_value(page) == text and not page.locator("#edit-accept").is_visible()
    assert "word79" not in page.locator("#edit-answer textarea").input_value()


def test_panel_in_chinese(open_page, panel_page, studio):
    page = open_page(panel_page.url, locale="zh-CN")
    page.evaluate("document.documentElement.lang = 'zh-CN'")
    wait_until(lambda: page.locator("#edit-run").inner_text() == "处理选中内容", what="the Chinese labels")
    text = "春天来了。花开了。"
    type_and_select(page, text, 0, len(text))
    page.click("#edit-run")
    wait_until(lambda: page.locator("#edit-diff ins").count(), what="the proposal")
    assert "完成" in note_text(page)
    screenshot(page, "edit-panel-diff-zh")


def test_settings_templates_list_edit_export_import_delete(open_page, studio_server, studio, tmp_path):
    page = open_page(studio_server.url + "/", ready="#chat-input textarea")
    open_tab(page, "Settings")
    table = page.locator("#tpl-table")
    wait_until(lambda: "continue.en" in table.inner_text(), timeout=30, what="the template list")
    assert "shipped" in table.inner_text()
    choose(page, "tpl-pick", "polish.en — Polish")
    wait_until(lambda: 'name = "polish"' in page.locator("#tpl-body textarea").input_value(), what="the file")
    assert "shipped" in page.locator("#tpl-source").inner_text()
    page.click("#tpl-delete")
    wait_until(lambda: "cannot be deleted" in page.locator("#tpl-note").inner_text(), what="the refusal")

    page.click("#tpl-new")
    wait_until(lambda: 'name = "my-template"' in page.locator("#tpl-body textarea").input_value(), what="a skeleton")
    body = page.locator("#tpl-body textarea")
    body.fill(body.input_value().replace("{topic}", "{topic"))
    page.click("#tpl-save")
    wait_until(lambda: "expected '}' before end of string" in page.locator("#tpl-note").inner_text(), what="the error")
    body.fill(body.input_value().replace("{topic", "{topic}").replace("my-template", "haiku"))
    page.click("#tpl-save")
    wait_until(lambda: "Saved haiku.en (yours)" in page.locator("#tpl-note").inner_text(), what="the save")
    wait_until(lambda: "haiku.en" in table.inner_text(), what="the new row, first")
    assert (studio.config.home / "templates" / "haiku.en.toml").is_file()
    screenshot(page, "settings-templates-en")

    with page.expect_download() as download:
        page.click("#tpl-export")
    saved = tmp_path / "haiku.en.toml"
    download.value.save_as(saved)
    assert saved.read_text() == (studio.config.home / "templates" / "haiku.en.toml").read_text()

    page.click("#tpl-delete")
    wait_until(lambda: "Deleted haiku.en." in page.locator("#tpl-note").inner_text(), what="the delete")
    assert not (studio.config.home / "templates" / "haiku.en.toml").exists()
    upload(page, saved)
    wait_until(lambda: "Imported haiku.en (yours)" in page.locator("#tpl-note").inner_text(), what="the import")
    upload(page, saved)
    wait_until(lambda: "already exists" in page.locator("#tpl-note").inner_text(), what="the clash")


def test_settings_templates_in_chinese(open_page, studio_server):
    page = open_page(studio_server.url + "/", locale="zh-CN", ready="#chat-input textarea")
    open_tab(page, "设置")
    table = page.locator("#tpl-table")
    wait_until(
        lambda: "内置" in table.inner_text() and "续写" in table.inner_text(), timeout=30, what="the list in Chinese"
    )
    page.click("#tpl-delete")
    wait_until(lambda: "请先选择一个模板" in page.locator("#tpl-note").inner_text(), what="the message in Chinese")
    screenshot(page, "settings-templates-zh")
