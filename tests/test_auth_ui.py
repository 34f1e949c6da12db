"""The web UI on a team server, in Chromium: the login page, and handlers that run as the signed-in user
(a member's click on admin-only work is refused by name; it never runs as the unfiltered local studio)."""

from __future__ import annotations

import pytest

from .conftest import studio_server
from .ui_helpers import open_tab, wait_until


def _people(studio) -> None:
    studio.users.add("alice", "alice-password-1", admin=True)
    studio.users.add("bob", "bob-password-22")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("auth-ui-home")
    with studio_server(home, load_default=False, model="echo", image_model="plain", auth="on", prepare=_people) as live:
        yield live


def sign_in(browser, url: str, name: str, password: str):
    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url + "/")
    assert page.url.endswith("/login?next=/")  # sent to sign in first
    page.fill("#login-name", name)
    page.fill("#login-password", password)
    page.click("#login-submit")
    return context, page


def test_login_then_handlers_run_as_the_user(browser, server, tmp_path):
    context, page = sign_in(browser, server.url, "bob", "wrong-password")
    try:
        wait_until(
            lambda: "Wrong user name or password" in page.content(), timeout=60, what="the refusal on the login page"
        )
        page.fill("#login-name", "bob")
        page.fill("#login-password", "bob-password-22")
        page.click("#login-submit")
        page.wait_for_selector("#chat-input textarea")
        assert page.locator("#aigc-signout button").is_visible()

        # A member adding a model by a server path: the handler ran as bob, so the Models tab says why not.
        model = tmp_path / "x.gguf"
        model.write_bytes(b"GGUF")
        open_tab(page, "Models")
        page.fill("#models-path textarea, #models-path input", str(model))
        page.click("#models-add")
        note = page.locator("#models-add-note")
        wait_until(
            lambda: "needs the admin role" in note.inner_text(), timeout=60, what="the refusal by the Add button"
        )
        assert "'bob' (role member)" in note.inner_text()
        assert "x" not in [m.id for m in server.studio.registry.all()]

        page.click("#aigc-signout button")
        page.wait_for_url("**/login")
        page.goto(server.url + "/")
        assert "/login" in page.url  # signed out on the server too
    finally:
        context.close()


def test_an_admin_may_change_settings_in_the_ui(browser, server, aigc_home):
    context, page = sign_in(browser, server.url, "alice", "alice-password-1")
    try:
        page.wait_for_selector("#chat-input textarea")
        open_tab(page, "Settings")
        box = page.locator("#settings-nsfw_threshold input")
        wait_until(lambda: box.input_value() == "80", timeout=60, what="the settings loaded")
        box.fill("70")
        box.press("Tab")
        page.click("#settings-save")
        note = page.locator("#settings-note")
        wait_until(
            lambda: "Saved" in note.inner_text() or "saved" in note.inner_text(), timeout=60, what="the confirmation"
        )
        # config.toml of AIGC_HOME as the process sees it (this test's), which is where the UI saves.
        assert "nsfw_threshold = 70" in (aigc_home / "config.toml").read_text()
    finally:
        context.close()
