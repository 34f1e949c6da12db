"""The Images tab's prompt tools in a real Chromium against a live studio: expand a prompt with the text
model, apply a saved style, generate with it on a tiny real SD model, preview and generate dynamic
prompts; screenshots in English and Chinese under test-artifacts/."""

from __future__ import annotations

import pytest

from aigc_studio.images.infotext import parse_infotext, read_infotext

from .test_web_ui import generate, open_page, server  # noqa: F401  (fixtures and a gesture)
from .ui_helpers import choose, open_tab, screenshot, wait_until

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]


@pytest.fixture(scope="module")
def crafted(server, tmp_path_factory):  # noqa: F811
    """The server with a saved style, a wildcard file and a tiny real SD model."""
    from .tiny_models import build_tiny_sd

    studio = server.studio
    studio.prompts.styles.save("Oil", "oil painting, {prompt}, impasto", "blurry")
    folder = studio.prompts.dynamic.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "colors.txt").write_text("red\nblue\n", encoding="utf-8")
    tiny = build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))
    studio.registry.add(tiny.folder, model_id="tiny-sd")
    yield server
    studio.registry.remove("tiny-sd")


def test_expand_a_prompt_style_it_and_generate_on_a_tiny_model(open_page, crafted):  # noqa: F811
    studio = crafted.studio
    page = open_page()  # the style list is read when the page opens
    open_tab(page, "Images")
    page.fill("#imagerequest-prompt textarea", "a lighthouse in a storm")
    page.click("#img-expand")
    expand_note = page.locator("#img-expand-note")
    wait_until(lambda: "Expanded by echo" in expand_note.inner_text(), timeout=20, what="the expansion")
    assert "template sd-expand.en" in expand_note.inner_text()
    expanded = page.locator("#imagerequest-prompt textarea").input_value()
    # The echo engine answers with the message it was sent: the shipped template, filled with the idea.
    assert expanded == studio.templates.get("sd-expand", "en").render(idea="a lighthouse in a storm")[1]

    choose(page, "img-styles", "Oil")
    choose(page, "imagerequest-model", "tiny-sd")
    generate(page, expanded, seed=21, size=(64, 64), steps=2)
    progress = page.locator("#img-progress")
    wait_until(lambda: "Done" in progress.inner_text(), timeout=90, what="the image from the tiny model")
    record = studio.images.list(limit=1)[0]
    assert record["model"] == "tiny-sd" and record["styles"] == ["Oil"]
    assert record["prompt"] == f"oil painting, {expanded}, impasto"
    parsed = parse_infotext(read_infotext(record["path"]))
    assert parsed.prompt == record["prompt"] and parsed.negative_prompt == "blurry"
    assert "Idea: a lighthouse in a storm" in page.locator("#img-infotext textarea").input_value()
    screenshot(page, "images-prompt-tools-en")

    # "Apply to prompt", as A1111's button: the style goes into the boxes and leaves the selection.
    page.fill("#imagerequest-prompt textarea", "a cat")
    page.fill("#imagerequest-negative_prompt textarea", "")
    page.click("#img-apply-styles")  # "Oil" is still chosen from the generation
    wait_until(
        lambda: page.locator("#imagerequest-prompt textarea").input_value() == "oil painting, a cat, impasto",
        what="the styled prompt",
    )
    assert page.locator("#imagerequest-negative_prompt textarea").input_value() == "blurry"
    assert "Oil" not in page.locator("#img-styles").inner_text()


def test_dynamic_prompts_preview_and_generate(open_page, crafted):  # noqa: F811
    studio = crafted.studio
    page = open_page()
    open_tab(page, "Images")
    choose(page, "imagerequest-model", "plain")
    page.fill("#imagerequest-prompt textarea", "a __colors__ {car|boat}")
    page.locator("#img-dynamic-box").get_by_text("Dynamic prompts / wildcards").click()
    page.locator("#img-dynamic label", has_text="Every combination").click()
    page.click("#img-dynamic-preview")
    box = page.locator("#img-dynamic-prompts textarea")
    wait_until(lambda: box.input_value().count("\n") == 3, what="the preview")
    assert sorted(box.input_value().split("\n")) == ["a blue boat", "a blue car", "a red boat", "a red car"]
    assert "__colors__" in page.locator("#img-wildcards").inner_text()

    generate(page, "a __colors__ {car|boat}", seed=7, size=(64, 64), steps=1)
    wait_until(lambda: "Done: 4 image(s)" in page.locator("#img-progress").inner_text(), what="four images")
    records = studio.images.list(limit=4)
    assert sorted(r["prompt"] for r in records) == ["a blue boat", "a blue car", "a red boat", "a red car"]
    assert {r["prompt_template"] for r in records} == {"a __colors__ {car|boat}"}
    assert "Template: a __colors__ {car|boat}" in page.locator("#img-infotext textarea").input_value()

    # A template that cannot be read: one message by the action, nothing queued.
    jobs = studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    page.fill("#imagerequest-prompt textarea", "a {car|boat")
    page.click("#img-generate")
    wait_until(lambda: "unbalanced braces" in page.locator("#img-progress").inner_text(), what="the refusal")
    assert studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == jobs


def test_prompt_tools_in_chinese(open_page, crafted):  # noqa: F811
    page = open_page(locale="zh-CN")
    open_tab(page, "图像")
    wait_until(lambda: "扩写" in page.locator("#img-expand").inner_text(), what="the Chinese label")
    page.click("#img-expand")  # the prompt box is empty
    wait_until(lambda: "请先在提示词框中写" in page.locator("#img-expand-note").inner_text(), what="the message")
    page.fill("#imagerequest-prompt textarea", "暴风雨中的灯塔")
    page.click("#img-expand")
    wait_until(lambda: "由 echo 扩写" in page.locator("#img-expand-note").inner_text(), timeout=20, what="expansion")
    assert "sd-expand.zh" in page.locator("#img-expand-note").inner_text()
    page.locator("#img-dynamic-box").get_by_text("动态提示词 / 通配符").click()
    page.fill("#imagerequest-prompt textarea", "一辆 {红色|蓝色 的车")
    page.click("#img-dynamic-preview")
    note = page.locator("#img-dynamic-note")
    wait_until(lambda: "花括号不成对" in note.inner_text(), what="the refusal in Chinese")
    screenshot(page, "images-prompt-tools-zh")
