"""The Compare tab in a real Chromium against a live studio on loopback: two echo text models (slowed down
so the panes can be seen streaming side by side), a row of two plain image models, a saved comparison
reopened. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest

from .conftest import studio_server
from .test_compare import add_test_model
from .ui_helpers import choose, open_tab, screenshot, studio_pages, wait_until

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    def add_models(studio):
        add_test_model(studio, "echo3", "echo")
        add_test_model(studio, "plain3", "plain")

    home = tmp_path_factory.mktemp("compare-ui-home")
    with studio_server(home, model="echo", image_model="plain", prepare=add_models) as live:
        for model in ("echo", "echo3"):
            live.studio.registry.worker(model).engine.delay = 0.05  # a second or two per answer: visible
        yield live


@pytest.fixture
def page(browser, server):
    with studio_pages(browser, server.url, height=1200) as open_page:
        yield open_page()


def pane(page, index: int) -> str:
    return page.locator(f"#cmp-pane-{index}").inner_text()


def test_two_models_answer_side_by_side_with_their_timings_and_the_comparison_reopens(page, server):
    open_tab(page, "Compare")
    choose(page, "compare-models", "echo")
    choose(page, "compare-models", "echo3")
    words = " ".join(f"word{i}" for i in range(30))
    page.fill("#compare-prompt textarea", words)
    page.fill("#compare-max_tokens textarea", "20")
    page.click("#compare-run")
    # Both panes fill at the same time: part-way, each has some text and neither is finished.
    seen = wait_until(
        lambda: "word3" in pane(page, 0) and "word3" in pane(page, 1) and [pane(page, 0), pane(page, 1)],
        timeout=30,
        what="both panes streaming",
    )
    assert all("answering…" in text for text in seen)
    screenshot(page, "compare-text-streaming")
    wait_until(lambda: "Saved as cmp-" in page.locator("#compare-status").inner_text(), timeout=30, what="saved")
    for index, model in enumerate(["echo", "echo3"]):
        text = pane(page, index)
        assert text.startswith(model) and "word19" in text and "word20" not in text
        assert "· 20 tokens · length" in text and "tok/s" in text and "first token" in text
    # the panes sit side by side
    boxes = [page.locator(f"#cmp-pane-{i}").bounding_box() for i in (0, 1)]
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] and abs(boxes[0]["y"] - boxes[1]["y"]) < 2
    screenshot(page, "compare-text-done")
    saved_id = server.studio.compare.list()[0]["id"]

    # reopen it after the page is reloaded
    page.reload()
    page.wait_for_selector("#chat-input textarea")
    open_tab(page, "Compare")
    page.locator("#compare-saved input").click()
    page.get_by_role("option").filter(has_text=saved_id).click()
    page.click("#compare-open")
    wait_until(lambda: "word19" in pane(page, 1), timeout=15, what="the saved panes")
    assert "· 20 tokens · length" in pane(page, 0)
    assert page.locator("#compare-prompt textarea").input_value() == words


def test_an_image_row_shows_one_image_per_model(page, server):
    open_tab(page, "Compare")
    page.locator("#compare-mode").get_by_text("Images", exact=True).click()
    choose(page, "compare-image-models", "plain")
    choose(page, "compare-image-models", "plain3")
    page.fill("#compare-prompt textarea", "a lighthouse at dusk")
    page.fill("#compare-width textarea", "64")
    page.fill("#compare-height textarea", "64")
    page.fill("#compare-steps textarea", "2")
    page.click("#compare-run")
    wait_until(lambda: "Saved as cmp-" in page.locator("#compare-status").inner_text(), timeout=60, what="saved")
    images = page.locator("#compare-gallery img")
    wait_until(lambda: images.count() >= 2, timeout=15, what="two images")
    captions = page.locator("#compare-gallery").inner_text()
    assert "model: plain" in captions and "model: plain3" in captions
    wait_until(lambda: page.locator("#compare-grid img").count() == 1, timeout=15, what="the grid image")
    record = server.studio.compare.get(server.studio.compare.list()[0]["id"])
    assert [c["model"] for c in record["results"]] == ["plain", "plain3"]
    screenshot(page, "compare-image-row")


def test_too_few_models_is_said_by_the_button_in_chinese(page, server):
    page.locator("#aigc-lang").get_by_text("简体中文").click()
    open_tab(page, "对比")
    choose(page, "compare-models", "echo")
    page.fill("#compare-prompt textarea", "hello")
    page.click("#compare-run")
    try:
        wait_until(
            lambda: "对比需要 2-4 个模型，收到 1 个" in page.locator("#compare-status").inner_text(),
            timeout=15,
            what="the refusal",
        )
    finally:
        screenshot(page, "compare-refused-zh")


def test_a_grid_over_two_parameters_shows_every_cell_and_the_labelled_grid(page, server):
    open_tab(page, "Compare")
    page.locator("#compare-mode").get_by_text("Images", exact=True).click()
    choose(page, "compare-image-models", "plain")
    page.fill("#compare-prompt textarea", "a quiet harbour")
    for name, value in (("width", "64"), ("height", "64"), ("grid-x", "cfg=3,7"), ("grid-y", "steps=1,2")):
        page.fill(f"#compare-{name} textarea", value)
    page.click("#compare-run")
    wait_until(lambda: "Saved as cmp-" in page.locator("#compare-status").inner_text(), timeout=60, what="saved")
    wait_until(lambda: page.locator("#compare-gallery img").count() >= 4, timeout=15, what="four images")
    captions = page.locator("#compare-gallery").inner_text()
    for label in ("cfg_scale: 3.0, steps: 1", "cfg_scale: 7.0, steps: 1", "cfg_scale: 3.0, steps: 2"):
        assert label in captions
    wait_until(lambda: page.locator("#compare-grid img").count() == 1, timeout=15, what="the grid image")
    record = server.studio.compare.get(server.studio.compare.list()[0]["id"])
    assert record["request"]["axes"] == [
        {"name": "cfg_scale", "values": [3.0, 7.0]},
        {"name": "steps", "values": [1, 2]},
    ]
    screenshot(page, "compare-image-grid")
