"""The web UI in a real Chromium against a live studio on loopback (echo text model, plain image model).

Each browser test saves a screenshot under test-artifacts/, and every page's requests are recorded:
none may leave 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import re
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from aigc_studio.contracts import ImageRequest, TextOptions
from aigc_studio.errors import InvalidRequest
from aigc_studio.images.infotext import write_png
from aigc_studio.ui.app import build_blocks
from aigc_studio.ui.common import UIContext
from aigc_studio.ui.i18n import EN, FIELDS, ZH

from .conftest import make_studio, studio_server
from .remote_helpers import Scripted
from .test_sdapi import jobs, last_request
from .ui_helpers import (
    choose,
    off_loopback,
    open_tab,
    screenshot,
    set_number,
    studio_pages,
    type_number_until_kept,
    wait_until,
)

pytestmark = [
    pytest.mark.timeout(120),
    # Gradio's queue calls pandas APIs that pandas 3 deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with studio_server(tmp_path_factory.mktemp("ui-home"), model="echo", image_model="plain") as live:
        # Slow enough to watch the answer and the progress arrive; fast enough for the suite.
        live.studio.registry.engine("echo").delay = 0.04
        live.studio.registry.image_engine("plain").step_delay = 0.05
        yield live


@pytest.fixture
def open_page(browser, server):
    """open_page(locale="en-US") -> a page on the studio, its requests checked at the end."""
    with studio_pages(browser, server.url) as opener:
        yield opener


# -- without a browser -------------------------------------------------------------------------------


def test_every_label_exists_in_both_languages():
    assert set(EN) == set(ZH)
    assert all(EN[k].strip() and ZH[k].strip() for k in EN)
    assert set(FIELDS) >= {"steps", "sampler_name", "cfg_scale", "seed", "width", "temperature", "max_tokens"}


def test_widgets_take_limits_defaults_and_help_from_the_declarations(server):
    blocks = build_blocks(UIContext(app=None, fixed_studio=server.studio))
    by_id = {c.elem_id: c for c in blocks.blocks.values() if getattr(c, "elem_id", None)}
    for name in ("steps", "cfg_scale", "width", "height", "batch_size", "n_iter", "denoising_strength"):
        field = ImageRequest.model_fields[name]
        widget = by_id[f"imagerequest-{name}"]
        low = next(m.ge for m in field.metadata if hasattr(m, "ge"))
        high = next(m.le for m in field.metadata if hasattr(m, "le"))
        assert (widget.minimum, widget.maximum, widget.value) == (low, high, field.default), name
        assert EN[f"h_{name}"] == field.description
    seed = by_id["imagerequest-seed"]
    assert (seed.minimum, seed.maximum, seed.value) == (-1, 2**32 - 1, -1)
    temperature = by_id["textoptions-temperature"]
    assert (temperature.minimum, temperature.maximum, temperature.value) == (0, 2, None)
    assert EN["h_temperature"] == TextOptions.model_fields["temperature"].description


def test_the_apis_still_answer_beside_the_ui(server):
    for path in ("/health", "/v1/models", "/sdapi/v1/sd-models", "/api/images"):
        assert httpx.get(server.url + path).status_code == 200, path
    assert "gradio" in httpx.get(server.url + "/").text.lower()


# -- in Chromium -------------------------------------------------------------------------------------


def test_page_loads_in_under_3_seconds_and_stays_on_loopback(browser, server):
    def load() -> tuple[float, list[str]]:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        requested: list[str] = []
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        page.goto("about:blank")  # the browser's own start-up is not the page's load time
        assert httpx.get(server.url + "/health").status_code == 200
        started = time.perf_counter()
        page.goto(server.url + "/", wait_until="commit")
        # Loaded means usable: the input is there and the model list has arrived from the studio.
        page.wait_for_function(
            "document.querySelector('#chat-input textarea') &&"
            " document.querySelector('#chat-model input')?.value === 'echo'",
            polling=20,
        )
        elapsed = time.perf_counter() - started
        screenshot(page, "load")
        context.close()
        return elapsed, requested

    # A second load, in a fresh context (nothing cached), only when the first was slow: on a shared
    # 2-core machine one load can lose a few tenths to other work; a slow page is slow both times.
    times, requested = [], []
    for _ in range(2):
        elapsed, urls = load()
        times.append(elapsed)
        requested += urls
        if elapsed < 3.0:
            break
    assert min(times) < 3.0, f"the page took {' and '.join(f'{t:.2f} s' for t in times)}"
    assert off_loopback(requested) == []


@contextmanager
def echo_delay(server, seconds: float):
    """The echo model's pause before each word, for one stretch of a test (the fixture's is 0.04 s)."""
    engine = server.studio.registry.engine("echo")
    before, engine.delay = engine.delay, seconds
    try:
        yield
    finally:
        engine.delay = before


def test_chat_streams_an_answer_with_markdown_and_continues_the_conversation(open_page, server):
    page = open_page()
    question = "Streaming words arrive one by one:\n```python\nprint('hello')\n```"
    bot = page.locator("#chat-log .bot")
    seen = set()

    def answered():
        texts = bot.all_inner_texts()
        seen.add(texts[-1] if texts else "")
        return texts and "print('hello')" in texts[-1] and page.locator("#chat-status").inner_text().strip()

    with echo_delay(server, 0.15):  # slow enough to see the answer grow, even on a busy machine
        page.fill("#chat-input textarea", question)
        page.click("#chat-send")
        wait_until(answered, what="the streamed answer")
    partial = {s for s in seen if s and "print" not in s}
    assert partial, f"the answer arrived in one piece: {seen}"
    # Markdown: the fenced block is rendered as highlighted code, with a copy button per message.
    code = page.locator("#chat-log .bot pre code").first
    assert code.locator("span[class*='token']").count() >= 2, code.inner_html()
    assert page.locator("#chat-log button[aria-label='Copy message']").count() >= 2
    assert page.locator("#chat-conversations label", has_text="Streaming words arrive").count() == 1

    page.fill("#chat-input textarea", "And a second turn")
    page.locator("#chat-input textarea").press("Enter")
    wait_until(lambda: bot.count() == 2 and "second turn" in bot.nth(1).inner_text(), what="the second answer")
    conversations = server.studio.history.list()
    assert len(conversations) == 1 and conversations[0]["n_messages"] == 4 and conversations[0]["source"] == "ui"

    # 60 words at 0.2 s each: still streaming when Stop is clicked, however late a busy machine shows "word3"
    # (at the fixture's 0.04 s a slow page could show it after the answer had ended, and Stop with it).
    with echo_delay(server, 0.2):
        page.fill("#chat-input textarea", " ".join(f"word{i}" for i in range(60)))
        page.click("#chat-send")
        wait_until(lambda: bot.count() == 3 and "word3" in bot.nth(2).inner_text(), what="a long answer to start")
        page.click("#chat-stop")
        wait_until(lambda: "cancelled" in page.locator("#chat-status").inner_text(), what="the stop")
    assert "word59" not in bot.nth(2).inner_text()

    # Regenerate answers the last question again in the same conversation, in full this time.
    page.click("#chat-regenerate")
    wait_until(
        lambda: bot.count() == 3 and "word59" in bot.nth(2).inner_text(), timeout=20, what="the regenerated answer"
    )
    conversations = server.studio.history.list()
    assert len(conversations) == 1
    conv = server.studio.history.get(conversations[0]["id"])
    assert [m["superseded"] for m in conv["messages"] if m["role"] == "assistant"] == [0, 0, 1, 0]
    screenshot(page, "chat")


def generate(page, prompt: str, seed: int, size=(128, 96), steps: int = 12) -> None:
    page.fill("#imagerequest-prompt textarea", prompt)
    set_number(page, "imagerequest-steps", steps)
    set_number(page, "imagerequest-width", size[0])
    set_number(page, "imagerequest-height", size[1])
    set_number(page, "imagerequest-seed", seed)
    page.click("#img-generate")


def test_generate_an_image_and_find_it_in_the_gallery_with_its_parameters(open_page, server):
    page = open_page()
    open_tab(page, "Images")
    choose(page, "imagerequest-sampler_name", "DPM++ 2M")
    generate(page, "a red lighthouse at dusk", seed=1234, steps=20)
    progress = page.locator("#img-progress")
    wait_until(lambda: "Step" in progress.inner_text() and "ETA" in progress.inner_text(), what="progress")
    wait_until(lambda: "Done" in progress.inner_text(), what="the image")
    infotext = page.locator("#img-infotext textarea").input_value()
    assert "Seed: 1234" in infotext and "Size: 128x96" in infotext and "Sampler: DPM++ 2M" in infotext
    assert page.locator("#img-gallery img").count() >= 1
    screenshot(page, "images")

    # 🎲 sets -1; the gallery's "reuse" brings the recorded parameters back into the form.
    page.click("#img-seed-random")
    wait_until(lambda: page.locator("#imagerequest-seed input").input_value() == "-1", what="🎲")
    page.fill("#imagerequest-prompt textarea", "something else")
    open_tab(page, "Gallery / History")
    wait_until(lambda: page.locator("#gal-thumbs img").count() == 1, what="the gallery thumbnail")
    page.locator("#gal-table [data-testid='cell-0-3']").click()
    params = page.locator("#gal-detail-params")
    wait_until(lambda: "1234" in params.inner_text() and "DPM++ 2M" in params.inner_text(), what="parameters")
    assert page.locator("#gal-detail-image img").count() == 1
    screenshot(page, "gallery")
    page.click("#gal-reuse")
    wait_until(
        lambda: page.locator("#imagerequest-prompt textarea").input_value() == "a red lighthouse at dusk",
        what="reused prompt",
    )
    assert page.locator("#imagerequest-seed input").input_value() == "1234"
    assert page.locator("#imagerequest-sampler_name input").input_value() == "DPM++ 2M"


def test_paint_a_mask_and_inpaint(open_page, server):
    page = open_page()
    open_tab(page, "Images")
    generate(page, "a field of flowers", seed=99, size=(128, 128), steps=4)
    wait_until(lambda: "Done" in page.locator("#img-progress").inner_text(), what="the source image")
    source = server.studio.images.list(limit=1)[0]
    page.click("#img-to-inpaint")
    editor = page.locator("#img-mask")
    # Ready once it shows the image at its zoom instead of "Upload an image".
    wait_until(lambda: "%" in editor.inner_text() and "Upload" not in editor.inner_text(), what="the mask editor")
    canvas = editor.locator("canvas").first
    box = canvas.bounding_box()
    # A vertical stroke left of the centre (the editor centres the image in its canvas).
    x, cy = box["x"] + box["width"] / 2 - 0.25 * box["height"], box["y"] + box["height"] / 2
    page.mouse.move(x, cy - 0.3 * box["height"])
    page.mouse.down()
    page.mouse.move(x, cy + 0.3 * box["height"], steps=12)
    page.mouse.up()
    page.fill("#imagerequest-prompt textarea", "a red door")  # the same prompt and seed would redraw the same
    set_number(page, "imagerequest-denoising_strength", 1)
    set_number(page, "imagerequest-mask_blur", 0)
    page.click("#img-generate")
    wait_until(lambda: server.studio.images.list(limit=1)[0]["mode"] == "inpaint", what="the inpainted image")
    wait_until(lambda: "Done" in page.locator("#img-progress").inner_text(), what="the result shown")
    screenshot(page, "inpaint")
    result = server.studio.images.list(limit=1)[0]
    before = np.asarray(Image.open(source["path"]).convert("RGB"), dtype=int)
    after = np.asarray(Image.open(result["path"]).convert("RGB"), dtype=int)
    # The result is labeled as every image: the visible mark in its corner (left out here) and the
    # watermark's small amplitude everywhere (at most 28 summed over R, G and B, measured), so "changed"
    # means more than that.
    changed = np.abs(after - before).sum(axis=2) > 40
    left, top, right, bottom = result["labels"]["visible"]["box"]
    changed[top:bottom, left:right] = False
    assert changed[32:96, :64].mean() > 0.3, "the painted stroke was not repainted"
    assert not changed[:, 96:].any(), "pixels outside the mask changed"

    # A1111's inpaint options: resize mode, mask mode, inpaint area and its padding reach the request.
    page.locator("#imagerequest-resize_mode label", has_text="Crop and resize").click()
    page.locator("#imagerequest-inpainting_mask_invert label", has_text="Inpaint not masked").click()
    page.locator("#imagerequest-inpaint_full_res label", has_text="Only masked").click()
    set_number(page, "imagerequest-inpaint_full_res_padding", 16)
    page.click("#img-generate")
    wait_until(lambda: server.studio.images.list(limit=1)[0]["id"] != result["id"], what="the second inpaint")
    params = server.studio.images.list(limit=1)[0]["params"]
    sent = {
        k: params[k] for k in ("resize_mode", "inpainting_mask_invert", "inpaint_full_res", "inpaint_full_res_padding")
    }
    assert sent == {
        "resize_mode": 1,
        "inpainting_mask_invert": 1,
        "inpaint_full_res": True,
        "inpaint_full_res_padding": 16,
    }
    assert params["mode"] == "inpaint"
    screenshot(page, "inpaint-options")

    # The result goes on to an instruction edit the same way.
    page.click("#img-to-edit")
    page.fill("#imagerequest-prompt textarea", "make it snow")
    wait_until(lambda: page.locator("#img-edit img").count() >= 1, what="the image to edit")
    page.click("#img-generate")
    wait_until(lambda: server.studio.images.list(limit=1)[0]["mode"] == "edit", what="the edited image")


def test_png_info_shows_the_parameters_and_sends_them_to_txt2img(open_page, server, tmp_path):
    infotext = (
        "a castle in the clouds, (watercolor:1.2)\nNegative prompt: blurry\nSteps: 7, Sampler: DPM++ 2M, "
        "Schedule type: Karras, CFG scale: 4.5, Seed: 777, Size: 320x192, Model: plain, Hires upscale: 1.5, "
        "Hires steps: 3, Hires upscaler: Latent (nearest), Denoising strength: 0.4, NGMS: 2.5, NGMS all steps: True, "
        "Version: v1.10.1"
    )
    png = tmp_path / "a1111.png"
    write_png(Image.new("RGB", (64, 64), "white"), png, infotext)
    page = open_page()
    open_tab(page, "Images")
    page.fill("#imagerequest-prompt textarea", "my own prompt")
    page.get_by_role("tab", name="PNG info").click()
    page.locator("#img-pnginfo input[type=file]").set_input_files(str(png))
    wait_until(lambda: "Steps: 7" in page.locator("#png-text textarea").input_value(), what="the infotext")
    # Shown, not applied: the form keeps what the user had until they send it.
    time.sleep(0.5)
    assert page.locator("#imagerequest-prompt textarea").input_value() == "my own prompt"
    assert page.locator("#imagerequest-seed input").input_value() == "-1"
    screenshot(page, "pnginfo")
    page.click("#png-to-txt2img")
    form = {
        "#imagerequest-prompt textarea": "a castle in the clouds, (watercolor:1.2)",
        "#imagerequest-negative_prompt textarea": "blurry",
        "#imagerequest-steps input[type=number]": "7",
        "#imagerequest-cfg_scale input[type=number]": "4.5",
        "#imagerequest-seed input": "777",
        "#imagerequest-width input[type=number]": "320",
        "#imagerequest-height input[type=number]": "192",
        "#imagerequest-sampler_name input": "DPM++ 2M",
        "#imagerequest-scheduler input": "Karras",
        "#imagerequest-hr_scale input[type=number]": "1.5",
        "#imagerequest-hr_second_pass_steps input[type=number]": "3",
        "#imagerequest-hires_denoising_strength input[type=number]": "0.4",
        "#imagerequest-s_min_uncond input[type=number]": "2.5",
    }
    wait_until(lambda: page.locator("#imagerequest-seed input").input_value() == "777", what="the form")
    assert page.get_by_role("tab", name="txt2img", exact=True).get_attribute("aria-selected") == "true"
    page.locator("#img-hires").get_by_text("Hires. fix").click()
    assert page.locator("#imagerequest-enable_hr input").is_checked()
    assert page.locator("#imagerequest-hr_upscaler input").input_value() == "Latent (nearest)"
    page.locator("#img-ngms").get_by_text("Skip the negative prompt late").click()
    assert {sel: page.locator(sel).input_value() for sel in form} == form
    assert page.locator("#imagerequest-s_min_uncond_all input").is_checked()
    # Generating sends them: the queued request holds A1111's negative guidance minimum sigma.
    before = jobs(server)
    page.click("#img-generate")
    wait_until(lambda: jobs(server) > before, what="the job")
    queued = last_request(server)
    assert (queued["s_min_uncond"], queued["s_min_uncond_all"]) == (2.5, True)


def test_language_follows_the_browser_and_switches(open_page):
    page = open_page(locale="zh-CN")
    tabs = page.get_by_role("tab")
    wait_until(lambda: "对话" in tabs.all_inner_texts(), what="Chinese labels")
    # The selector shows the language in use, and the page's data has arrived.
    page.wait_for_selector("#aigc-lang input[value='zh-CN']:checked")
    page.wait_for_function("document.querySelector('#chat-model input')?.value === 'echo'")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.get_by_role("button", name="发送").count() == 1
    screenshot(page, "language-zh")
    page.locator("#aigc-lang label", has_text="English").click()
    wait_until(lambda: "Chat" in tabs.all_inner_texts(), what="English labels")
    assert page.get_by_role("button", name="Send").count() == 1
    page.reload()
    page.wait_for_selector("#chat-input textarea")
    wait_until(lambda: "Chat" in page.get_by_role("tab").all_inner_texts(), what="the saved choice")
    screenshot(page, "language-en")


def test_models_tab_adds_a_remote_model_and_keeps_no_key_in_the_page(open_page, server):
    scripted = Scripted()
    try:
        page = open_page()
        open_tab(page, "Models")
        page.locator("#models-remote-section").get_by_text("Add a remote model").click()
        fields = {"name": "scripted-remote", "url": scripted.url, "model": "nope", "key": "sk-ui-secret"}
        for field, value in fields.items():
            page.fill(f"#models-remote-{field} textarea, #models-remote-{field} input", value)
        page.click("#models-remote-add")
        note = page.locator("#models-remote-note")
        wait_until(lambda: "does not list a model 'nope'; it lists: scripted" in note.inner_text(), what="the refusal")
        page.fill("#models-remote-model textarea, #models-remote-model input", "scripted")
        page.click("#models-remote-add")
        wait_until(lambda: f"Added scripted-remote: {scripted.url} (scripted)." in note.inner_text(), what="added")
        table = page.locator("#models-table")
        wait_until(lambda: "scripted-remote" in table.inner_text(), what="the remote model in the table")
        assert f"remote {scripted.url} (scripted)" in table.inner_text()
        assert page.locator("#models-remote-key input").input_value() == ""
        assert scripted.requests[-1][0]["Authorization"] == "Bearer sk-ui-secret"
        assert server.studio.registry.keys.get("scripted-remote") == "sk-ui-secret"
        assert "sk-ui-secret" not in page.content()
    finally:
        server.studio.registry.remove("scripted-remote")
        scripted.close()


def test_models_tab_lists_and_adds_a_local_model_and_settings_show_the_outputs(open_page, server, tmp_path):
    page = open_page()
    open_tab(page, "Models")
    table = page.locator("#models-table")
    wait_until(lambda: "plain" in table.inner_text() and "echo" in table.inner_text(), what="the model table")
    assert "Apache-2.0" in table.inner_text()
    gguf = tmp_path / "tiny-chat.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    page.fill("#models-path textarea, #models-path input", str(gguf))
    page.click("#models-add")
    wait_until(lambda: "tiny-chat" in table.inner_text(), what="the added model")
    # Its A1111-style hash (first 10 hex of the file's sha256) and size are shown.
    assert hashlib.sha256(gguf.read_bytes()).hexdigest()[:10] in table.inner_text()
    assert server.studio.registry.resolve("tiny-chat").path == str(gguf)
    screenshot(page, "models")
    open_tab(page, "Settings")
    outputs = page.locator("#settings-outputs textarea, #settings-outputs input").first
    # The tab is built when first opened (ui/app.py lazy_tab); its values arrive right after.
    wait_until(lambda: outputs.input_value() == str(server.studio.config.outputs_dir), what="the outputs folder")
    screenshot(page, "settings")


def test_models_tab_pulls_a_catalog_model_with_progress(open_page, server, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from .fakehub import FakeHub

    repo = tmp_path / "hub" / "qwen"
    repo.mkdir(parents=True)
    (repo / "qwen2.5-0.5b-instruct-q4_k_m.gguf").write_bytes(b"GGUF" + bytes(3_000_000))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # several chunks, so progress moves
    with FakeHub({"Qwen/Qwen2.5-0.5B-Instruct-GGUF": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        page = open_page()
        open_tab(page, "Models")
        page.locator("#models-pull-section").get_by_text("Pull a model from the catalog").click()
        page.locator("#models-pull-pick input").click()
        page.get_by_role("option", name=re.compile(r"^qwen2\.5-0\.5b-instruct \(text")).click()
        page.click("#models-pull-button")
        progress = page.locator("#models-pull-progress")
        wait_until(lambda: "is ready" in progress.inner_text(), timeout=60, what="the pull to finish")
        table = page.locator("#models-table")
        wait_until(lambda: "qwen2.5-0.5b-instruct" in table.inner_text(), what="the pulled model in the table")
        screenshot(page, "models-pull")
    pulled = server.studio.registry.resolve("qwen2.5-0.5b-instruct")
    assert pulled.kind == "text" and pulled.path.startswith(str(server.studio.config.models_dir))


# -- a new user's path, item by item (issue 7) -------------------------------------------------------


def no_error_badges(page) -> bool:
    """Gradio's "Error" badge (over every output of a failed event) or an error toast."""
    return page.get_by_text("Error", exact=True).count() == 0 and page.locator(".toast-body").count() == 0


def test_chat_says_how_far_a_long_prompt_has_been_read_until_the_answer_starts(open_page, server):
    page = open_page()
    engine = server.studio.registry.engine("echo")
    status = page.locator("#chat-status")
    seen = set()

    def answered():
        seen.add(status.inner_text().strip())
        texts = page.locator("#chat-log .bot").all_inner_texts()
        return texts and "twenty" in texts[-1]

    engine.prompt_step = 4  # read in steps of 4 words, one every 0.3 s
    try:
        with echo_delay(server, 0.3):
            page.fill("#chat-input textarea", "A prompt of many words, read in steps before the answer: twenty")
            page.click("#chat-send")
            wait_until(answered, what="the answer")
    finally:
        engine.prompt_step = 0
    assert any(s.startswith("Reading the prompt:") and "tokens" in s for s in seen), seen
    wait_until(lambda: "Reading the prompt" not in status.inner_text(), what="the reading note to go")


def test_a_message_sent_while_an_answer_streams_waits_in_the_box(open_page, server):
    with echo_delay(server, 0.1):  # 100 words: 10 s of streaming, however slow the machine
        page = open_page()
        bot = page.locator("#chat-log .bot")
        first = " ".join(f"first{i}" for i in range(100))
        page.fill("#chat-input textarea", first)
        page.click("#chat-send")
        # Send turns into Stop at once (as in Open WebUI).
        wait_until(lambda: page.locator("#chat-stop").is_visible(), what="Stop in place of Send")
        assert not page.locator("#chat-send").is_visible()
        box = page.locator("#chat-input textarea")
        box.fill("the second question")
        box.press("Enter")
        time.sleep(0.5)
        assert "first99" not in " ".join(bot.all_inner_texts()), "the first answer ended before the test typed"
        assert box.input_value() == "the second question", "the message typed meanwhile was taken from the box"
        assert page.locator("#chat-stop").is_visible() and no_error_badges(page)
        screenshot(page, "chat-streaming")
    wait_until(lambda: page.locator("#chat-send").is_visible(), timeout=30, what="Send to come back")
    assert "first99" in bot.nth(0).inner_text() and bot.count() == 1
    assert box.input_value() == "the second question"
    box.press("Enter")
    wait_until(lambda: bot.count() == 2 and "second question" in bot.nth(1).inner_text(), what="the second answer")
    conv = server.studio.history.get(server.studio.history.list(limit=1)[0]["id"])
    asked = [m["content"] for m in conv["messages"] if m["role"] == "user"]
    assert asked[-2:] == [first, "the second question"]


def test_a_mistake_is_one_message_by_the_action_and_one_log_line(open_page, server, tmp_path, caplog, capfd):
    page = open_page()
    caplog.set_level("INFO", logger="aigc_studio.ui")
    # Reuse with nothing picked: a message by the button; the 23 form fields keep their values.
    open_tab(page, "Images")
    page.fill("#imagerequest-prompt textarea", "kept as it is")
    open_tab(page, "Gallery / History")
    page.click("#gal-reuse")
    wait_until(lambda: "Pick a generation" in page.locator("#gal-note").inner_text(), what="the reuse message")
    assert no_error_badges(page)
    screenshot(page, "mistake-reuse")
    open_tab(page, "Images")
    assert page.locator("#imagerequest-prompt textarea").input_value() == "kept as it is"
    assert no_error_badges(page)
    # Delete with no conversation open: the list stays.
    open_tab(page, "Chat")
    page.locator("#chat-manage").get_by_text("Rename / delete").click()
    page.click("#chat-delete")
    wait_until(lambda: "Open a conversation first" in page.locator("#chat-manage-note").inner_text(), what="delete")
    assert page.locator("#chat-conversations").is_visible() and no_error_badges(page)
    # Regenerate on a new chat: nothing to answer again; Send stays (comes back) in place of Stop.
    page.click("#chat-regenerate")
    wait_until(lambda: "Nothing to regenerate" in page.locator("#chat-status").inner_text(), what="regenerate")
    wait_until(lambda: page.locator("#chat-send").is_visible(), what="Send")
    # A mistyped path: the box to fix stays, with the message under it.
    open_tab(page, "Models")
    wait_until(lambda: "echo" in page.locator("#models-table").inner_text(), what="the model table")
    typo = tmp_path / "no-such-model.gguf"
    page.fill("#models-path textarea, #models-path input", str(typo))
    page.click("#models-add")
    note = page.locator("#models-add-note")
    wait_until(lambda: "is not a file" in note.inner_text(), what="the add message")
    assert note.inner_text().strip() == f"⚠ {typo} is not a file; give the path of a .gguf, .safetensors or .ckpt model"
    assert page.locator("#models-path textarea, #models-path input").first.input_value() == str(typo)
    assert "plain" in page.locator("#models-table").inner_text() and no_error_badges(page)
    screenshot(page, "mistake-model-path")
    lines = [r.getMessage() for r in caplog.records if r.name == "aigc_studio.ui"]
    assert lines == [
        "web UI, reuse refused: Pick a generation in the list to see its parameters.",
        "web UI, delete refused: Open a conversation first (and give a title to rename it).",
        "web UI, regenerate refused: Nothing to regenerate yet: ask something, or open a conversation.",
        f"web UI, add refused: {typo} is not a file; give the path of a .gguf, .safetensors or .ckpt model",
    ]
    assert "Traceback" not in capfd.readouterr().err


def test_a_failed_pull_says_why_by_the_button_and_keeps_the_table(open_page, server, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from .fakehub import FakeHub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    with FakeHub({}) as hub:  # a mirror without the repo
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        page = open_page()
        open_tab(page, "Models")
        table = page.locator("#models-table")
        wait_until(lambda: "echo" in table.inner_text(), what="the model table")
        page.locator("#models-pull-section").get_by_text("Pull a model from the catalog").click()
        page.locator("#models-pull-pick input").click()
        page.get_by_role("option", name=re.compile(r"^qwen2\.5-0\.5b-instruct \(text")).click()
        page.click("#models-pull-button")
        progress = page.locator("#models-pull-progress")
        wait_until(lambda: "does not exist" in progress.inner_text(), timeout=30, what="the pull to fail")
    assert "Qwen/Qwen2.5-0.5B-Instruct-GGUF" in progress.inner_text()
    assert progress.locator(".aigc-progress").count() == 0, "a stale progress bar is left"
    assert "echo" in table.inner_text() and "plain" in table.inner_text() and no_error_badges(page)
    screenshot(page, "pull-failed")


def test_switching_language_translates_every_tab_message_and_status(open_page, server, tmp_path):
    page = open_page()
    # Record what Gradio announces to screen readers ("Complete" after each event).
    page.evaluate(
        """() => {
        window.__announced = new Set();
        new MutationObserver((ms) => { for (const m of ms) {
            const el = m.target.nodeType === 3 ? m.target.parentElement : m.target;
            const box = el && el.closest && el.closest('[role=status]');
            if (box && box.textContent.trim()) window.__announced.add(box.textContent.trim());
        } }).observe(document.documentElement, {subtree: true, childList: true, characterData: true});
    }"""
    )
    page.locator("#aigc-lang label", has_text="简体中文").click()
    tabs = page.get_by_role("tab")
    # Every tab, opened or not, and the image sub-tabs: no English left.
    main_tabs = ["对话", "写作", "代码", "对比", "竞技场", "图像", "作品 / 历史", "检测", "模型", "设置"]
    wait_until(lambda: tabs.all_inner_texts()[: len(main_tabs)] == main_tabs, what="tabs")
    open_tab(page, "图像")
    wait_until(lambda: "局部重绘" in tabs.all_inner_texts(), what="the image sub-tabs")
    assert tabs.all_inner_texts()[len(main_tabs) :] == ["文生图", "图生图", "局部重绘", "指令编辑", "PNG 信息"]
    assert page.locator("#img-hires").get_by_text("高分辨率修复 (Hires. fix)").count() == 1
    assert page.get_by_text("平铺图 (Tiling)").count() == 1
    # A server message in Chinese, by the action.
    open_tab(page, "模型")
    page.fill("#models-path textarea, #models-path input", "/nope/model.gguf")
    page.click("#models-add")
    note = page.locator("#models-add-note")
    wait_until(lambda: "不是文件" in note.inner_text(), what="the Chinese message")
    assert (
        note.inner_text().strip() == "⚠ /nope/model.gguf 不是文件；请填写 .gguf、.safetensors 或 .ckpt 模型文件的路径"
    )
    # A validation message names the field, in Chinese.
    open_tab(page, "图像")
    set_number(page, "imagerequest-seed", -5)
    page.click("#img-generate")
    wait_until(lambda: "随机种子" in page.locator("#img-progress").inner_text(), what="the field named")
    assert page.locator("#img-progress").inner_text().strip() == "⚠ 随机种子：不能小于 -1，当前为 -5"
    open_tab(page, "设置")
    screenshot(page, "language-zh-settings")
    # Gradio announces "Complete" after each event; its Chinese dictionary lacks the key, the studio's has it.
    # (Announcements come at most every 5 s, the latest one winning.)
    wait_until(lambda: "完成" in page.evaluate("[...window.__announced]"), timeout=20, what="“完成” announced")
    announced = page.evaluate("[...window.__announced]")
    assert not [a for a in announced if re.fullmatch(r"[a-z_]+\.[a-z_.]+", a)], announced
    # Gradio's own toasts (a wrong file dropped on an image) get their title in the page's language.
    open_tab(page, "图像")
    page.get_by_role("tab", name="图生图").click()
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not an image")
    page.locator("#img-init input[type=file]").set_input_files(str(not_an_image))
    title = page.locator(".toast-title.error")
    wait_until(lambda: title.count() == 1 and title.inner_text().strip() == "错误", what="the toast title")


def test_one_truth_across_tabs(open_page, server, tmp_path, aigc_home):
    studio = server.studio
    page = open_page()
    page.fill("#chat-input textarea", "a conversation to delete in the gallery")
    page.click("#chat-send")
    conversations = page.locator("#chat-conversations")
    wait_until(lambda: "a conversation to delete" in conversations.inner_text(), what="the conversation listed")
    open_tab(page, "Gallery / History")
    wait_until(lambda: "a conversation to delete" in page.locator("#gal-table").inner_text(), what="the gallery")
    row = [e.prompt for e in studio.gallery.entries()].index("a conversation to delete in the gallery")
    page.locator(f"#gal-table [data-testid='cell-{row}-3']").click()
    wait_until(lambda: "a conversation to delete" in page.locator("#gal-detail-title").inner_text(), what="opened")
    page.click("#gal-delete")
    wait_until(lambda: "Deleted" in page.locator("#gal-note").inner_text(), what="the deletion")
    open_tab(page, "Chat")
    assert "a conversation to delete" not in conversations.inner_text()
    assert page.locator("#chat-log .bot").count() == 0, "the deleted conversation still shows in Chat"

    # A default set in Models shows in the Images and Chat tabs, and in Settings (read from config.toml).
    from safetensors.torch import save_file

    checkpoint = tmp_path / "second-image-model.safetensors"
    save_file({"x": torch.zeros(1)}, checkpoint)
    studio.registry.add(checkpoint)
    try:
        open_tab(page, "Models")
        wait_until(lambda: "second-image-model" in page.locator("#models-table").inner_text(), what="the table")
        choose(page, "models-default-image", "second-image-model")
        page.click("#models-set-image")
        wait_until(lambda: "now the default" in page.locator("#models-default-note").inner_text(), what="set")
        choose(page, "models-default-text", "smollm2-135m")
        page.click("#models-set-text")
        wait_until(lambda: "smollm2-135m is now" in page.locator("#models-default-note").inner_text(), what="text")
        open_tab(page, "Images")
        assert page.locator("#imagerequest-model input").input_value() == "second-image-model"
        open_tab(page, "Chat")
        assert page.locator("#chat-model input").input_value() == "smollm2-135m"
        open_tab(page, "Settings")
        image_setting = page.locator("#settings-image_model textarea, #settings-image_model input").first
        wait_until(lambda: image_setting.input_value() == "second-image-model", what="Settings to show it")
        model_setting = page.locator("#settings-model textarea, #settings-model input").first
        assert model_setting.input_value() == "smollm2-135m"
        # Settings show config.toml, and say where this server's values differ (its port comes from no file).
        port_setting = page.locator("#settings-port input").first
        assert port_setting.input_value() == "7860"
        # Saving shows its confirmation by the button, in view.
        type_number_until_kept(page, "settings-max_loaded", 3)
        page.click("#settings-save")
        saved = page.locator("#settings-note")
        wait_until(lambda: "Saved" in saved.inner_text(), what="the confirmation")
        assert (
            saved.inner_text().strip()
            == "✓ Saved Text models kept loaded to config.toml; they apply from the next start."
        )
        box = saved.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 1000, "the confirmation is out of view"
        assert "max_loaded = 3" in (aigc_home / "config.toml").read_text()
        screenshot(page, "settings-saved")
    finally:
        studio.models.set_default("plain", kind="image")
        studio.models.set_default("echo", kind="text")
        studio.registry.remove("second-image-model")


def test_settings_refuse_a_value_the_studio_could_not_start_with(open_page, server, aigc_home):
    config_file = aigc_home / "config.toml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text("port = 7861\n")
    page = open_page()
    open_tab(page, "Settings")
    port = page.locator("#settings-port input").first
    wait_until(lambda: port.input_value() == "7861", what="the port from config.toml")
    host = page.locator("#settings-host textarea, #settings-host input").first
    host.fill("0.0.0.0")
    port.fill("")
    port.press("Tab")
    page.click("#settings-save")
    message = page.locator("#settings-note")
    wait_until(lambda: "Port" in message.inner_text(), what="the refusal")
    assert message.inner_text().strip() == "⚠ Port: must be a whole number"
    assert config_file.read_text() == "port = 7861\n", "something was saved"
    assert no_error_badges(page)
    screenshot(page, "settings-refused")


def test_settings_offer_switches_and_choices_for_the_label_settings(open_page, server, aigc_home):
    config_file = aigc_home / "config.toml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text("")
    page = open_page()
    open_tab(page, "Settings")
    visible = page.locator("#settings-label_visible input[type=checkbox]")
    wait_until(lambda: visible.is_checked(), what="the visible mark switch, on by default")
    visible.uncheck()
    choose(page, "settings-nsfw_action", "block")
    page.click("#settings-save")
    message = page.locator("#settings-note")
    wait_until(lambda: "Saved" in message.inner_text(), what="the confirmation")
    saved = config_file.read_text()
    assert "label_visible = false" in saved and 'nsfw_action = "block"' in saved, saved
    assert "label_language" not in saved, "an unchanged setting was written"
    assert no_error_badges(page)


def test_settings_take_a_token_merging_ratio_within_its_range(open_page, server, aigc_home):
    config_file = aigc_home / "config.toml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text("")
    page = open_page()
    open_tab(page, "Settings")
    ratio = page.locator("#settings-token_merging_ratio input[type=number]").first
    wait_until(lambda: ratio.input_value() == "0", what="the ratio, 0 by default")
    ratio.fill("0.95")
    ratio.press("Tab")
    page.click("#settings-save")
    message = page.locator("#settings-note")
    wait_until(lambda: "token_merging_ratio" in message.inner_text(), what="the refusal")
    assert message.inner_text().strip() == "⚠ token_merging_ratio must be a number from 0 to 0.9, got 0.95"
    assert config_file.read_text() == "", "something was saved"
    ratio.fill("0.4")
    ratio.press("Tab")
    page.click("#settings-save")
    wait_until(lambda: "Saved" in message.inner_text(), what="the confirmation")
    assert config_file.read_text() == "token_merging_ratio = 0.4\n"
    assert no_error_badges(page)


def test_images_generate_with_ctrl_enter_snap_sizes_and_name_the_field(open_page, server):
    page = open_page()
    open_tab(page, "Images")
    set_number(page, "imagerequest-width", 513)
    set_number(page, "imagerequest-height", 100)
    width, height = (page.locator(f"#imagerequest-{n} input[type=number]") for n in ("width", "height"))
    wait_until(lambda: (width.input_value(), height.input_value()) == ("512", "104"), what="sizes to snap to 8")
    set_number(page, "imagerequest-seed", -5)
    page.click("#img-generate")
    progress = page.locator("#img-progress")
    wait_until(lambda: "Seed" in progress.inner_text(), what="the refusal")
    assert progress.inner_text().strip() == "⚠ Seed: must be at least -1, got -5"
    assert no_error_badges(page)
    set_number(page, "imagerequest-seed", 42)
    set_number(page, "imagerequest-steps", 3)
    set_number(page, "imagerequest-width", 64)
    set_number(page, "imagerequest-height", 64)
    before = len(server.studio.images.list(limit=500))
    prompt = page.locator("#imagerequest-prompt textarea")
    prompt.fill("made with the keyboard")
    prompt.press("Control+Enter")  # A1111's shortcut
    wait_until(lambda: "Done" in progress.inner_text(), what="the image")
    made = server.studio.images.list(limit=1)[0]
    assert len(server.studio.images.list(limit=500)) == before + 1
    assert (made["prompt"], made["seed"], made["width"], made["height"]) == ("made with the keyboard", 42, 64, 64)
    assert prompt.input_value() == "made with the keyboard", "Ctrl+Enter typed a new line"


def test_reusing_one_image_of_a_batch_sets_its_seed_and_one_batch(open_page, server):
    page = open_page()
    open_tab(page, "Images")
    set_number(page, "imagerequest-n_iter", 2)
    set_number(page, "imagerequest-batch_size", 2)
    generate(page, "a batch of four", seed=500, size=(64, 64), steps=2)
    wait_until(lambda: "Done: 4 image(s)" in page.locator("#img-progress").inner_text(), what="the batch")
    third = next(r for r in server.studio.images.list(limit=4) if r["seed"] == 502)
    open_tab(page, "Gallery / History")
    page.fill("#gal-search textarea, #gal-search input", "a batch of four")
    page.locator("#gal-search textarea, #gal-search input").first.press("Enter")
    thumbs = page.locator("#gal-thumbs img")
    wait_until(lambda: thumbs.count() == 4, timeout=30, what="the four thumbnails")
    # The gallery lists newest first: the images of one batch share a time; pick by the record.
    rows = server.studio.gallery.entries("a batch of four", "image")
    thumbs.nth([e.id for e in rows].index(third["id"])).click()
    params = page.locator("#gal-detail-params")
    wait_until(lambda: "502" in params.inner_text(), what="the third image's parameters")
    page.click("#gal-reuse")
    seed = page.locator("#imagerequest-seed input")
    wait_until(lambda: seed.input_value() == "502", what="the image's seed")
    assert page.locator("#imagerequest-n_iter input[type=number]").input_value() == "1"
    assert page.locator("#imagerequest-batch_size input[type=number]").input_value() == "1"


def test_an_interrupted_image_records_the_steps_that_ran(open_page, server):
    page = open_page()
    open_tab(page, "Images")
    generate(page, "stopped part-way", seed=7, size=(64, 64), steps=60)
    progress = page.locator("#img-progress")

    def step() -> int:
        shown = re.search(r"Step (\d+)/60", progress.inner_text())
        return int(shown.group(1)) if shown else 0

    wait_until(lambda: step() >= 5, what="a few steps")
    page.click("#img-interrupt")
    wait_until(lambda: "Interrupted" in progress.inner_text(), what="the interruption")
    record = server.studio.images.list(limit=1)[0]
    assert record["prompt"] == "stopped part-way"
    ran = record["params"]["steps_run"]
    assert 5 <= ran < 60 and record["params"]["steps"] == 60  # the schedule stays as asked
    assert "Steps: 60," in record["infotext"] and f"Steps run: {ran}," in record["infotext"]
    assert f"Steps run: {ran}," in page.locator("#img-infotext textarea").input_value()


def test_the_service_records_the_steps_an_interrupted_batch_ran(server):
    studio = server.studio
    job = studio.images.submit(ImageRequest(prompt="service, stopped", seed=3, width=64, height=64, steps=80))
    wait_until(lambda: job.step >= 4, what="a few steps")
    studio.jobs.interrupt(job.id)
    result = job.wait(timeout=30)
    assert result.interrupted and len(result.images) == 1
    record = studio.images.list(limit=1)[0]
    assert record["params"]["steps_run"] == job.step < 80 and record["params"]["steps"] == 80
    assert f"Steps run: {job.step}," in record["infotext"]


def test_hires_fix_and_tiling_widgets_send_their_values(open_page, server):
    page = open_page()
    open_tab(page, "Images")
    page.locator("#img-hires").get_by_text("Hires. fix").click()
    page.locator("#imagerequest-enable_hr input").check()
    choose(page, "imagerequest-hr_upscaler", "Latent (nearest)")
    set_number(page, "imagerequest-hr_second_pass_steps", 2)
    set_number(page, "imagerequest-hires_denoising_strength", 0.4)
    set_number(page, "imagerequest-hr_scale", 1.5)
    page.locator("#imagerequest-tiling input").check()
    generate(page, "hires and tiles", seed=11, size=(64, 64), steps=2)
    wait_until(lambda: "Done" in page.locator("#img-progress").inner_text(), what="the image")
    params = server.studio.images.list(limit=1)[0]["params"]
    sent = {k: params[k] for k in ("enable_hr", "hr_upscaler", "hr_second_pass_steps", "denoising_strength")}
    assert sent == {
        "enable_hr": True,
        "hr_upscaler": "Latent (nearest)",
        "hr_second_pass_steps": 2,
        "denoising_strength": 0.4,
    }
    assert (params["hr_scale"], params["tiling"]) == (1.5, True)
    screenshot(page, "hires")
    # Hires. fix is txt2img's (as in A1111): img2img from the result runs without it.
    first = server.studio.images.list(limit=1)[0]["id"]
    page.click("#img-to-img2img")
    wait_until(lambda: page.locator("#img-init img").count() >= 1, what="the image in img2img")
    page.click("#img-generate")
    wait_until(lambda: server.studio.images.list(limit=1)[0]["id"] != first, what="the img2img result")
    params = server.studio.images.list(limit=1)[0]["params"]
    assert (params["mode"], params["enable_hr"]) == ("img2img", False)


def test_images_show_loading_the_model_before_step_0(open_page, server, tmp_path_factory):
    from .tiny_models import build_tiny_sd

    tiny = build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))
    studio = server.studio
    # The single file, as A1111 keeps it: loading it converts the checkpoint, long enough to be seen.
    studio.registry.add(tiny.single_file, model_id="tiny-sd")
    try:
        page = open_page()  # the model list is read when the page opens
        open_tab(page, "Images")
        choose(page, "imagerequest-model", "tiny-sd")
        generate(page, "a tiny real model", seed=5, size=(64, 64), steps=2)
        progress = page.locator("#img-progress")
        seen = set()

        def finished():
            seen.add(progress.inner_text().strip())
            return "Done" in progress.inner_text()

        wait_until(finished, timeout=50, interval=0.02, what="the image from the tiny model")
        assert "Loading model tiny-sd…" in seen, seen
        assert studio.images.list(limit=1)[0]["model"] == "tiny-sd"
    finally:
        studio.registry.remove("tiny-sd")


# -- the services the UI calls -----------------------------------------------------------------------


def test_the_gallery_service_lists_images_and_conversations_newest_first(aigc_home):
    from aigc_studio.contracts import Message
    from aigc_studio.services.gallery import GalleryEntry

    studio = make_studio(aigc_home, model="echo", image_model="plain")
    try:
        first = studio.images.generate(ImageRequest(prompt="a lighthouse", seed=1, width=64, height=64, steps=1))
        prepared = studio.chat.prepare([Message(role="user", content="tell me about a lighthouse")], model="echo")
        list(studio.chat.start(prepared))
        batch = studio.images.generate(
            ImageRequest(prompt="two boats", seed=10, width=64, height=64, steps=1, batch_size=2, subseed=3)
        )
        entries = studio.gallery.entries()
        assert [(e.kind, e.prompt) for e in entries] == [
            ("image", "two boats"),
            ("image", "two boats"),
            ("text", "tell me about a lighthouse"),
            ("image", "a lighthouse"),
        ]
        assert [e.prompt for e in studio.gallery.entries("lighthouse")] == [
            "tell me about a lighthouse",
            "a lighthouse",
        ]
        assert [e.kind for e in studio.gallery.entries(kind="text")] == ["text"]
        assert studio.gallery.entries(model="echo")[0].kind == "text" and len(studio.gallery.entries(model="echo")) == 1
        second = next(e for e in entries if e.id == batch.images[1].id)
        fields = studio.gallery.reuse_fields(second)
        assert (fields["seed"], fields["subseed"], fields["n_iter"], fields["batch_size"]) == (11, 4, 1, 1)
        studio.gallery.delete(next(e for e in entries if e.kind == "text"))
        studio.gallery.delete(next(e for e in entries if e.id == first.images[0].id))
        assert [e.prompt for e in studio.gallery.entries()] == ["two boats", "two boats"]
        assert not first.images[0].path.exists()
        with pytest.raises(InvalidRequest, match="kind must be one of all, image, text"):
            studio.gallery.entries(kind="video")
        with pytest.raises(InvalidRequest, match="is a conversation"):
            studio.gallery.reuse_fields(GalleryEntry("text", "conv-x", 0.0, "echo", "hi"))
    finally:
        studio.close()


def test_settings_are_saved_all_or_none(aigc_home):
    from aigc_studio.config import file_settings, save_settings

    aigc_home.mkdir(parents=True, exist_ok=True)
    (aigc_home / "config.toml").write_text('model = "echo"\n')
    with pytest.raises(ValueError, match="unknown setting 'nonsense'"):
        save_settings({"host": "0.0.0.0", "nonsense": 1})
    assert (aigc_home / "config.toml").read_text() == 'model = "echo"\n'
    save_settings({"host": "0.0.0.0", "port": 8000})
    assert file_settings() | {"host": "0.0.0.0", "port": 8000, "model": "echo"} == file_settings()
    assert file_settings()["max_loaded"] == 2  # left out of the file: the default
