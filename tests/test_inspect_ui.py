"""The Inspect tab in a real Chromium: drop a file, read the verdict, the summary and the JSON report;
a file it cannot read is one message by the drop; the tab in Chinese."""

from __future__ import annotations

import pytest

from aigc_studio.images.infotext import write_png

from .conftest import studio_server
from .test_inspect import INFOTEXT, picture
from .ui_helpers import open_tab, screenshot, studio_pages, wait_until

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with studio_server(tmp_path_factory.mktemp("inspect-ui-home"), model="echo", image_model="plain") as live:
        yield live


@pytest.fixture
def page(browser, server):
    with studio_pages(browser, server.url) as open_page:
        yield open_page()


def test_dropping_a_file_shows_the_verdict_the_summary_and_the_report(page, server, tmp_path):
    path = tmp_path / "fox.png"
    write_png(picture(), path, INFOTEXT)
    tabs = page.get_by_role("tab").all_inner_texts()
    assert tabs.index("Inspect") == tabs.index("Gallery / History") + 1
    open_tab(page, "Inspect")
    page.locator("#ins-file input[type=file]").set_input_files(str(path))
    verdict = page.locator("#ins-verdict")
    wait_until(lambda: "AI-generated (A1111 parameters)" in verdict.inner_text(), timeout=60, what="the verdict")
    summary = page.locator("#ins-summary textarea").input_value()
    expected = server.studio.inspector.inspect(path.read_bytes(), "fox.png")
    assert summary.splitlines()[0] == "AI-generated (A1111 parameters)"
    assert "  prompt: a red fox in snow" in summary and "TC260 AIGC label: absent" in summary
    shown = page.locator("#ins-json")
    wait_until(lambda: "a red fox in snow" in shown.inner_text(), what="the JSON report")
    assert "verdict" in shown.inner_text() and expected["verdict"] in shown.inner_text()
    screenshot(page, "inspect")

    bad = tmp_path / "notes.bin"
    bad.write_bytes(b"\x00\x01\x02")
    page.locator("#ins-file button[aria-label='Clear']").click()
    page.locator("#ins-file input[type=file]").set_input_files(str(bad))
    note = page.locator("#ins-note")
    wait_until(lambda: "notes.bin is not a file inspect can read" in note.inner_text(), timeout=30, what="the note")
    assert "send an image (PNG, JPEG or WebP" in note.inner_text()


def test_the_tab_speaks_chinese(browser, server):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#chat-input textarea")
    wait_until(lambda: "检测" in page.get_by_role("tab").all_inner_texts(), what="the Chinese tab label")
    open_tab(page, "检测")
    wait_until(lambda: "要检测的文件" in page.locator("#ins-file").inner_text(), what="the drop's label")
    assert "拖入图像" in page.locator("#ins-help").inner_text()
    context.close()
