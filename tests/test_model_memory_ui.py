"""Where a user looks for the model_memory setting and what is loaded: the Models tab's Loaded column and
the Settings tab."""

from __future__ import annotations

import httpx
import pytest

from .conftest import studio_server
from .ui_helpers import open_tab, studio_pages, wait_until

# The cell (column ``column``) of the row whose first cell (the model id) is ``model``.
CELL = """(cells, [model, column]) => {
    const id = cells.find(c => /^cell-\\d+-0$/.test(c.dataset.testid) && c.textContent.trim() === model);
    if (!id) return null;
    const row = id.dataset.testid.split('-')[1];
    return cells.find(c => c.dataset.testid === `cell-${row}-${column}`)?.textContent.trim() ?? null;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("memory-ui-home")
    with studio_server(home, model="echo", image_model="plain", model_memory="one") as live:
        yield live


def loaded_cell(page, model: str) -> str | None:
    """The Loaded column (the ninth) of the model's row in the Models tab's table."""
    return page.eval_on_selector_all("#models-table [data-testid^='cell-']", CELL, [model, 8])


def test_the_models_tab_shows_which_kind_is_loaded_and_settings_show_the_setting(browser, server):
    picture = httpx.post(
        server.url + "/sdapi/v1/txt2img", json={"prompt": "a red door", "steps": 2, "width": 64, "height": 64}
    )
    assert picture.status_code == 200, picture.text
    with studio_pages(browser, server.url) as open_page:
        page = open_page()
        open_tab(page, "Models")
        wait_until(lambda: loaded_cell(page, "plain") == "✓", what="plain marked loaded")
        assert loaded_cell(page, "echo") == ""  # freed for the image model
        answer = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "hello"}]},
            timeout=60,
        )
        assert answer.json()["choices"][0]["message"]["content"] == "hello"
        open_tab(page, "Chat")
        open_tab(page, "Models")  # the table is filled again as the tab opens
        wait_until(lambda: loaded_cell(page, "echo") == "✓", what="echo marked loaded")
        assert loaded_cell(page, "plain") == ""

        open_tab(page, "Settings")
        setting = page.locator("#settings-model_memory input").first
        wait_until(lambda: setting.input_value() == "both", what="the setting as config.toml holds it")
        # This server runs with "one" (set where it was started), and the tab says so.
        running = page.locator("#settings-running")
        wait_until(lambda: "Models in memory = one" in running.inner_text(), what="the running value")
