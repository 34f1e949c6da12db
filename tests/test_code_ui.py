"""The Code tab in a real Chromium against a live studio on loopback: the echo model answers with code
(its test hook queues the answers), the code runs in the real sandbox (bubblewrap). Screenshots of the
tab in English and Chinese go to the test's tmp dir (and test-artifacts/)."""

from __future__ import annotations

import re
import time

import pytest

from aigc_studio.config import load_config
from aigc_studio.contracts import RunLimits
from aigc_studio.engines.echo import clear_replies, queue_replies
from aigc_studio.errors import SandboxUnavailable, StudioError
from aigc_studio.services.code import RunSpec
from aigc_studio.studio import Studio
from aigc_studio.ui.code_views import note_text, run_summary
from aigc_studio.ui.messages import message_text

from .conftest import studio_server
from .ui_helpers import choose, open_tab, screenshot, set_number, studio_pages, type_number_until_kept, wait_until

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]

BUBBLE_SORT = """function bubbleSort(items) {
  const a = [...items];
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < a.length - 1 - i; j++) {
      if (a[j] > a[j + 1]) {
        [a[j], a[j + 1]] = [a[j + 1], a[j]];
      }
    }
  }
  return a;
}
"""
SHORTER = """function bubbleSort(items) {
  return [...items].sort((x, y) => x - y);
}
"""


def answer(code: str, language: str = "javascript", words: str = "Here is the program.") -> str:
    return f"{words}\n\n```{language}\n{code}```\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with studio_server(tmp_path_factory.mktemp("code-ui-home"), model="echo", image_model="plain") as live:
        yield live


@pytest.fixture
def page(browser, server):
    with studio_pages(browser, server.url, height=1600) as open_page:
        yield open_page()
    clear_replies()


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
    page.locator("#code-lang label", has_text="JavaScript").click()
    queue_replies(answer(BUBBLE_SORT))
    send(page, "write a JavaScript bubble sort")
    wait_until(lambda: "Done." in status(page), timeout=60, what="the answer")
    assert editor(page).strip() == BUBBLE_SORT.strip()
    log = page.locator("#code-log").inner_text()
    assert "write a JavaScript bubble sort" in log and "Here is the program." in log
    session_id = server.studio.code.sessions()[0]["id"]
    stored = server.studio.code.session(session_id)
    assert [(v["version"], v["language"], v["note"]) for v in stored["versions"]] == [(1, "javascript", "generated")]
    assert "v1 · generated · javascript" in page.locator("#code-versions input").input_value()

    # Run it on the input: stdout, "exit 0", the times, and the match with the expected output.
    page.fill("#code-call textarea", "bubbleSort([5, 2, 8, 1, 9, 3])")
    page.fill("#code-expect textarea", "[1, 2, 3, 5, 8, 9]")
    page.click("#code-run")
    result = page.locator("#code-result")
    wait_until(lambda: "exit 0" in result.inner_text(), timeout=60, what="the run's result")
    assert "output matches the expected output" in result.inner_text()
    assert " s wall" in result.inner_text() and " s CPU" in result.inner_text()
    assert textbox(page, "code-stdout") == "[ 1, 2, 3, 5, 8, 9 ]\n"  # as node prints it
    assert "Node.js v" in result.inner_text()
    assert "Ran version 1." in status(page)
    run = server.studio.code.session(session_id)["runs"][0]
    assert run["result"]["exit_code"] == 0 and run["matched"] is True
    assert run["spec"]["call"] == "bubbleSort([5, 2, 8, 1, 9, 3])"
    assert "#1" in page.locator("#code-runs").inner_text()

    # Ask for a change: version 2 in the editor, and the diff from version 1.
    queue_replies(answer(SHORTER, words="A more concise version."))
    send(page, "make it more concise")
    wait_until(lambda: "Done." in status(page), timeout=60, what="the refined answer")
    assert editor(page).strip() == SHORTER.strip()
    assert "v2 · refined: make it more concise · javascript" in page.locator("#code-versions input").input_value()
    diff = page.locator("#code-diff").inner_text()
    assert "--- v1" in diff and "+++ v2" in diff
    assert "+  return [...items].sort((x, y) => x - y);" in diff and "-  const a = [...items];" in diff
    # The added line is marked as added (coloured), the removed one as removed.
    assert page.locator("#code-diff .add", has_text="return [...items].sort").count() == 1
    assert page.locator("#code-diff .del", has_text="const a = [...items];").count() == 1
    # Any version opens in the editor; any two show their diff (older first).
    choose(page, "code-versions", "v1 · generated · javascript")
    page.click("#code-version-open")
    wait_until(lambda: editor(page).strip() == BUBBLE_SORT.strip(), what="version 1 in the editor")
    page.fill("#code-call textarea", "bubbleSort([3, 1, 2])")
    page.fill("#code-expect textarea", "")
    page.click("#code-run")
    wait_until(lambda: "Ran version 1." in status(page), timeout=60, what="version 1 run again")
    assert textbox(page, "code-stdout") == "[ 1, 2, 3 ]\n" and editor(page).strip() == BUBBLE_SORT.strip()
    assert len(server.studio.code.session(session_id)["versions"]) == 2  # running a version stores no new one
    choose(page, "code-diff-to", "v1 · generated · javascript")
    page.click("#code-compare")
    wait_until(lambda: "The two versions are the same." in status(page), what="a version compared with itself")
    assert page.locator("#code-diff").inner_text().strip() == ""
    choose(page, "code-diff-to", "v2 · refined: make it more concise · javascript")
    page.click("#code-compare")
    wait_until(lambda: "+++ v2" in page.locator("#code-diff").inner_text(), what="the diff of the two picked")
    screenshot_en = tmp_path / "code-en.png"
    page.screenshot(path=str(screenshot_en), full_page=True)
    screenshot(page, "code-en")
    assert screenshot_en.stat().st_size > 10_000

    # The session list reopens the session as stored.
    new_session(page)
    page.locator("#code-sessions label", has_text="write a JavaScript bubble sort").click()
    wait_until(lambda: editor(page).strip() == SHORTER.strip(), what="the reopened session's code")
    assert "make it more concise" in page.locator("#code-log").inner_text()
    assert "exit 0" in page.locator("#code-runs").inner_text()
    # Leaving the tab and coming back keeps the open session picked in the list.
    open_tab(page, "Chat")
    open_tab(page, "Code")
    picked = page.locator("#code-sessions label", has_text="write a JavaScript bubble sort").locator("input")
    time.sleep(0.5)  # the tab's refresh lands after the click
    wait_until(lambda: picked.is_checked(), what="the open session still picked")


def test_an_edit_becomes_a_version_and_a_loop_hits_the_wall_limit(page, server):
    open_tab(page, "Code")
    new_session(page)
    page.locator("#code-lang label", has_text="Python").click()
    queue_replies(answer('print("hello")\n', "python"))
    send(page, "print hello in Python")
    wait_until(lambda: "Done." in status(page), timeout=60, what="the answer")
    session_id = server.studio.code.sessions()[0]["id"]

    type_code(page, "while True:\n    pass\n")
    page.locator("#code-limits").get_by_text("Limits").click()
    wait_until(lambda: "allowed 0.1–60" in page.locator("#code-limits").inner_text(), what="the wall range")
    wall = page.locator("#code-limit-wall_seconds input[type=number]")

    def wall_is_one() -> bool:
        # A refresh of the tab's limits (after the turn) can land after the typing and put back the
        # default: type again until 1 holds for half a second.
        if wall.input_value() != "1":
            set_number(page, "code-limit-wall_seconds", 1)
            return False
        time.sleep(0.5)
        return wall.input_value() == "1"

    wait_until(wall_is_one, timeout=30, what="1 typed")
    page.fill("#code-call textarea", "")
    page.click("#code-run")
    result = page.locator("#code-result")
    wait_until(lambda: "limit" in result.inner_text(), timeout=60, what="the loop stopped")
    assert "stopped: the wall-time limit (1 s) was hit · killed by SIGKILL" in result.inner_text()
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
        answer("def add(a, b):\n    return a - b\n", "python"),
        answer("def add(a, b):\n    return a + b\n", "python", words="Fixed: it subtracted."),
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
    queue_replies(answer('print("你好")\n', "python"))
    send(page, "用 Python 打印你好")
    wait_until(lambda: "完成。" in status(page), timeout=60, what="the answer")
    page.click("#code-run")
    result = page.locator("#code-result")
    wait_until(lambda: "退出码 0" in result.inner_text(), timeout=60, what="the run in Chinese")
    assert "墙钟" in result.inner_text() and textbox(page, "code-stdout") == "你好\n"
    page.locator("#code-limits").get_by_text("限制").click()
    # The tab's refresh (the ranges) lands asynchronously: let it land before typing into the box.
    wait_until(lambda: "允许 0.1–60" in page.locator("#code-limits").inner_text(), what="the ranges in Chinese")

    # Two updates carry the ranges (the tab's refresh and the language's change), and one landing after
    # the typing puts the box back: type again until the box keeps the value.
    type_number_until_kept(page, "code-limit-wall_seconds", 100)
    page.click("#code-run")
    wait_until(lambda: "不能大于 60" in status(page), timeout=30, what="the refused limit in Chinese")
    assert "限制 wall_seconds 不能大于 60（设置项 run_max_wall_seconds），当前为 100" in status(page)
    screenshot_zh = tmp_path / "code-zh.png"
    page.screenshot(path=str(screenshot_zh), full_page=True)
    screenshot(page, "code-zh")
    assert screenshot_zh.stat().st_size > 10_000


def test_the_status_says_how_far_a_long_prompt_has_been_read(page, server):
    open_tab(page, "Code")
    echo = server.studio.registry.engine("echo")
    echo.prompt_step, echo.delay = 5, 0.3  # the prompt is read 5 words a step, 0.3 s each
    seen: list[str] = []
    try:
        queue_replies(answer(SHORTER))
        send(page, "write a JavaScript sort of an array of numbers")

        def done() -> bool:
            seen.append(status(page))
            return "Done." in seen[-1]

        wait_until(done, timeout=60, what="the answer")
    finally:
        echo.prompt_step, echo.delay = 0, 0.0
    assert any(re.search(r"Reading the prompt: [1-9]\d* of \d+ tokens", s) for s in seen), seen
    assert editor(page).strip() == SHORTER.strip()


def test_stop_keeps_the_answer_so_far_and_makes_no_version(page, server):
    open_tab(page, "Code")
    new_session(page)
    echo = server.studio.registry.engine("echo")
    echo.delay = 0.05  # a word every 50 ms: the Stop lands mid-answer
    words = " ".join(f"word{i}" for i in range(400))
    try:
        queue_replies(f"{words}\n\n```python\nprint(1)\n```\n")
        send(page, "write a long Python program")
        wait_until(lambda: "word20" in page.locator("#code-log").inner_text(), timeout=30, what="the answer streaming")
        page.click("#code-stop")
        wait_until(lambda: "Stopped" in status(page), timeout=30, what="the stop")
    finally:
        echo.delay = 0
    assert "Stopped; what was written is kept." in status(page)
    assert editor(page).strip() == ""
    session_id = server.studio.code.sessions()[0]["id"]
    stored = server.studio.code.session(session_id)
    assert stored["versions"] == [] and "word20" in stored["messages"][-1]["content"]
    assert "word399" not in stored["messages"][-1]["content"]


def test_delete_a_session_and_a_sandbox_that_cannot_start(page, server, monkeypatch):
    open_tab(page, "Code")
    new_session(page)
    page.locator("#code-lang label", has_text="Python").click()
    queue_replies(answer("print(42)\n", "python"))
    send(page, "print the answer in Python")
    wait_until(lambda: "Done." in status(page), timeout=60, what="the answer")
    session_id = server.studio.code.sessions()[0]["id"]

    # No sandbox here (bubblewrap missing, say): the run is refused with what is missing, nothing stored.
    missing = (
        "cannot run code: bubblewrap (bwrap) is not installed; install it (Debian/Ubuntu: apt-get install"
        " bubblewrap). The studio never runs generated code outside its sandbox."
    )

    def no_sandbox():
        raise SandboxUnavailable(missing)

    monkeypatch.setattr(server.studio.sandbox, "check", no_sandbox)
    page.click("#code-run")
    wait_until(lambda: "bubblewrap (bwrap) is not installed" in status(page), timeout=30, what="the refusal")
    assert server.studio.code.session(session_id)["runs"] == []
    assert page.locator("#code-result").inner_text() == ""
    monkeypatch.undo()

    page.click("#code-delete")
    wait_until(lambda: "Deleted the session" in status(page), timeout=30, what="the deletion")
    assert "print the answer in Python" in status(page)
    assert session_id not in [s["id"] for s in server.studio.code.sessions()]
    assert "print the answer in Python" not in page.locator("#code-sessions").inner_text()
    assert editor(page).strip() == ""


def test_code_typed_into_an_empty_tab_runs_as_a_session_of_its_own(page, server):
    open_tab(page, "Code")
    new_session(page)
    before = len(server.studio.code.sessions())
    page.locator("#code-lang label", has_text="auto").click()
    type_code(page, "import sys\nprint(sys.stdin.read().upper(), sys.argv[1:])\n")
    page.click("#code-run")
    wait_until(lambda: "Choose JavaScript or Python" in status(page), what="the language asked for")
    assert len(server.studio.code.sessions()) == before
    page.locator("#code-lang label", has_text="Python").click()
    page.fill("#code-stdin textarea", "hello")
    page.fill("#code-args textarea", "one\ntwo")
    page.fill("#code-call textarea", "")
    page.click("#code-run")
    result = page.locator("#code-result")
    wait_until(lambda: "exit 0" in result.inner_text(), timeout=60, what="the typed code's run")
    assert textbox(page, "code-stdout") == "HELLO ['one', 'two']\n"
    newest = server.studio.code.sessions()[0]
    assert (newest["title"], newest["versions"], newest["runs"]) == ("python code", 1, 1)
    assert "python code" in page.locator("#code-sessions").inner_text()
    assert "v1 · file: python code · python" in page.locator("#code-versions input").input_value()


# -- without a browser -------------------------------------------------------------------------------


def test_a_run_in_plain_words_in_both_languages():
    killed = {
        "exit_code": None,
        "signal": "SIGKILL",
        "wall_seconds": 1.0031,
        "cpu_seconds": None,
        "limit": "wall",
        "truncated": False,
        "limits": RunLimits(wall_seconds=1).model_dump(),
        "runtime": "Python 3.11.2",
    }
    assert run_summary("en", killed, None) == (
        "stopped: the wall-time limit (1 s) was hit · killed by SIGKILL · 1.00 s wall · Python 3.11.2"
    )
    assert (
        run_summary("zh-CN", killed, None)
        == "已终止：达到墙钟时间上限（1 秒） · 被 SIGKILL 终止 · 墙钟 1.00 秒 · Python 3.11.2"
    )
    fine = {**killed, "exit_code": 0, "signal": None, "limit": None, "cpu_seconds": 0.04, "wall_seconds": 0.2}
    assert run_summary("en", fine, False) == (
        "exit 0 · 0.20 s wall · 0.04 s CPU · output differs from the expected output · Python 3.11.2"
    )
    assert run_summary("zh-CN", fine, True) == "退出码 0 · 墙钟 0.20 秒 · CPU 0.04 秒 · 输出与预期一致 · Python 3.11.2"
    for limit in ("cpu", "memory", "processes", "output", "files"):
        words = run_summary("zh-CN", {**killed, "limit": limit}, None)
        assert words.startswith("已终止：达到") and "?" not in words, limit


def test_version_notes_in_chinese():
    assert note_text("zh-CN", "generated") == "生成"
    assert note_text("zh-CN", "refined: make it {shorter}") == "修改：make it {shorter}"
    assert note_text("zh-CN", "repair 2/3") == "修复 2/3"
    assert note_text("zh-CN", "edited") == "手动编辑"
    assert note_text("zh-CN", "file: sort.py") == "文件：sort.py"
    cut = "generated; the answer ended inside the code block (cut off?)"
    assert note_text("zh-CN", cut) == "生成；回答在代码块中途结束（可能被截断）"
    assert note_text("en", cut) == cut


def test_the_code_services_refusals_read_in_chinese(aigc_home):
    studio = Studio(load_config(model="echo"))
    try:
        queue_replies(answer("echo hi\n", "bash"))
        turn = studio.code.turn("a bash greeting")
        list(turn)
        bash = studio.code.session(turn.session_id)["versions"][0]["id"]
        refusals = [
            lambda: studio.code.edit(turn.session_id, "  "),
            lambda: studio.code.run(bash, RunSpec()),
            lambda: studio.code.run_source("python", "print(1)", RunSpec(limits=RunLimits(wall_seconds=100))),
            lambda: studio.code.run_source("python", " ", RunSpec()),
            lambda: studio.code.session("conv-nope"),
            lambda: studio.code.diff(bash, 999),
        ]
        for refuse in refusals:
            with pytest.raises(StudioError) as caught:
                refuse()
            zh = message_text("zh-CN", caught.value.message)
            assert zh != caught.value.message and re.search(r"[\u4e00-\u9fff]", zh), caught.value.message
    finally:
        clear_replies()
        studio.close()
