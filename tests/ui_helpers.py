"""Driving the Gradio page from Playwright: Chromium set-up, and the few gestures the UI tests repeat."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = Path("/usr/bin/chromium")
# No first-run work, no background traffic: a request that leaves loopback is then the page's own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def off_loopback(urls: list[str]) -> list[str]:
    """The URLs that would leave this machine (data: and blob: URLs never do)."""
    return [u for u in urls if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname != "127.0.0.1"]


@contextmanager
def studio_pages(browser, url: str, *, height: int = 1000, clipboard: bool = False):
    """``open(locale="en-US")`` -> a page on the studio at ``url``, loaded (the chat box is there), 1400 px
    wide and ``height`` tall, the clipboard readable with ``clipboard``. At the end every page closes, and
    none may have sent a request beyond loopback."""
    contexts, requested = [], []

    def open_page(locale: str = "en-US"):
        context = browser.new_context(locale=locale, viewport={"width": 1400, "height": height})
        if clipboard:
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        context.on("request", lambda request: requested.append(request.url))
        contexts.append(context)
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#chat-input textarea")
        return page

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()
    assert requested or not contexts, "no request was recorded"
    assert off_loopback(requested) == [], "the page reached beyond loopback"


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def set_number(page, elem_id: str, value: object) -> None:
    """Type into a Number box or a Slider's number box, then leave it so Gradio takes the value."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def type_number_until_kept(page, elem_id: str, value: object, timeout: float = 60.0) -> None:
    """Type ``value`` into a Number box until the box keeps it half a second later. On a loaded 2-core
    machine Gradio can put the box back after the typing (a late value from the server), or Chromium can
    stall a keypress for many seconds: each try waits at most 10 s, and the next types again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator(f"#{elem_id} input[type=number]")
    kept = [0]

    def typed() -> bool:
        if box.input_value(timeout=10_000) != str(value):
            kept[0] = 0
            try:
                box.fill(str(value), timeout=10_000)
                box.press("Tab", timeout=10_000)
            except PlaywrightTimeout:
                pass
            return False
        kept[0] += 1
        return kept[0] >= 2

    wait_until(typed, timeout=timeout, interval=0.5, what=f"{value} typed into #{elem_id} and kept")


def choose(page, elem_id: str, option: str) -> None:
    """Pick an option of a Gradio dropdown."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
