"""The labels of generated images in a real Chromium: the Images tab's result and the Gallery / History
table and detail show the AI-generated badge, the NSFW score and action, and the labels applied, in
English and Chinese; an image made before labels shows "not labeled"."""

from __future__ import annotations

import httpx
import pytest

from aigc_studio.contracts import ImageRequest

from .conftest import studio_server
from .ui_helpers import open_tab, screenshot, set_number, studio_pages, wait_until

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Threshold 0: every picture reaches it, so the action shows.
    settings = {"model": "echo", "image_model": "plain", "nsfw_threshold": 0, "nsfw_action": "blur"}
    with studio_server(tmp_path_factory.mktemp("labels-ui-home"), **settings) as live:
        yield live


@pytest.fixture
def open_page(browser, server):
    with studio_pages(browser, server.url, height=1200) as opener:
        yield opener


def test_fresh_and_kept_images_show_their_labels_in_both_languages(open_page, server):
    # An image from before labels: its record has none.
    old = server.studio.images.generate(ImageRequest(prompt="an old picture", steps=1, width=64, height=64))
    with server.studio.db.tx() as conn:
        conn.execute(
            "UPDATE images SET labels = NULL, nsfw_score = NULL, nsfw_action = NULL, watermark = NULL WHERE id = ?",
            (old.images[0].id,),
        )
    page = open_page()
    open_tab(page, "Images")
    page.fill("#imagerequest-prompt textarea", "a labeled lighthouse")
    set_number(page, "imagerequest-steps", 1)
    set_number(page, "imagerequest-width", 256)
    set_number(page, "imagerequest-height", 256)
    page.click("#img-generate")
    labels = page.locator("#img-labels")
    wait_until(lambda: "AI-generated" in labels.inner_text(), timeout=60, what="the fresh image's labels")
    shown = labels.inner_text()
    assert "· blurred" in shown and "NSFW" in shown
    assert "visible mark “AI生成”, bottom right" in shown and "invisible watermark, payload 0x" in shown
    assert "AIGC metadata (TC260, IPTC), producer AIGC-Studio" in shown and "C2PA content credentials" in shown
    newest = server.studio.images.list()[0]
    assert f"NSFW {newest['nsfw_score'] * 100:.0f}% · blurred" in shown

    open_tab(page, "Gallery / History")
    table = page.locator("#gal-table")
    wait_until(lambda: "a labeled lighthouse" in table.inner_text(), what="the gallery row")
    text = table.inner_text()
    assert "Label" in text and "NSFW" in text and "AI-generated" in text and "not labeled" in text
    assert "· blurred" in text
    page.locator("#gal-table [data-testid='cell-0-5']").click()  # the newest: the labeled one
    detail = page.locator("#gal-detail-labels")
    wait_until(lambda: "C2PA content credentials" in detail.inner_text(), what="the opened image's labels")
    assert "visible mark “AI生成”" in detail.inner_text()
    screenshot(page, "gallery-labels")

    page = open_page("zh-CN")
    open_tab(page, "作品 / 历史")
    page.click("#gal-refresh")
    table = page.locator("#gal-table")
    wait_until(lambda: "a labeled lighthouse" in table.inner_text(), what="the gallery in Chinese")
    text = table.inner_text()
    assert "标识" in text and "AI生成" in text and "未标识" in text and "已模糊" in text
    page.locator("#gal-table [data-testid='cell-0-5']").click()
    detail = page.locator("#gal-detail-labels")
    wait_until(lambda: "C2PA 内容凭证" in detail.inner_text(), what="the labels in Chinese")
    assert "显式标识“AI生成”，右下角" in detail.inner_text() and "隐式水印" in detail.inner_text()
    screenshot(page, "gallery-labels-zh")


def test_generated_text_in_the_gallery_shows_the_ai_badge_in_both_languages(open_page, server):
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "a labeled answer"}]},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    # The label cell (column 3) of the row whose prompt cell (column 5) is the text's.
    script = """cells => {
        const prompt = cells.find(
            c => /^cell-\\d+-5$/.test(c.dataset.testid) && c.textContent.trim() === 'a labeled answer');
        if (!prompt) return null;
        const row = prompt.dataset.testid.split('-')[1];
        return cells.find(c => c.dataset.testid === `cell-${row}-3`)?.textContent.trim() ?? null;
    }"""
    for locale, badge in (("en-US", "AI-generated"), ("zh-CN", "AI生成")):
        page = open_page(locale)
        open_tab(page, "Gallery / History" if locale == "en-US" else "作品 / 历史")
        page.click("#gal-refresh")
        label = wait_until(
            lambda page=page: page.eval_on_selector_all("#gal-table [data-testid^='cell-']", script),
            what="the text's gallery row",
        )
        assert label == badge
