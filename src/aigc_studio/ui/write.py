"""The Write tab: an article from a title through the writing service — outline (editable), sections
streaming in with a progress bar, stop, continue, regenerate one section, the Markdown editor with its
versions (open, compare), save, export, and the warning when the model does not write the language."""

from __future__ import annotations

import difflib
import html
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from ..errors import InvalidRequest, StudioError
from ..services.article_spec import MAX_LENGTH, MAX_NOTES, MAX_SECTIONS, MIN_LENGTH, ArticleSpec
from ..services.writing import ArticleRun
from ..storage.files import write_atomic
from . import edit_tools
from .common import Mistake, UIContext, note, progress_bar, reports_to
from .i18n import t, text

STREAM_INTERVAL = 0.1  # seconds between editor updates while a section streams


@dataclass
class WriteTab:
    refresh: object  # () -> updates of the model and document lists
    refresh_outputs: list[gr.Component]


def _fit_note(lang: str | None, fit: dict | None) -> str:
    if not fit or fit.get("fits") is not False:
        return ""
    names = {"en": text(lang, "w_lang_en"), "zh": text(lang, "w_lang_zh")}
    known = ", ".join(names.get(code, code) for code in fit["languages"])
    message = text(
        lang,
        "w_fit",
        model=fit["model"],
        known=known,
        language=names.get(fit["language"], fit["language"]),
        suggestion=fit["suggestion"] or "qwen2.5-1.5b-instruct",
    )
    return note(message, "error")


def _headings(outline: str) -> list[str]:
    return [line.strip() for line in (outline or "").splitlines() if line.strip()]


def build(ctx: UIContext, lang: gr.Radio) -> WriteTab:
    document = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=260, elem_classes=["aigc-sidebar"]):
            new = gr.Button(t("w_new"), size="sm", elem_id="write-new")
            documents = gr.Dropdown([], label=t("w_docs"), elem_id="write-docs")
            open_doc = gr.Button(t("w_docs_open"), size="sm", elem_id="write-docs-open")
            title = gr.Textbox(label=t("w_title"), placeholder=t("w_title_ph"), max_length=300, elem_id="write-title")
            language = gr.Radio(
                [("English", "en"), ("中文", "zh")], value="en", label=t("w_language"), elem_id="write-lang"
            )
            sections = gr.Slider(1, MAX_SECTIONS, value=5, step=1, label=t("w_sections"), elem_id="write-sections")
            length = gr.Number(
                800, minimum=MIN_LENGTH, maximum=MAX_LENGTH, precision=0, label=t("w_length"), elem_id="write-length"
            )
            length.raise_if_out_of_bounds = lambda *_: None  # the service says the range, in the page's language
            model = gr.Dropdown([], label=t("w_model"), elem_id="write-model")
            with gr.Accordion(t("w_more"), open=False):
                audience = gr.Textbox(label=t("w_audience"), placeholder=t("w_audience_ph"), elem_id="write-audience")
                tone = gr.Textbox(label=t("w_tone"), placeholder=t("w_tone_ph"), elem_id="write-tone")
                notes = gr.Textbox(label=t("w_notes"), lines=4, max_length=MAX_NOTES, elem_id="write-notes")
        with gr.Column(scale=3):
            fit = gr.HTML(elem_id="write-fit")
            with gr.Row():
                outline_btn = gr.Button(t("w_outline_btn"), elem_id="write-outline-btn")
                write_btn = gr.Button(t("w_write"), variant="primary", elem_id="write-run")
                stop = gr.Button(t("w_stop"), variant="stop", elem_id="write-stop")
                cont = gr.Button(t("w_continue"), elem_id="write-continue")
            progress = gr.HTML(elem_id="write-progress")
            status = gr.HTML(elem_id="write-status", elem_classes=["aigc-status"])
            with gr.Row(equal_height=False):
                with gr.Column(scale=2):
                    outline = gr.Textbox(label=t("w_outline"), lines=6, max_lines=20, elem_id="write-outline")
                    outline_save = gr.Button(t("w_outline_save"), size="sm", elem_id="write-outline-save")
                with gr.Column(scale=1):
                    regen_n = gr.Number(
                        1, minimum=1, maximum=MAX_SECTIONS, precision=0, label=t("w_regen_n"), elem_id="write-regen-n"
                    )
                    regen_n.raise_if_out_of_bounds = lambda *_: None
                    instruction = gr.Textbox(
                        label=t("w_regen_instruction"), max_length=1000, elem_id="write-regen-instruction"
                    )
                    regen = gr.Button(t("w_regen"), size="sm", elem_id="write-regen")
            editor = gr.Textbox(label=t("w_editor"), lines=18, max_lines=40, elem_id="write-editor", buttons=["copy"])
            edit_tools.build(ctx, editor)
            with gr.Row(equal_height=False, elem_classes=["aigc-bottom-row"]):
                save = gr.Button(t("w_save"), size="sm", elem_id="write-save")
                versions = gr.Dropdown([], label=t("w_versions"), elem_id="write-versions", scale=3)
                open_version = gr.Button(t("w_open"), size="sm", elem_id="write-version-open")
                compare = gr.Button(t("w_compare"), size="sm", elem_id="write-compare")
            diff = gr.Code(label=t("w_diff"), language="markdown", visible=False, elem_id="write-diff")
            with gr.Row(equal_height=False, elem_classes=["aigc-bottom-row"]):
                fmt = gr.Radio(["md", "html", "docx"], value="md", label=t("w_format"), elem_id="write-format")
                export = gr.Button(t("w_export"), size="sm", elem_id="write-export")
                file = gr.File(label=t("w_file"), interactive=False, elem_id="write-file")

    studio = lambda: ctx.studio  # noqa: E731 - read when a handler runs (the app's lifespan builds it)

    def version_choices(doc_id: str | None, selected: int | None = None) -> gr.Dropdown:
        if doc_id is None:
            return gr.Dropdown(choices=[], value=None)
        rows = studio().writing.versions(doc_id)
        choices = [(f"v{r['number']} · {r['reason']}", r["number"]) for r in reversed(rows)]
        return gr.Dropdown(choices=choices, value=selected or (rows[-1]["number"] if rows else None))

    def document_choices(selected: str | None = None) -> gr.Dropdown:
        rows = studio().writing.list(50)
        return gr.Dropdown(choices=[(f"{r['title']} ({r['id']})", r["id"]) for r in rows], value=selected)

    def refresh():
        registry = studio().registry
        models = [m.id for m in registry.all() if m.kind == "text"]
        return gr.Dropdown(choices=models, value=registry.default_model), document_choices()

    def spec_from(title_v, language_v, sections_v, length_v, model_v, audience_v, tone_v, notes_v) -> ArticleSpec:
        return ArticleSpec(
            title=title_v or "",
            language=language_v or "en",
            sections=int(sections_v or 5),
            length=int(length_v) if length_v is not None else 800,
            model=model_v or None,
            audience=audience_v or "",
            tone=tone_v or "",
            notes=notes_v or "",
        )

    def claim(session: str, run: ArticleRun) -> None:
        with ctx.lock:
            if ctx.write_runs.get(session) is not None:
                raise Mistake("w_busy")
            ctx.write_runs[session] = run

    def follow(run: ArticleRun, session: str, lang_value: str):
        """Render a run's events: the editor fills in as sections stream, the bar counts sections."""
        last = 0.0
        trimmed: list[str] = []
        claim(session, run)
        try:
            yield {fit: _fit_note(lang_value, run.fit.as_dict()), status: "", diff: gr.Code(visible=False)}
            percent, label = 5.0, text(lang_value, "w_progress_outline")
            if run.document_id is None and not run.article.headings:
                yield {progress: progress_bar(percent, label)}
            for event in run:
                kind = event.type
                if kind == "outline":
                    yield {document: event.document_id, outline: "\n".join(event.headings or [])}
                elif kind == "section_start":
                    label = text(
                        lang_value, "w_progress_section", k=event.section, n=event.total, heading=event.heading
                    )
                    percent = 100 * (event.section - 1) / max(event.total or 1, 1)
                    yield {progress: progress_bar(percent, label), editor: run.article.markdown()}
                elif kind == "reading":  # a long prompt: how much of it the model has read
                    reading = text(lang_value, "prompt_reading", done=event.read, total=event.prompt_tokens)
                    yield {progress: progress_bar(percent, f"{label} · {reading}")}
                elif kind == "trimmed":
                    trimmed.append(event.message or "")
                    shown = " · ".join(text(lang_value, "w_trimmed", message=m) for m in trimmed)
                    yield {status: note(shown, "info")}
                elif kind == "delta" and time.monotonic() - last > STREAM_INTERVAL:
                    last = time.monotonic()
                    yield {editor: run.article.markdown()}
                elif kind == "section_done":
                    yield {editor: run.article.markdown()}
                elif kind == "abstract" or (kind == "tags" and not run.article.abstract):
                    yield {progress: progress_bar(97, text(lang_value, "w_progress_finish"))}
                elif kind in ("done", "cancelled", "error"):
                    doc_id = run.document_id
                    content = studio().writing.get(doc_id)["version"]["content"] if doc_id else run.article.markdown()
                    total = len(run.article.sections)
                    written = sum(s["state"] == "done" for s in run.article.sections)
                    if kind == "done":
                        key = "w_outline_done" if run.kwargs.get("outline_only") else "w_done"
                        key = key if event.version is not None else "w_nothing"
                        message = note(text(lang_value, key, version=event.version, doc=doc_id), "ok")
                        bar = progress_bar(100, f"{written}/{total}", done=True)
                    elif kind == "cancelled":
                        message = note(
                            text(lang_value, "w_stopped", done=written, total=total, version=event.version or "-"),
                            "info",
                        )
                        bar = progress_bar(100 * written / max(total, 1), f"{written}/{total}", done=True)
                    else:
                        message = note(text(lang_value, "w_failed", message=event.message))
                        bar = progress_bar(100 * written / max(total, 1), f"{written}/{total}", done=True)
                    notes_html = "".join(note(text(lang_value, "w_trimmed", message=m), "info") for m in trimmed)
                    yield {
                        editor: content,
                        progress: bar,
                        status: message + notes_html,
                        versions: version_choices(doc_id),
                        documents: document_choices(doc_id),
                        outline: "\n".join(run.article.headings),
                    }
        finally:
            with ctx.lock:
                ctx.write_runs.pop(session, None)

    run_outputs = [document, outline, editor, progress, status, fit, versions, documents, diff]
    form = [title, language, sections, length, model, audience, tone, notes]

    @reports_to(status)
    def on_outline(request: gr.Request, lang_value, *values):
        run = studio().writing.start(spec_from(*values), outline_only=True)
        yield from follow(run, request.session_hash, lang_value)

    @reports_to(status)
    def on_write(request: gr.Request, lang_value, doc_id, outline_text, *values):
        headings = _headings(outline_text)
        spec = spec_from(*values)
        stored = studio().writing.get(doc_id)["version"] if doc_id is not None else None
        if stored is None or stored["spec"].get("title") != spec.title:
            # No document yet, or a new title: a new article (with the outline in the box, if any,
            # unless it is the open document's).
            own = headings and (stored is None or headings != stored["outline"])
            run = studio().writing.start(spec, headings=headings if own else None)
        else:
            if headings and headings != stored["outline"]:
                studio().writing.set_outline(doc_id, headings)
            run = studio().writing.continue_(doc_id, spec.model)
        yield from follow(run, request.session_hash, lang_value)

    @reports_to(status)
    def on_continue(request: gr.Request, lang_value, doc_id, model_v):
        if doc_id is None:
            raise Mistake("w_no_doc")
        yield from follow(studio().writing.continue_(doc_id, model_v or None), request.session_hash, lang_value)

    @reports_to(status)
    def on_regenerate(request: gr.Request, lang_value, doc_id, number, instruction_v, model_v):
        if doc_id is None:
            raise Mistake("w_no_doc")
        if number is None:
            raise InvalidRequest("section: give the number of the section to write again")
        run = studio().writing.regenerate(doc_id, int(number), instruction=instruction_v or None, model=model_v or None)
        yield from follow(run, request.session_hash, lang_value)

    def on_stop(request: gr.Request):
        with ctx.lock:
            run = ctx.write_runs.get(request.session_hash)
        if run is not None:
            run.cancel()

    @reports_to(status)
    def on_outline_save(lang_value, doc_id, outline_text):
        if doc_id is None:
            raise Mistake("w_no_doc")
        doc = studio().writing.set_outline(doc_id, _headings(outline_text))
        number = doc["version"]["number"]
        return {
            editor: doc["version"]["content"],
            versions: version_choices(doc_id, number),
            status: note(text(lang_value, "w_outline_saved", version=number), "ok"),
        }

    @reports_to(status)
    def on_save(lang_value, doc_id, content):
        if doc_id is None:
            raise Mistake("w_no_doc")
        doc = studio().writing.save(doc_id, content or "")
        number = doc["version"]["number"]
        return {
            outline: "\n".join(doc["version"]["outline"]),
            versions: version_choices(doc_id, number),
            documents: document_choices(doc_id),
            status: note(text(lang_value, "w_saved", version=number), "ok"),
        }

    def load(doc_id: str, number: int | None = None) -> dict:
        doc = studio().writing.get(doc_id, number)
        spec = doc["version"]["spec"]
        return {
            document: doc_id,
            editor: doc["version"]["content"],
            outline: "\n".join(doc["version"]["outline"]),
            versions: version_choices(doc_id, doc["version"]["number"]),
            title: spec.get("title", doc["title"]),
            language: doc["language"],
            sections: spec.get("sections", 5),
            length: spec.get("length", 800),
            progress: "",
            status: "",
            diff: gr.Code(visible=False),
        }

    @reports_to(status)
    def on_open_document(lang_value, doc_id):
        if not doc_id:
            raise Mistake("w_no_doc")
        return load(doc_id)

    @reports_to(status)
    def on_open_version(lang_value, doc_id, number):
        if doc_id is None:
            raise Mistake("w_no_doc")
        if number is None:
            raise Mistake("w_no_version")
        return {**load(doc_id, int(number)), versions: gr.skip()}

    @reports_to(status)
    def on_compare(lang_value, doc_id, number, content):
        if doc_id is None:
            raise Mistake("w_no_doc")
        if number is None:
            raise Mistake("w_no_version")
        stored = studio().writing.get(doc_id, int(number))["version"]["content"]
        lines = list(
            difflib.unified_diff(
                stored.splitlines(), (content or "").splitlines(), f"v{number}", "editor", lineterm="", n=2
            )
        )
        if not lines:
            return {diff: gr.Code(visible=False), status: note(text(lang_value, "w_same"), "info")}
        return {diff: gr.Code(value="\n".join(lines), visible=True), status: ""}

    @reports_to(status)
    def on_export(lang_value, doc_id, number, fmt_v):
        if doc_id is None:
            raise Mistake("w_no_doc")
        out = studio().writing.export(doc_id, fmt_v or "md", int(number) if number else None)
        # Gradio serves files from its own upload folder (under AIGC_HOME/cache/gradio) without asking.
        folder = Path(get_upload_folder()) / "exports" / doc_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / out.filename
        write_atomic(path, out.data)
        return {file: str(path), status: note(text(lang_value, "w_exported", name=html.unescape(out.filename)), "ok")}

    def on_new():
        return {
            document: None,
            editor: "",
            outline: "",
            versions: gr.Dropdown(choices=[], value=None),
            progress: "",
            status: "",
            fit: "",
            title: "",
            diff: gr.Code(visible=False),
        }

    outline_btn.click(on_outline, [lang, *form], run_outputs)
    write_btn.click(on_write, [lang, document, outline, *form], run_outputs)
    cont.click(on_continue, [lang, document, model], run_outputs)
    regen.click(on_regenerate, [lang, document, regen_n, instruction, model], run_outputs)
    stop.click(on_stop, None, None, queue=False)
    outline_save.click(on_outline_save, [lang, document, outline], [editor, versions, status])
    save.click(on_save, [lang, document, editor], [outline, versions, documents, status])
    loaded = [document, editor, outline, versions, title, language, sections, length, progress, status, diff]
    open_doc.click(on_open_document, [lang, documents], loaded)
    open_version.click(on_open_version, [lang, document, versions], loaded)
    compare.click(on_compare, [lang, document, versions, editor], [diff, status])
    export.click(on_export, [lang, document, versions, fmt], [file, status])
    new.click(on_new, None, [document, editor, outline, versions, progress, status, fit, title, diff])

    def on_fit(lang_value, language_v, model_v):
        try:
            fit_now = studio().models.language_fit(model_v or None, language_v or "en")
        except StudioError:  # no such model (yet): nothing to warn about
            return ""
        return _fit_note(lang_value, fit_now.as_dict())

    language.change(on_fit, [lang, language, model], fit)
    lang.change(on_fit, [lang, language, model], fit)  # the warning in the page's new language
    model.change(on_fit, [lang, language, model], fit)
    return WriteTab(refresh=refresh, refresh_outputs=[model, documents])
