"""The Arena tab in a real Chromium against a live studio on loopback: a blind battle between the echo
test models (slowed down so both panes are seen streaming), a vote that reveals the names, the
leaderboard; screenshots in English and Chinese go to the test's tmp dir (and test-artifacts/)."""

from __future__ import annotations

import pytest

from .conftest import studio_server
from .ui_helpers import open_tab, screenshot, studio_pages, wait_until

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with studio_server(tmp_path_factory.mktemp("arena-ui-home"), model="echo", image_model="plain") as live:
        for name in ("echo", "echo2"):
            live.studio.registry.engine(name).delay = 0.05  # a word each 50 ms: both panes visibly stream
        yield live


@pytest.fixture
def page(browser, server):
    with studio_pages(browser, server.url, height=1300) as open_page:
        yield open_page()


PROMPT = "one two three four five six seven eight nine ten"
REVERSED = " ".join(reversed(PROMPT.split()))


def test_a_blind_vote_reveals_the_names_and_counts_on_the_leaderboard(page, server, tmp_path):
    open_tab(page, "Arena")
    board = page.locator("#arena-board")
    wait_until(lambda: "no battles yet" in board.inner_text(), what="the empty leaderboard")
    page.locator("#arena-models input").click()
    page.get_by_role("option", name="echo", exact=True).click()
    page.get_by_role("option", name="echo2", exact=True).click()
    page.keyboard.press("Escape")
    page.fill("#arena-prompt textarea", PROMPT)
    page.click("#arena-battle")

    a, b = page.locator("#arena-a"), page.locator("#arena-b")
    # Both panes grow at the same time: a moment where each has some words but not all.
    wait_until(
        lambda: 0 < len(a.inner_text().split()) < 10 and 0 < len(b.inner_text().split()) < 10,
        timeout=30,
        what="both panes streaming",
    )
    wait_until(
        lambda: len(a.inner_text().split()) == 10 and len(b.inner_text().split()) == 10, timeout=30, what="both answers"
    )
    assert sorted([a.inner_text().strip(), b.inner_text().strip()]) == sorted([PROMPT, REVERSED])
    vote_a = page.locator("#arena-vote-a")
    wait_until(vote_a.is_enabled, what="the vote buttons")
    # Before the vote: no name anywhere in the battle's part of the page.
    assert page.locator("#arena-label-a").inner_text().strip() == "Model A"
    assert page.locator("#arena-label-b").inner_text().strip() == "Model B"
    assert page.locator("#arena-reveal").inner_text().strip() == ""
    screenshot_en = tmp_path / "arena-en.png"
    page.screenshot(path=str(screenshot_en), full_page=True)
    screenshot(page, "arena-en")

    a_is_echo = a.inner_text().strip() == PROMPT
    vote_a.click()
    reveal = page.locator("#arena-reveal")
    wait_until(lambda: "Model A was" in reveal.inner_text(), what="the names")
    first, second = ("echo", "echo2") if a_is_echo else ("echo2", "echo")
    assert f"Model A was {first}, Model B was {second}. Your vote: 👈 A is better." in reveal.inner_text()
    assert page.locator("#arena-label-a").inner_text().strip() == f"Model A = {first}"
    assert not vote_a.is_enabled() and not page.locator("#arena-vote-tie").is_enabled()
    # The leaderboard counts it: the winner first with one battle, 100%.
    wait_until(lambda: first in board.inner_text() and "100%" in board.inner_text(), what="the leaderboard")
    cell = lambda row, col: board.locator(f"[data-testid='cell-{row}-{col}']").inner_text().strip()  # noqa: E731
    assert [cell(0, col) for col in (0, 1, 3, 4, 5)] == ["1", first, "1002", "1", "100%"]
    assert [cell(1, col) for col in (0, 1, 3, 4, 5)] == ["2", second, "998", "1", "0%"]
    assert cell(0, 2) == "1340 (1340–1340)"  # one battle: every resample is that battle

    page.locator("#aigc-lang label", has_text="简体中文").click()
    wait_until(lambda: "竞技场" in page.get_by_role("tab").all_inner_texts(), what="Chinese labels")
    assert page.get_by_role("button", name="开始对战").count() == 1
    assert page.get_by_role("button", name="👎 都不好").count() == 1
    # What the handlers wrote follows the language too.
    wait_until(
        lambda: f"模型 A 是 {first}，模型 B 是 {second}。你的投票：👈 A 更好。" in reveal.inner_text(),
        what="the names in Chinese",
    )
    assert page.locator("#arena-label-a").inner_text().strip() == f"模型 A = {first}"
    wait_until(
        lambda: "BT 分数（95% 置信区间）" in board.inner_text() and "暂无对战" in board.inner_text(),
        what="the table in Chinese",
    )
    screenshot_zh = tmp_path / "arena-zh.png"
    page.screenshot(path=str(screenshot_zh), full_page=True)
    screenshot(page, "arena-zh")
    assert screenshot_en.stat().st_size > 10_000 and screenshot_zh.stat().st_size > 10_000
    print(f"screenshots: {screenshot_en} {screenshot_zh}")


def test_an_image_battle_shows_two_images_then_the_names(page, server):
    open_tab(page, "Arena")
    page.locator("#arena-category label", has_text="Image").click()
    page.locator("#arena-models input").click()
    page.get_by_role("option", name="plain", exact=True).click()
    page.get_by_role("option", name="plain2", exact=True).click()
    page.keyboard.press("Escape")
    page.fill("#arena-prompt textarea", "a red square")
    page.click("#arena-battle")
    wait_until(
        lambda: page.locator("#arena-image-a img").count() == 1 and page.locator("#arena-image-b img").count() == 1,
        timeout=60,
        what="both images",
    )
    tie = page.locator("#arena-vote-tie")
    wait_until(tie.is_enabled, what="the vote buttons")
    assert "plain" not in page.locator("#arena-label-a").inner_text() + page.locator("#arena-label-b").inner_text()
    tie.click()
    reveal = page.locator("#arena-reveal")
    wait_until(lambda: "Model A was" in reveal.inner_text(), what="the names")
    assert "Your vote: 🤝 Tie." in reveal.inner_text()
    assert {page.locator(f"#arena-label-{s}").inner_text().strip() for s in "ab"} in (
        {"Model A = plain", "Model B = plain2"},
        {"Model A = plain2", "Model B = plain"},
    )
