"""The Settings tab: where outputs go, and the studio's defaults, one widget per declared setting
(``config.SETTINGS``), saved to ``$AIGC_HOME/config.toml``."""

from __future__ import annotations

import os
from collections.abc import Callable

import gradio as gr

from ..config import SETTINGS, save_setting
from .common import UIContext, shows_errors
from .i18n import t, text


def build(ctx: UIContext, lang: gr.Radio) -> tuple[Callable, list[gr.Component]]:
    """The tab; returns (load handler, its outputs) for the page load."""
    with gr.Row(equal_height=False):
        with gr.Column():
            gr.Markdown(t("set_storage_title"))
            home = gr.Textbox(label=t("set_home"), interactive=False, elem_id="settings-home")
            outputs_dir = gr.Textbox(
                label=t("set_outputs"),
                info=t("set_outputs_help"),
                interactive=False,
                elem_id="settings-outputs",
                buttons=["copy"],
            )
        with gr.Column():
            gr.Markdown(t("set_defaults_title"))
            widgets: dict[str, gr.Component] = {}
            for key, setting in SETTINGS.items():
                common = {"label": t(f"set_{key}"), "info": t(f"set_{key}_help"), "elem_id": f"settings-{key}"}
                if isinstance(setting.default, int):
                    widgets[key] = gr.Number(precision=0, **common)
                else:
                    widgets[key] = gr.Textbox(**common)
            save = gr.Button(t("set_save"), variant="primary", elem_id="settings-save")
            note = gr.Markdown(elem_id="settings-note")

    def on_load():
        config = ctx.studio.config
        return str(config.home), str(config.outputs_dir), *[config.values[key] for key in SETTINGS]

    @shows_errors
    def on_save(lang_value: str, *values):
        config = ctx.studio.config
        changed = []
        for (key, setting), value in zip(SETTINGS.items(), values, strict=True):
            value = int(value) if isinstance(setting.default, int) and value is not None else (value or "")
            if value != config.values[key]:
                save_setting(key, value)
                changed.append(key)
        overridden = [SETTINGS[k].env for k in changed if SETTINGS[k].env in os.environ]
        message = text(lang_value, "set_saved", keys=", ".join(changed)) if changed else text(lang_value, "set_nothing")
        if overridden:
            message += " " + text(lang_value, "set_env_wins", envs=", ".join(overridden))
        return message

    save.click(on_save, [lang, *widgets.values()], note)
    return on_load, [home, outputs_dir, *widgets.values()]
