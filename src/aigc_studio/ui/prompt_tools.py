"""Prompt tools on the Images tab: ✨ Expand (the text model turns the prompt box's idea into a detailed
prompt and negative prompt), saved styles (applied at generation, or into the prompt boxes as A1111's
"apply styles" button does), dynamic prompts on or off with their mode, and a wildcard preview. Each
handler calls one ``studio.prompts`` function."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..errors import StudioError
from .common import Mistake, UIContext, note, reports_to
from .i18n import t, text

DYNAMIC_OFF = "off"


@dataclass
class PromptTools:
    expand: gr.Button
    expand_note: gr.HTML
    styles: gr.Dropdown
    apply_styles: gr.Button
    refresh_styles: gr.Button
    dynamic: gr.Radio
    preview: gr.Button
    preview_box: gr.Textbox
    dynamic_note: gr.HTML
    wildcards: gr.Markdown


def build_widgets() -> PromptTools:
    """The tools' widgets, where the caller's layout puts them (under the prompt boxes)."""
    with gr.Row(equal_height=True, elem_id="img-prompt-tools"):
        expand = gr.Button(t("pc_expand"), size="sm", min_width=100, scale=0, elem_id="img-expand")
        styles = gr.Dropdown(
            [],
            value=[],
            multiselect=True,
            label=t("pc_styles"),
            info=t("pc_styles_help"),
            scale=4,
            elem_id="img-styles",
        )
        apply_styles = gr.Button(t("pc_apply_styles"), size="sm", min_width=100, scale=0, elem_id="img-apply-styles")
        refresh_styles = gr.Button("🔄", size="sm", min_width=40, scale=0, elem_id="img-styles-refresh")
    expand_note = gr.HTML(elem_id="img-expand-note")
    with gr.Accordion(t("pc_dynamic"), open=False, elem_id="img-dynamic-box"):
        dynamic = gr.Radio(
            [
                (t("pc_dynamic_off"), DYNAMIC_OFF),
                (t("pc_dynamic_random"), "random"),
                (t("pc_dynamic_all"), "combinatorial"),
            ],
            value=DYNAMIC_OFF,
            label=t("pc_dynamic_mode"),
            info=t("pc_dynamic_help"),
            elem_id="img-dynamic",
        )
        with gr.Row(equal_height=True):
            preview = gr.Button(t("pc_preview"), size="sm", min_width=100, scale=0, elem_id="img-dynamic-preview")
            preview_box = gr.Textbox(
                label=t("pc_preview_out"), lines=3, max_lines=10, interactive=False, elem_id="img-dynamic-prompts"
            )
        dynamic_note = gr.HTML(elem_id="img-dynamic-note")
        wildcards = gr.Markdown(elem_id="img-wildcards")
    return PromptTools(
        expand,
        expand_note,
        styles,
        apply_styles,
        refresh_styles,
        dynamic,
        preview,
        preview_box,
        dynamic_note,
        wildcards,
    )


def request_values(styles: list[str] | None, dynamic: str | None) -> dict:
    """The tools' part of an ImageRequest."""
    return {"styles": list(styles or []), "dynamic_prompts": None if dynamic in (None, DYNAMIC_OFF) else dynamic}


def wire(ctx: UIContext, tools: PromptTools, lang: gr.Radio, form: dict[str, gr.Component]) -> None:
    """Connect the tools to the prompt boxes and the seed of the Images tab's form."""
    prompt, negative, seed = form["prompt"], form["negative_prompt"], form["seed"]

    @reports_to(tools.expand_note)
    def on_expand(lang_value, idea: str):
        if not (idea or "").strip():
            raise Mistake("pc_expand_empty")
        result = ctx.studio.prompts.expand(idea)  # the idea's language picks the template
        made = text(lang_value, "pc_expanded", model=result.model, seed=result.seed, template=result.template)
        return {
            prompt: result.prompt,
            negative: result.negative_prompt,
            tools.expand_note: note(made, "ok"),
        }

    @reports_to(tools.expand_note)
    def on_apply_styles(lang_value, names: list[str], positive: str, negative_value: str):
        if not names:
            raise Mistake("pc_styles_none")
        styled, styled_negative = ctx.studio.prompts.apply_styles(positive or "", negative_value or "", list(names))
        # As A1111: the styles are now in the text, so they are no longer applied at generation.
        return {prompt: styled, negative: styled_negative, tools.styles: [], tools.expand_note: ""}

    @reports_to(tools.dynamic_note)
    def on_preview(lang_value, template: str, mode: str, seed_value):
        mode = "random" if mode in (None, DYNAMIC_OFF) else mode
        seed_used = int(seed_value) if seed_value not in (None, "") and int(seed_value) >= 0 else None
        prompts = ctx.studio.prompts.preview(template or "", mode, count=4 if mode == "random" else 1, seed=seed_used)
        return {
            tools.preview_box: "\n".join(prompts),
            tools.wildcards: wildcard_list(lang_value),
            tools.dynamic_note: "",
        }

    def wildcard_list(lang_value) -> str:
        found = ctx.studio.prompts.dynamic.wildcards()
        if not found:
            return text(lang_value, "pc_no_wildcards", folder=str(ctx.studio.prompts.dynamic.folder))
        return "\n".join(f"- `__{w.name}__` ({len(w.values)}): {', '.join(w.values[:6])}" for w in found)

    tools.expand.click(on_expand, [lang, prompt], [prompt, negative, tools.expand_note], show_progress="minimal")
    tools.apply_styles.click(
        on_apply_styles, [lang, tools.styles, prompt, negative], [prompt, negative, tools.styles, tools.expand_note]
    )
    tools.refresh_styles.click(lambda: style_choices(ctx), None, tools.styles, queue=False)
    tools.preview.click(
        on_preview,
        [lang, prompt, tools.dynamic, seed],
        [tools.preview_box, tools.wildcards, tools.dynamic_note],
        show_progress="minimal",
    )


def style_choices(ctx: UIContext) -> gr.Dropdown:
    """The styles dropdown with the styles there are (a malformed styles.csv leaves it empty; the error
    shows where the styles are used)."""
    try:
        names = [s.name for s in ctx.studio.prompts.styles.all()]
    except StudioError:  # a page load must not fail over the styles file; using a style reports why
        names = []
    return gr.Dropdown(choices=names)
