"""The Code tab in a real Chromium against a live studio on loopback: the echo model answers with code
(its test hook queues the answers), the code runs in the real sandbox (bubblewrap). Screenshots of the
tab in English and Chinese go to the test's tmp dir (and test-artifacts/)."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from aigc_studio.api.app import create_app
from aigc_studio.engines.echo import clear_replies, queue_replies

from .conftest import LiveServer, make_studio
from .ui_helpers import off_loopback, open_tab, screenshot, set_number, wait_until

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]

BUBBLE_SORT = """def bubble_sort(items):
    items = list(items)
    for i in range(len(items)):
        for j in range(len(items) - 1 - i):
            if items[j] > items[j + 1]:
                items[j], items[j + 1] = items[j + 1], items[j]
    return items
"""
SHORTER = """def bubble_sort(items):
    return sorted(items)
"""


def answer(code: str, language: str = "python", words: str = "Here is the program.") -> str:
    return f"{words}\n\n```{language}\n{code}```\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("code-ui-home")
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
    requested: list[str] = []
    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1600})
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#chat-input textarea")
    yield page
    context.close()
    clear_replies()
    assert off_loopback(requested) == [], "the page reached beyond loopback"


def status(page) -> str:
    return page.locator("#code-status").inner_text()


def editor(page) -> str:
    return page.locator("#code-editor .cm-content").inner_text()


def textbox(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def send(page, prompt: str) -> None:
    box = page.locator("#code-input textarea")
    box.fill(prompt)
    page.click("#code-send")
    wait_until(lambda: box.input_value() == "", timeout=30, what="the prompt taken")


def type_code(page, code: str) -> None:
    """Replace the editor's text as a user would (select all, then type)."""
    page.locator("#code-editor .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(code)
    wait_until(lambda: editor(page).strip() == code.strip(), what="the typed code in the editor")


def new_session(page) -> None:
    page.click("#code-new")
    wait_until(lambda: editor(page).strip() == "" and status(page) == "", what="the tab cleared by New")


def test_generate_run_refine_and_see_the_diff(page, server, tmp_path):
    open_tab(page, "Code")
    page.locator("#code-lang label", has_text="Python").click()
    queue_replies(answer(BUBBLE_SORT))
    send(page, "write a Python bubble sort")
    wait_until(lambda: "Done." in status(page), timeout=60, what="the answer")
    assert editor(page).strip() == BUBBLE_SORT.strip()
    log = page.locator("#code-log").inner_text()
    assert "write a Python bubble sort" in log and "Here is the program." in log
    session_id = server.studio.code.sessions()[0]["id"]
    stored = server.studio.code.session(session_id)
    assert [(v["version"], v["language"], v["note"]) for v in stored["versions"]] == [(1, "python", "generated")]
    assert "v1 · generated · python" in page.locator("#code-versions input").input_value()

    # Run it on the input: stdout, "exit 0", the times, and the match with the expected output.
    page.fill("#code-call textarea", "bubble_sort([5, 2, 8, 1, 9, 3])")
    page.fill("#code-expect textarea", "[1, 2, 3, 5, 8, 9]")
    page.click("#code-run")
    result = page.locator("#code-result")
    wait_until(lambda: "exit 0" in result.inner_text(), timeout=60, what="the run's result")
    assert "output matches the expected output" in result.inner_text()
    assert " s wall" in result.inner_text() and " s CPU" in result.inner_text()
    assert textbox(page, "code-stdout") == "[1, 2, 3, 5, 8, 9]\n"
    assert "Ran version 1." in status(page)
    run = server.studio.code.session(session_id)["runs"][0]
    assert run["result"]["exit_code"] == 0 and run["matched"] is True
    assert run["spec"]["call"] == "bubble_sort([5, 2, 8, 1, 9, 3])"
    assert "#1" in page.locator("#code-runs").inner_text()

    # Ask for a change: version 2 in the editor, and the diff from version 1.
    queue_replies(answer(SHORTER, words="A more concise version."))
    send(page, "make it more concise")
    wait_until(lambda: "Done." in status(page), timeout=60, what="the refined answer")
    assert editor(page).strip() == SHORTER.strip()
    assert "v2 · refined: make it more concise · python" in page.locator("#code-versions input").input_value()
    diff = page.locator("#code-diff").inner_text()
    assert "--- v1" in diff and "+++ v2" in diff
    assert "+    return sorted(items)" in diff and "-    items = list(items)" in diff
    # The added line is marked as added (coloured), the removed one as removed.
    assert page.locator("#code-diff .add", has_text="return sorted(items)").count() == 1
    assert page.locator("#code-diff .del", has_text="items = list(items)").count() == 1
    screenshot_en = tmp_path / "code-en.png"
    page.screenshot(path=str(screenshot_en), full_page=True)
    screenshot(page, "code-en")
    assert screenshot_en.stat().st_size > 10_000

    # The session list reopens the session as stored.
    new_session(page)
    page.locator("#code-sessions label", has_text="write a Python bubble sort").click()
    wait_until(lambda: editor(page).strip() == SHORTER.strip(), what="the reopened session's code")
    assert "make it more concise" in page.locator("#code-log").inner_text()
    assert "exit 0" in page.locator("#code-runs").inner_text()


def test_an_edit_becomes_a_version_and_a_loop_hits_the_wall_limit(page, server):
    open_tab(page, "Code")
    new_session(page)
    page.locator("#code-lang label", has_text="Python").click()
    queue_replies(answer('print("hello")\n'))
    send(page, "print hello in Python")
    wait_until(lambda: "Done." in status(page), timeout=60, what="the answer")
    session_id = server.studio.code.sessions()[0]["id"]

    type_code(page, "while True:\n    pass\n")
    page.locator("#code-limits").get_by_text("Limits").click()
    wait_until(lambda: "allowed 0.1–60" in page.locator("#code-limits").inner_text(), what="the wall range")
    set_number(page, "code-limit-wall_seconds", 1)
    page.fill("#code-call textarea", "")
    page.click("#code-run")
    result = page.locator("#code-result")
    wait_until(lambda: "limit" in result.inner_text(), timeout=60, what="the loop stopped")
    assert "stopped: the wall-time limit (1 s) was hit" in result.inner_text()
    stored = server.studio.code.session(session_id)
    assert [(v["version"], v["note"]) for v in stored["versions"]] == [(1, "generated"), (2, "edited")]
    assert stored["versions"][1]["code"] == "while True:\n    pass\n"
    assert stored["runs"][-1]["result"]["limit"] == "wall"
    assert "v2 · edited" in page.locator("#code-versions input").input_value()

    # A limit above the configured maximum is refused by the Run button, and nothing is stored.
    set_number(page, "code-limit-wall_seconds", 100)
    page.click("#code-run")
    expected = "limits.wall_seconds must be at most 60 (setting run_max_wall_seconds), got 100"
    wait_until(lambda: expected in status(page), timeout=30, what="the refused limit")
    after = server.studio.code.session(session_id)
    assert len(after["runs"]) == len(stored["runs"]) and len(after["versions"]) == 2

    # Empty code: the tab says so.
    set_number(page, "code-limit-wall_seconds", 5)
    type_code(page, " ")
    page.click("#code-run")
    wait_until(lambda: "code must not be empty" in status(page), timeout=30, what="the empty code refused")
    assert len(server.studio.code.session(session_id)["versions"]) == 2


def test_self_repair_shows_each_attempt_and_its_run(page, server):
    open_tab(page, "Code")
    new_session(page)
    page.locator("#code-lang label", has_text="Python").click()
    queue_replies(
        answer("def add(a, b):\n    return a - b\n"),
        answer("def add(a, b):\n    return a + b\n", words="Fixed: it subtracted."),
    )
    page.fill("#code-call textarea", "add(2, 3)")
    page.fill("#code-expect textarea", "5")
    set_number(page, "code-repair", 2)
    send(page, "a Python function add(a, b) that adds two numbers")
    wait_until(lambda: "Done." in status(page), timeout=60, what="the repaired answer")
    runs = page.locator("#code-runs").inner_text()
    assert "v1 · generated" in runs and "output differs from the expected output" in runs
    assert "v2 · repair 1/2" in runs and "output matches the expected output" in runs
    assert "return a + b" in editor(page)
    assert textbox(page, "code-stdout") == "5\n"
    assert "Fixed: it subtracted." in page.locator("#code-log").inner_text()
    session_id = server.studio.code.sessions()[0]["id"]
    stored = server.studio.code.session(session_id)
    assert [r["matched"] for r in stored["runs"]] == [False, True]


def test_the_tab_in_chinese(page, server, tmp_path):
    page.locator("#aigc-lang label", has_text="简体中文").click()
    wait_until(lambda: "代码" in page.get_by_role("tab").all_inner_texts(), what="Chinese labels")
    open_tab(page, "代码")
    new_session(page)
    assert page.get_by_role("button", name="运行", exact=True).count() == 1
    assert page.get_by_role("button", name="发送", exact=True).count() == 1
    page.locator("#code-lang label", has_text="Python").click()
    queue_replies(answer('print("你好")\n'))
    send(page, "用 Python 打印你好")
    wait_until(lambda: "完成。" in status(page), timeout=60, what="the answer")
    page.click("#code-run")
    result = page.locator("#code-result")
    wait_until(lambda: "退出码 0" in result.inner_text(), timeout=60, what="the run in Chinese")
    assert "墙钟" in result.inner_text() and textbox(page, "code-stdout") == "你好\n"
    page.locator("#code-limits").get_by_text("限制").click()
    set_number(page, "code-limit-wall_seconds", 100)
    page.click("#code-run")
    wait_until(lambda: "不能大于 60" in status(page), timeout=30, what="the refused limit in Chinese")
    assert "限制 wall_seconds 不能大于 60（设置项 run_max_wall_seconds），当前为 100" in status(page)
    screenshot_zh = tmp_path / "code-zh.png"
    page.screenshot(path=str(screenshot_zh), full_page=True)
    screenshot(page, "code-zh")
    assert screenshot_zh.stat().st_size > 10_000
