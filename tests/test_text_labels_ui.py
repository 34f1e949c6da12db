"""The AI label on generated text in the web UI, in a real Chromium against a live studio (echo model):
the badge beside generated items in both UI languages, and the label line on what is copied from them
(Gradio's copy buttons, a selection copied with Ctrl+C), read back from the clipboard."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from aigc_studio.api.app import create_app

from .conftest import LiveServer, make_studio
from .ui_helpers import choose, off_loopback, open_tab, screenshot, wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("label-ui-home")
    old_home = os.environ.get("AIGC_HOME")
    studio = make_studio(home, model="echo", image_model="plain")
    with LiveServer(create_app(studio)) as live:
        deadline = time.time() + 30
        while httpx.get(live.url + "/health").status_code != 200:
            assert time.time() < deadline, "the studio did not become healthy"
            time.sleep(0.05)
        live.studio = studio
        yield live
    studio.close()
    if old_home is not None:
        os.environ["AIGC_HOME"] = old_home


@pytest.fixture
def page(browser, server):
    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#chat-input textarea")
    yield page
    context.close()
    assert off_loopback(requested) == []


def clipboard(page) -> str:
    return page.evaluate("() => navigator.clipboard.readText()")


def badge(page, selector: str, pseudo: str = "::before") -> str:
    return page.evaluate(
        "([s, p]) => { const el = document.querySelector(s); return el ? getComputedStyle(el, p).content : null; }",
        [selector, pseudo],
    )


def chat(page, words: str) -> None:
    page.fill("#chat-input textarea", words)
    page.click("#chat-send")
    wait_until(
        lambda: (
            page.locator("#chat-log .bot-row").count() and words in page.locator("#chat-log .bot-row").last.inner_text()
        ),
        timeout=30,
        what="the answer",
    )


def switch_language(page, label: str, lang: str) -> None:
    page.locator("#aigc-lang label", has_text=label).click()
    wait_until(lambda: page.evaluate("() => document.documentElement.lang") == lang, what=f"page language {lang}")


def test_chat_answers_carry_a_badge_in_the_pages_language(page):
    chat(page, "hello labels")
    assert badge(page, "#chat-log .bot-row .message-content") == '"AI-generated"'
    assert badge(page, "#chat-log .user-row .message-content") == "none"  # the user's own words: no badge
    switch_language(page, "简体中文", "zh-CN")
    assert badge(page, "#chat-log .bot-row .message-content") == '"AI生成"'
    screenshot(page, "text-label-chat-badge-zh")


def test_copy_button_and_selection_copy_add_the_label_line(page, server):
    chat(page, "copy me please")
    bot = page.locator("#chat-log .bot-row").last
    bot.hover()
    page.locator("#chat-log .message-buttons-left button[aria-label='Copy message']").last.click()
    wait_until(lambda: clipboard(page).startswith("copy me please"), what="the copied answer")
    assert clipboard(page) == "copy me please\n\n本文由人工智能生成"
    # The user's own message copies as typed.
    page.locator("#chat-log .user-row").last.hover()
    page.locator("#chat-log .message-buttons-right button[aria-label='Copy message']").last.click()
    wait_until(lambda: clipboard(page) == "copy me please", what="the copied question")
    # "Copy conversation" holds answers too: the line goes once, at the end.
    page.locator("#chat-log button[aria-label='Copy conversation']").click()
    wait_until(lambda: clipboard(page) != "copy me please", what="the copied conversation")
    conversation = clipboard(page)
    assert (
        conversation.endswith("copy me please\n\n本文由人工智能生成") and conversation.count("本文由人工智能生成") == 1
    )
    # A selection inside the answer, copied with Ctrl+C.
    page.evaluate(
        """() => { const el = [...document.querySelectorAll('#chat-log .bot-row .message-content p')].pop();
        const range = document.createRange(); range.selectNodeContents(el);
        const s = document.getSelection(); s.removeAllRanges(); s.addRange(range); }"""
    )
    page.keyboard.press("Control+c")
    wait_until(lambda: clipboard(page) == "copy me please\n\n本文由人工智能生成", what="the labeled selection")
    # The Write tab's article: its copy button, and the badge on it.
    open_tab(page, "Write")
    page.fill("#write-editor textarea", "# Tea\n\nGreen tea is calm.")
    assert badge(page, "#write-editor [data-testid='block-info']", "::after") == '"AI-generated"'
    page.locator("#write-editor button[aria-label='Copy'], #write-editor button[title='Copy']").first.click()
    wait_until(lambda: clipboard(page) == "# Tea\n\nGreen tea is calm.\n\n本文由人工智能生成", what="the article")


def test_settings_decide_the_line_and_its_place(page, server):
    config = server.studio.config.values
    try:
        config.update(label_language="en", label_text_position="start")
        page.reload()
        page.wait_for_selector("#chat-input textarea")
        chat(page, "start here")
        page.locator("#chat-log .message-buttons-left button[aria-label='Copy message']").last.click()
        wait_until(lambda: clipboard(page) == "Generated by AI\n\nstart here", what="the line at the start")
        config.update(label_text=False)
        page.reload()
        page.wait_for_selector("#chat-input textarea")
        chat(page, "no line now")
        page.locator("#chat-log .message-buttons-left button[aria-label='Copy message']").last.click()
        wait_until(lambda: clipboard(page) == "no line now", what="the answer without a line")
    finally:
        config.update(label_language="zh", label_text_position="end", label_text=True)


def test_code_compare_and_arena_answers_carry_the_badge(page):
    open_tab(page, "Code")
    page.fill("#code-input textarea", "print the sum")
    page.click("#code-send")
    wait_until(lambda: page.locator("#code-log .bot-row").count(), timeout=30, what="the code answer")
    assert badge(page, "#code-log .bot-row .message-content") == '"AI-generated"'

    open_tab(page, "Compare")
    choose(page, "compare-models", "echo")
    choose(page, "compare-models", "echo2")
    page.fill("#compare-prompt textarea", "alpha beta gamma")
    page.click("#compare-run")
    wait_until(lambda: "Saved as cmp-" in page.locator("#compare-status").inner_text(), timeout=30, what="saved")
    assert badge(page, "#cmp-pane-0 h4", "::after") == badge(page, "#cmp-pane-1 h4", "::after") == '"AI-generated"'

    open_tab(page, "Arena")
    page.locator("#arena-models input").click()
    page.get_by_role("option", name="echo", exact=True).click()
    page.get_by_role("option", name="echo2", exact=True).click()
    page.keyboard.press("Escape")
    assert badge(page, "#arena-a") == "none"  # nothing generated yet: no badge
    page.fill("#arena-prompt textarea", "one two three")
    page.click("#arena-battle")
    wait_until(lambda: "three" in page.locator("#arena-b").inner_text(), timeout=30, what="both answers")
    switch_language(page, "简体中文", "zh-CN")
    assert badge(page, "#arena-a") == badge(page, "#arena-b") == '"AI生成"'
    assert badge(page, "#cmp-pane-0 h4", "::after") == '"AI生成"'
    screenshot(page, "text-label-arena-badge-zh")
