"""The web UI in a real Chromium against a live studio on loopback (echo text model, plain image model).

Each browser test saves a screenshot under test-artifacts/, and every page's requests are recorded:
none may leave 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import re
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from aigc_studio.api.app import create_app
from aigc_studio.contracts import ImageRequest, TextOptions
from aigc_studio.images.infotext import write_png
from aigc_studio.ui.app import build_blocks
from aigc_studio.ui.common import UIContext
from aigc_studio.ui.i18n import EN, FIELDS, ZH

from .conftest import LiveServer, make_studio
from .ui_helpers import CHROMIUM, CHROMIUM_ARGS, choose, off_loopback, open_tab, screenshot, set_number, wait_until

pytestmark = [
    pytest.mark.timeout(120),
    # Gradio's queue calls pandas APIs that pandas 3 deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui-home")
    old_home = os.environ.get("AIGC_HOME")
    studio = make_studio(home, model="echo", image_model="plain")
    app = create_app(studio)  # mounts the UI at "/"
    with LiveServer(app) as live:
        deadline = time.time() + 30
        while httpx.get(live.url + "/health").status_code != 200:
            assert time.time() < deadline, "the studio did not become healthy"
            time.sleep(0.05)
        # Slow enough to watch the answer and the progress arrive; fast enough for the suite.
        studio.registry.engine("echo").delay = 0.04
        studio.registry.image_engine("plain").step_delay = 0.05
        live.studio = studio
        yield live
    studio.close()
    if old_home is not None:
        os.environ["AIGC_HOME"] = old_home


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (Debian's, at /usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: .venv/bin/pip install playwright (the Python package only)")
    # Playwright's launch() gives every run a fresh, throw-away user-data dir.
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser, server):
    """open_page(locale="en-US") -> a page on the studio, its requests recorded and checked at the end."""
    contexts, requested = [], []

    def opener(locale: str = "en-US"):
        context = browser.new_context(locale=locale, viewport={"width": 1400, "height": 1000})
        context.on("request", lambda request: requested.append(request.url))
        contexts.append(context)
        page = context.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector("#chat-input textarea")
        return page

    yield opener
    for context in contexts:
        context.close()
    assert requested, "no request was recorded"
    assert off_loopback(requested) == [], "the page reached beyond loopback"


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
    assert elapsed < 3.0, f"the page took {elapsed:.2f} s"
    assert off_loopback(requested) == []


def test_chat_streams_an_answer_with_markdown_and_continues_the_conversation(open_page, server):
    page = open_page()
    question = "Streaming words arrive one by one:\n```python\nprint('hello')\n```"
    page.fill("#chat-input textarea", question)
    page.click("#chat-send")
    bot = page.locator("#chat-log .bot")
    seen = set()

    def answered():
        texts = bot.all_inner_texts()
        seen.add(texts[-1] if texts else "")
        return texts and "print('hello')" in texts[-1] and page.locator("#chat-status").inner_text().strip()

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
    changed = np.abs(after - before).sum(axis=2) > 0
    assert changed[32:96, :64].mean() > 0.3, "the painted stroke was not repainted"
    assert not changed[:, 96:].any(), "pixels outside the mask changed"

    # The result goes on to an instruction edit the same way.
    page.click("#img-to-edit")
    page.fill("#imagerequest-prompt textarea", "make it snow")
    wait_until(lambda: page.locator("#img-edit img").count() >= 1, what="the image to edit")
    page.click("#img-generate")
    wait_until(lambda: server.studio.images.list(limit=1)[0]["mode"] == "edit", what="the edited image")


def test_png_info_fills_the_form(open_page, server, tmp_path):
    infotext = (
        "a castle in the clouds, (watercolor:1.2)\nNegative prompt: blurry\nSteps: 7, Sampler: DPM++ 2M, "
        "Schedule type: Karras, CFG scale: 4.5, Seed: 777, Size: 320x192, Model: plain, Version: v1.10.1"
    )
    png = tmp_path / "a1111.png"
    write_png(Image.new("RGB", (64, 64), "white"), png, infotext)
    page = open_page()
    open_tab(page, "Images")
    page.get_by_role("tab", name="PNG info").click()
    page.locator("#img-pnginfo input[type=file]").set_input_files(str(png))
    wait_until(lambda: "Steps: 7" in page.locator("#png-text textarea").input_value(), what="the infotext")
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
    }
    wait_until(lambda: page.locator("#imagerequest-seed input").input_value() == "777", what="the form")
    assert {sel: page.locator(sel).input_value() for sel in form} == form
    screenshot(page, "pnginfo")


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
    assert outputs.input_value() == str(server.studio.config.outputs_dir)
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
