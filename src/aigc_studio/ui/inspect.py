"""The Inspect tab: drop any file and see its AI labels and provenance, checked (services/inspect.py):
the verdict, the readable summary ``aigc inspect`` prints, and the whole report as JSON."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..services.inspect import summary
from .common import UIContext, reports_to
from .i18n import t


def build(ctx: UIContext, lang: gr.Radio) -> None:
    """The tab: a file drop on the left; the verdict, the summary and the JSON report on the right."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            upload = gr.File(label=t("ins_file"), file_count="single", type="filepath", elem_id="ins-file")
            gr.Markdown(t("ins_help"), elem_id="ins-help")
            note = gr.HTML(elem_id="ins-note")
        with gr.Column(scale=3):
            verdict = gr.Markdown(elem_id="ins-verdict")
            text_box = gr.Textbox(
                label=t("ins_summary"), lines=16, max_lines=40, interactive=False, elem_id="ins-summary"
            )
            report_json = gr.JSON(label=t("ins_report"), open=True, max_height=600, elem_id="ins-json")

    @reports_to(note)
    def on_file(path: str | None, lang_value: str):
        if not path:
            return {note: "", verdict: "", text_box: "", report_json: None}
        file = Path(path)
        report = ctx.studio.inspector.inspect(file.read_bytes(), file.name)
        return {note: "", verdict: f"### {report['verdict']}", text_box: summary(report), report_json: report}

    upload.change(on_file, [upload, lang], [note, verdict, text_box, report_json])
