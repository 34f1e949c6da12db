"""The Settings tab: where outputs go, and the studio's defaults as ``$AIGC_HOME/config.toml`` holds
them, one widget per declared setting (``config.SETTINGS``). Save writes the changed ones, all or none:
a value the studio could not start with is refused with a message by the button. Below them, the prompt
templates (ui/templates.py)."""

from __future__ import annotations

import os
from collections.abc import Callable

import gradio as gr

from ..config import SETTINGS, file_settings, save_settings
from ..errors import InvalidRequest
from . import templates
from .common import Mistake, UIContext, note, reports_to
from .i18n import t, text


def build(ctx: UIContext, lang: gr.Radio) -> tuple[Callable, list[gr.Component]]:
    """The tab; returns (load handler, its outputs), run when the page loads and when the tab opens."""
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
            # The button and its message first: the confirmation shows without scrolling.
            with gr.Row(equal_height=True):
                save = gr.Button(t("set_save"), variant="primary", scale=0, min_width=140, elem_id="settings-save")
                message = gr.HTML(elem_id="settings-note")
            running = gr.HTML(elem_id="settings-running")
            widgets: dict[str, gr.Component] = {}
            for key, setting in SETTINGS.items():
                common = {"label": t(f"set_{key}"), "info": t(f"set_{key}_help"), "elem_id": f"settings-{key}"}
                options = getattr(setting.check, "options", None)
                if isinstance(setting.default, bool):
                    widgets[key] = gr.Checkbox(**common)
                elif options:
                    widgets[key] = gr.Dropdown(choices=list(options), **common)
                elif isinstance(setting.default, int):
                    widgets[key] = gr.Number(precision=0, **common)
                elif isinstance(setting.default, float):
                    widgets[key] = gr.Number(**common)
                else:
                    widgets[key] = gr.Textbox(**common)
    load_templates, template_outputs = templates.build(ctx, lang)

    def differences(lang_value: str | None, saved: dict) -> str:
        """Which values this server runs with that config.toml does not say (a flag, a variable)."""
        live = ctx.studio.config.values
        changed = [f"{text(lang_value, f'set_{k}')} = {live[k]}" for k in SETTINGS if live[k] != saved[k]]
        return note(text(lang_value, "set_running", values=", ".join(changed)), "info") if changed else ""

    def on_load(lang_value: str | None = None):
        config = ctx.studio.config
        saved = file_settings()
        shown = str(config.home), str(config.outputs_dir), differences(lang_value, saved), *saved.values()
        return *shown, *load_templates(lang_value)

    @reports_to(message)
    def on_save(lang_value: str, *values):
        saved = file_settings()
        changes: dict[str, object] = {}
        for (key, setting), value in zip(SETTINGS.items(), values, strict=True):
            if isinstance(setting.default, bool):
                value = bool(value)
            elif isinstance(setting.default, int):
                if value is None:
                    raise Mistake("v_field", field=text(lang_value, f"set_{key}"), what=text(lang_value, "v_integer"))
                value = int(value)
            elif isinstance(setting.default, float):
                if value is None:
                    raise Mistake("v_field", field=text(lang_value, f"set_{key}"), what=text(lang_value, "v_number"))
                value = float(value)
            else:
                value = (value or "").strip()
            if value != saved[key]:
                changes[key] = value
        if not changes:
            return note(text(lang_value, "set_nothing"), "info"), gr.skip()
        try:
            save_settings(changes)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None  # nothing was saved; the message names the setting
        done = text(lang_value, "set_saved", keys=", ".join(text(lang_value, f"set_{k}") for k in changes))
        overridden = [SETTINGS[k].env for k in changes if SETTINGS[k].env in os.environ]
        if overridden:
            done += " " + text(lang_value, "set_env_wins", envs=", ".join(overridden))
        return note(done, "ok"), differences(lang_value, file_settings())

    save.click(on_save, [lang, *widgets.values()], [message, running])
    return on_load, [home, outputs_dir, running, *widgets.values(), *template_outputs]
