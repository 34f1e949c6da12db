"""The Templates section of the Settings tab: every prompt template with its source (shipped, yours, or
yours in place of a shipped one); view one as its TOML file, edit it there or start a new one, save
(checked first: the message names what is wrong), delete, export (download) and import (upload). The
work is ``studio.templates``'s."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from ..services.template_library import source_of, template_from_fields
from ..services.templates import parse_template
from ..storage.files import write_atomic
from .common import Mistake, UIContext, note, reports_to
from .i18n import is_zh, t, text

COLUMNS = ("tpl_col_key", "tpl_col_kind", "tpl_col_source", "tpl_col_title")


def build(ctx: UIContext, lang: gr.Radio) -> tuple[Callable, list[gr.Component]]:
    """The section; returns (load handler taking the page language, its outputs)."""
    gr.Markdown(t("tpl_title"))
    gr.Markdown(t("tpl_note"), elem_classes=["aigc-hint"])
    table = gr.Dataframe(interactive=False, wrap=True, max_height=300, elem_id="tpl-table")
    problems = gr.HTML(elem_id="tpl-problems")
    with gr.Row(equal_height=True):
        pick = gr.Dropdown([], label=t("tpl_pick"), elem_id="tpl-pick", scale=3)
        source = gr.HTML(elem_id="tpl-source")
    body = gr.Textbox(label=t("tpl_file"), lines=14, max_lines=40, elem_id="tpl-body")
    with gr.Row():
        new = gr.Button(t("tpl_new"), elem_id="tpl-new", scale=0, min_width=100)
        save = gr.Button(t("tpl_save"), variant="primary", elem_id="tpl-save", scale=0, min_width=100)
        delete = gr.Button(t("tpl_delete"), variant="stop", elem_id="tpl-delete", scale=0, min_width=100)
        export = gr.DownloadButton(t("tpl_export"), elem_id="tpl-export", scale=0, min_width=100, interactive=False)
        upload = gr.UploadButton(
            t("tpl_import"), file_types=[".toml"], type="filepath", elem_id="tpl-import", scale=0, min_width=140
        )
        replace = gr.Checkbox(label=t("tpl_replace"), value=False, elem_id="tpl-replace")
    message = gr.HTML(elem_id="tpl-note")

    def shown_source(lang_value: str | None, template) -> str:
        return text(lang_value, f"tpl_source_{source_of(template)}")

    def listing(lang_value: str | None, selected: str | None = None):
        """The table, the picker (on ``selected``) and what could not be read."""
        library = ctx.studio.templates
        # Yours first (what one comes here to manage), then the shipped ones, each by kind and key.
        templates = sorted(library.all(), key=lambda tp: source_of(tp) == "shipped")
        rows = [[tp.key, tp.kind, shown_source(lang_value, tp), tp.title] for tp in templates]
        headers = [text(lang_value, key) for key in COLUMNS]
        choices = [(f"{tp.key} — {tp.title}" if tp.title else tp.key, tp.key) for tp in templates]
        found = library.problems()
        skipped = note(text(lang_value, "tpl_problems", problems="; ".join(found)), "error") if found else ""
        return gr.Dataframe(value=rows, headers=headers), gr.Dropdown(choices=choices, value=selected), skipped

    def opened(lang_value: str | None, key: str | None):
        """The picked template's file, its source and its download."""
        if not key:
            return "", "", gr.DownloadButton(value=None, interactive=False)
        template = ctx.studio.templates.get(key)
        filename, content = ctx.studio.templates.export(key)
        # The download is a file Gradio may serve: under its upload folder (AIGC_HOME/cache/gradio).
        folder = Path(get_upload_folder()) / "template-exports"
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / filename, content)
        where = text(lang_value, "tpl_source", source=shown_source(lang_value, template))
        return content, note(where, "info"), gr.DownloadButton(value=str(folder / filename), interactive=True)

    def on_load(lang_value: str | None = None):
        return listing(lang_value)

    @reports_to(message)
    def on_pick(lang_value: str, key: str | None):
        return (*opened(lang_value, key), "")

    @reports_to(message)
    def on_new(lang_value: str):
        language = "zh" if is_zh(lang_value) else "en"
        skeleton = template_from_fields(
            name="my-template",
            language=language,
            kind="general",
            title="",
            prompt=text(lang_value, "tpl_skeleton_prompt"),
            variables={"topic": text(lang_value, "tpl_skeleton_topic")},
        )
        return skeleton, gr.Dropdown(value=None), "", gr.DownloadButton(value=None, interactive=False), ""

    @reports_to(message)
    def on_save(lang_value: str, selected: str | None, content: str, replace_value: bool):
        if not (content or "").strip():
            raise Mistake("tpl_empty")
        # Saving the template that is open changes it; a file naming another key is a new template.
        key = parse_template(content, "template").key
        saved = ctx.studio.templates.save(content, replace=replace_value or key == selected, where="template")
        done = note(text(lang_value, "tpl_saved", template=saved.key, source=shown_source(lang_value, saved)), "ok")
        return (*listing(lang_value, saved.key), *opened(lang_value, saved.key), done)

    @reports_to(message)
    def on_delete(lang_value: str, selected: str | None):
        if not selected:
            raise Mistake("tpl_pick_first")
        deleted = ctx.studio.templates.delete(selected)
        if deleted.restored:
            done = text(lang_value, "tpl_restored", template=selected)
            return (*listing(lang_value, selected), *opened(lang_value, selected), note(done, "ok"))
        done = text(lang_value, "tpl_deleted", template=selected)
        return (*listing(lang_value), *opened(lang_value, None), note(done, "ok"))

    @reports_to(message)
    def on_import(lang_value: str, path: str | None, replace_value: bool):
        if not path:
            raise Mistake("tpl_empty")
        content = Path(path).read_text(encoding="utf-8")
        saved = ctx.studio.templates.save(content, replace=replace_value, where=Path(path).name)
        done = note(text(lang_value, "tpl_imported", template=saved.key, source=shown_source(lang_value, saved)), "ok")
        return (*listing(lang_value, saved.key), *opened(lang_value, saved.key), done)

    listed = [table, pick, problems]
    file_view = [body, source, export]
    pick.input(on_pick, [lang, pick], [*file_view, message])
    new.click(on_new, [lang], [body, pick, source, export, message])
    save.click(on_save, [lang, pick, body, replace], [*listed, *file_view, message])
    delete.click(on_delete, [lang, pick], [*listed, *file_view, message])
    upload.upload(on_import, [lang, upload, replace], [*listed, *file_view, message])
    return on_load, listed
