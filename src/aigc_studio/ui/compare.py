"""The Compare tab: one prompt to 2-4 text models with their answers streaming side by side (time to first
token, tokens/s, tokens, finish reason under each), or one image request over image models (a row) or a
parameter's values (a grid); and the saved comparisons, reopened. A thin shell over studio.compare."""

from __future__ import annotations

import html
import threading
import time

import gradio as gr

from ..contracts import ImageRequest, TextOptions
from ..services.compare import parse_axis
from .common import Mistake, UIContext, empty_to_none, field_widget, note, reports_to
from .i18n import t, text

STREAM_INTERVAL = 0.1  # seconds between pane updates while the models answer
TEXT_OPTIONS = ("temperature", "seed", "max_tokens")
IMAGE_OPTIONS = ("steps", "cfg_scale", "width", "height")

CSS = """
.cmp-panes { display: flex; gap: 12px; align-items: stretch; }
.cmp-pane { flex: 1 1 0; min-width: 0; border: 1px solid var(--border-color-primary); border-radius: 8px;
  padding: 8px 10px; background: var(--block-background-fill); display: flex; flex-direction: column; }
.cmp-pane h4 { margin: 0 0 6px; font-size: .95rem; }
.cmp-pane pre { flex: 1; white-space: pre-wrap; word-break: break-word; font-family: var(--font); margin: 0;
  min-height: 6em; }
.cmp-pane .cmp-stats { margin-top: 8px; font-size: .8rem; color: var(--body-text-color-subdued);
  font-variant-numeric: tabular-nums; }
.cmp-pane.error .cmp-stats { color: var(--error-text-color); }
"""


def _num(value, pattern: str = "{:.0f}") -> str:
    return "–" if value is None else pattern.format(value)


def panes_html(lang: str | None, panes: list[dict]) -> str:
    """The panes side by side: each model's answer, then its timings (or its error)."""
    cells = []
    for i, pane in enumerate(panes):
        if pane.get("status") == "error":
            stats = html.escape(text(lang, "cmp_pane_error", error=pane.get("error") or ""))
        elif pane.get("status") == "running" and pane.get("reading"):  # a long prompt, not read yet
            done, total = pane["reading"]
            stats = html.escape(text(lang, "prompt_reading", done=done, total=total))
        elif pane.get("status") == "running":
            stats = html.escape(text(lang, "cmp_pane_running"))
        else:
            stats = html.escape(
                text(
                    lang,
                    "cmp_stats",
                    ttft=_num(pane.get("ttft_ms")),
                    speed=_num(pane.get("tokens_per_s"), "{:.1f}"),
                    tokens=_num(pane.get("completion_tokens")),
                    finish=pane.get("finish_reason") or "–",
                )
            )
        kind = " error" if pane.get("status") == "error" else ""
        cells.append(
            f'<div class="cmp-pane{kind}" id="cmp-pane-{i}"><h4>{html.escape(pane["model"])}</h4>'
            f'<pre>{html.escape(pane.get("text") or "")}</pre><div class="cmp-stats">{stats}</div></div>'
        )
    return f'<style>{CSS}</style><div class="cmp-panes">{"".join(cells)}</div>'


def _cells_gallery(record_cells: list[dict], axes: list[str]) -> list[tuple[str, str]]:
    shown = []
    for cell in record_cells:
        if cell.get("path"):
            where = f"{axes[0]}: {cell['x']}" + (f", {axes[1]}: {cell['y']}" if len(axes) > 1 else "")
            shown.append((cell["path"], where))
    return shown


def _unset_box(name: str) -> gr.Textbox:
    """A box for a number that may stay unset (the model's own default). Not gr.Number: Gradio 6 shows an
    empty Number as 0 and sends 0, so "unset" could not be told from 0 (max_tokens 0 is refused). The
    declaration checks what is typed, and says the range in the page's language."""
    return gr.Textbox(label=t(f"f_{name}"), info=t(f"h_{name}"), placeholder=t("unset_ph"), elem_id=f"compare-{name}")


def build(ctx: UIContext, lang: gr.Radio):
    """The tab's widgets and handlers; returns the function that refreshes its model and saved lists."""
    runs: dict[str, object] = {}  # session hash -> its comparison in progress (to stop it)
    lock = threading.Lock()
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=260, elem_classes=["aigc-sidebar"]):
            mode = gr.Radio(
                [(t("cmp_mode_text"), "text"), (t("cmp_mode_image"), "image")],
                value="text",
                label=t("cmp_mode"),
                elem_id="compare-mode",
            )
            text_models = gr.Dropdown(
                [], multiselect=True, max_choices=4, label=t("cmp_models"), elem_id="compare-models"
            )
            image_models = gr.Dropdown(
                [],
                multiselect=True,
                max_choices=4,
                label=t("cmp_image_models"),
                visible=False,
                elem_id="compare-image-models",
            )
            with gr.Column() as text_box:
                system = gr.Textbox(label=t("cmp_system"), lines=2, elem_id="compare-system")
                text_options = [_unset_box(name) for name in TEXT_OPTIONS]
            with gr.Column(visible=False) as image_box:
                image_seed = field_widget(ImageRequest, "seed", elem_id="compare-image-seed")
                image_options = [_unset_box(name) for name in IMAGE_OPTIONS]
                grid_x = gr.Textbox(label=t("cmp_grid_x"), placeholder="cfg=3,7,11", elem_id="compare-grid-x")
                grid_y = gr.Textbox(label=t("cmp_grid_y"), placeholder="steps=10,20", elem_id="compare-grid-y")
            saved = gr.Dropdown([], label=t("cmp_saved"), elem_id="compare-saved")
            reopen = gr.Button(t("cmp_open"), size="sm", elem_id="compare-open")
        with gr.Column(scale=3):
            prompt = gr.Textbox(label=t("cmp_prompt"), lines=3, elem_id="compare-prompt")
            with gr.Row():
                run = gr.Button(t("cmp_run"), variant="primary", elem_id="compare-run")
                stop = gr.Button(t("cmp_stop"), variant="stop", elem_id="compare-stop")
            status = gr.HTML(elem_id="compare-status", elem_classes=["aigc-status"])
            panes = gr.HTML(elem_id="compare-panes")
            gallery = gr.Gallery(label=t("cmp_row"), columns=4, visible=False, elem_id="compare-gallery")
            grid = gr.Image(label=t("cmp_grid"), type="filepath", visible=False, elem_id="compare-grid")

    studio = lambda: ctx.studio  # noqa: E731 - read when a handler runs (the app's lifespan builds it)

    def refresh():
        registry = studio().registry
        rows = studio().compare.list(50)
        choices = [(f"{r['kind']} · {', '.join(r['models'])} · {r['prompt'][:40]} ({r['id']})", r["id"]) for r in rows]
        return (
            gr.Dropdown(choices=[m.id for m in registry.all() if m.kind == "text"]),
            gr.Dropdown(choices=[m.id for m in registry.all() if m.kind == "image"]),
            gr.Dropdown(choices=choices, value=None),
        )

    def on_mode(value: str):
        image = value == "image"
        return (
            gr.update(visible=not image),
            gr.update(visible=image),
            gr.update(visible=not image),
            gr.update(visible=image),
            gr.update(visible=not image),
            gr.update(visible=image),
            gr.update(visible=image),
        )

    mode.change(on_mode, mode, [text_models, image_models, text_box, image_box, panes, gallery, grid], queue=False)

    @reports_to(status)
    def on_run(request: gr.Request, lang_value, mode_value, prompt_value, text_value, image_value, system_value, *rest):
        session = request.session_hash or ""
        if not (prompt_value or "").strip():
            raise Mistake("cmp_no_prompt")
        n_text = len(TEXT_OPTIONS)
        if mode_value == "text":
            options = TextOptions(
                **{
                    k: empty_to_none(v)
                    for k, v in zip(TEXT_OPTIONS, rest[:n_text], strict=True)
                    if empty_to_none(v) is not None
                }
            )
            comparison = studio().compare.text(
                prompt_value, list(text_value or []), system=empty_to_none(system_value), options=options, source="ui"
            )
            with lock:
                runs[session] = comparison
            yield {
                status: text(lang_value, "cmp_running", n=len(comparison.models)),
                panes: panes_html(lang_value, comparison.panes),
            }
            shown = 0.0
            try:
                for event in comparison:
                    if event.type == "delta" and time.monotonic() - shown < STREAM_INTERVAL:
                        continue
                    shown = time.monotonic()
                    yield {panes: panes_html(lang_value, comparison.panes)}
            finally:
                with lock:
                    runs.pop(session, None)
            saved_note = note(text(lang_value, "cmp_saved_as", id=comparison.id), "ok")
            yield {status: saved_note, panes: panes_html(lang_value, comparison.panes)}
            return
        seed_value, *image_values = rest[n_text:]
        fields = {
            k: v
            for k, v in zip(IMAGE_OPTIONS, image_values[: len(IMAGE_OPTIONS)], strict=True)
            if empty_to_none(v) is not None
        }
        grid_specs = [s for s in image_values[len(IMAGE_OPTIONS) :] if (s or "").strip()]
        fields["seed"] = int(seed_value) if seed_value is not None else -1
        image_request = ImageRequest(prompt=prompt_value, **fields)
        comparison = studio().compare.images_compare(
            image_request, list(image_value or []), [parse_axis(s) for s in grid_specs], source="ui"
        )
        with lock:
            runs[session] = comparison
        axes = [a.name for a in comparison.axes]
        total = len(comparison.cells)
        yield {status: text(lang_value, "cmp_images_running", done=0, total=total), gallery: [], grid: None}
        done = 0
        try:
            for event in comparison:
                if event.type in ("cell", "cell_error"):
                    done += 1
                    yield {
                        status: text(lang_value, "cmp_images_running", done=done, total=total),
                        gallery: _cells_gallery(comparison.cells, axes),
                    }
        finally:
            with lock:
                runs.pop(session, None)
        saved_note = note(text(lang_value, "cmp_saved_as", id=comparison.id), "ok")
        yield {status: saved_note, gallery: _cells_gallery(comparison.cells, axes), grid: str(comparison.grid_path)}

    def on_stop(request: gr.Request):
        with lock:
            comparison = runs.get(request.session_hash or "")
        if comparison is not None:
            comparison.cancel()

    @reports_to(status)
    def on_open(lang_value, comparison_id):
        if not comparison_id:
            raise Mistake("cmp_pick_saved")
        record = studio().compare.get(comparison_id)
        shown = note(text(lang_value, "cmp_reopened", id=record["id"], prompt=record["prompt"][:80]), "info")
        if record["kind"] == "text":
            return {
                status: shown,
                prompt: record["prompt"],
                panes: gr.update(value=panes_html(lang_value, record["results"]), visible=True),
                gallery: gr.update(visible=False),
                grid: gr.update(visible=False),
            }
        axes = [a["name"] for a in record["request"]["axes"]]
        return {
            status: shown,
            prompt: record["prompt"],
            panes: gr.update(visible=False),
            gallery: gr.update(value=_cells_gallery(record["results"], axes), visible=True),
            grid: gr.update(value=record["grid_path"], visible=True),
        }

    inputs = [lang, mode, prompt, text_models, image_models, system, *text_options, image_seed, *image_options]
    run.click(on_run, [*inputs, grid_x, grid_y], [status, panes, gallery, grid])
    stop.click(on_stop, None, None, queue=False)
    reopen.click(on_open, [lang, saved], [status, prompt, panes, gallery, grid])
    return refresh, [text_models, image_models, saved]
