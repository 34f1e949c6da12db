"""The editing operations panel, under a document editor (the Write tab's): pick an operation (and its
tone or target language), run it on the editor's selection — read from the textarea in the browser;
nothing selected is the whole text — watch the answer stream in, see the changes (inserted and deleted
text marked), then Accept (the new text goes into the editor) or Reject. Titles and keywords come as a
list. The work is ``studio.editing``'s; the panel only parses, calls and shows."""

from __future__ import annotations

import html
import threading

import gradio as gr

from ..services.editing import OPERATIONS, Change, EditRequest, EditResult, EditRun
from .common import Mistake, UIContext, note, reports_to
from .i18n import t, text
from .messages import message_text

# The Python offsets are code points; a textarea counts UTF-16 units (an emoji is two): convert.
# The page's language comes along for the messages (the page script keeps it on <html lang>).
_SELECTION_JS = """
(...args) => {
  const area = document.querySelector('#%s textarea');
  let selection = '';
  if (area && area.selectionStart !== area.selectionEnd) {
    const points = (i) => Array.from(area.value.slice(0, i)).length;
    selection = points(area.selectionStart) + ':' + points(area.selectionEnd);
  }
  args[0] = document.documentElement.lang || 'en';
  args[args.length - 1] = selection;
  return args;
}
"""
_DIFF_STYLE = (
    "white-space: pre-wrap; word-break: break-word; max-height: 320px; overflow-y: auto; padding: 8px 10px; "
    "border: 1px solid var(--border-color-primary); border-radius: 6px; line-height: 1.5"
)
_INS = "background: #d1fadf; color: #05603a; text-decoration: none"
_DEL = "background: #fee4e2; color: #b42318; text-decoration: line-through"


def diff_html(changes: list[Change]) -> str:
    """The display diff as HTML: inserted text green, deleted text red and struck through."""
    parts = []
    for change in changes:
        body = html.escape(change.text)
        if change.op == "insert":
            parts.append(f'<ins style="{_INS}">{body}</ins>')
        elif change.op == "delete":
            parts.append(f'<del style="{_DEL}">{body}</del>')
        else:
            parts.append(body)
    return f'<div class="aigc-diff" style="{_DIFF_STYLE}">{"".join(parts)}</div>'


def list_html(items: list[str]) -> str:
    """Titles or keywords as a numbered list."""
    rows = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    return f'<ol class="aigc-edit-list" style="margin: 4px 0 0 1.4em">{rows}</ol>'


def build(ctx: UIContext, editor: gr.Textbox) -> None:
    """The panel for ``editor`` (a Textbox with an elem_id): operations on its selection, streamed, with
    the diff, Accept and Reject."""
    runs: dict[str, EditRun | None] = {}  # browser session -> its edit in progress (None: starting)
    lock = threading.Lock()
    # The proposal: {"original": the editor's text the edit ran on, "text": the new text}.
    proposal = gr.State(None)
    page_lang = gr.Textbox(visible="hidden", elem_id="edit-lang")
    selection = gr.Textbox(visible="hidden", elem_id="edit-selection")

    gr.Markdown(t("edit_title"))
    with gr.Row(equal_height=True):
        op = gr.Dropdown(
            [(t(f"edit_op_{name}"), name) for name in OPERATIONS],
            value="polish",
            label=t("edit_op"),
            elem_id="edit-op",
            scale=2,
        )
        tone = gr.Textbox(
            label=t("edit_tone"), placeholder=t("edit_tone_ph"), visible=False, elem_id="edit-tone", scale=2
        )
        target = gr.Radio(
            [(t("edit_target_auto"), "auto"), (t("edit_target_en"), "en"), (t("edit_target_zh"), "zh")],
            value="auto",
            label=t("edit_target"),
            visible=False,
            elem_id="edit-target",
            scale=2,
        )
        model = gr.Dropdown([], label=t("edit_model"), elem_id="edit-model", scale=2, allow_custom_value=True)
    gr.Markdown(t("edit_hint"), elem_classes=["aigc-hint"])
    with gr.Row():
        run_button = gr.Button(t("edit_run"), variant="primary", elem_id="edit-run", scale=0, min_width=160)
        stop = gr.Button(t("edit_stop"), variant="stop", elem_id="edit-stop", scale=0, min_width=100, visible=False)
        accept = gr.Button(t("edit_accept"), elem_id="edit-accept", scale=0, min_width=100, visible=False)
        reject = gr.Button(t("edit_reject"), elem_id="edit-reject", scale=0, min_width=100, visible=False)
    status = gr.HTML(elem_id="edit-note")
    answer = gr.Textbox(label=t("edit_answer"), interactive=False, lines=4, max_lines=12, elem_id="edit-answer")
    changes = gr.HTML(label=t("edit_diff"), elem_id="edit-diff")

    def fields_for(op_name: str):
        takes = OPERATIONS[op_name].takes
        return gr.Textbox(visible="tone" in takes), gr.Radio(visible="target" in takes)

    op.change(fields_for, op, [tone, target], queue=False)

    def text_models():
        registry = ctx.studio.registry
        return gr.Dropdown(choices=[m.id for m in registry.all() if m.kind == "text"], value=registry.default_model)

    def idle(note_html: str, state, result: EditResult | None = None):
        can_accept = result is not None and result.items is None and result.changed
        return {
            status: note_html,
            proposal: state,
            run_button: gr.Button(visible=True),
            stop: gr.Button(visible=False),
            accept: gr.Button(visible=can_accept),
            reject: gr.Button(visible=can_accept),
        }

    @reports_to(status)
    def on_run(request: gr.Request, lang_value, current, op_name, tone_value, target_value, model_id, selected):
        session = request.session_hash
        with lock:
            if session in runs:
                raise Mistake("edit_busy")
            runs[session] = None
        try:
            if not (current or "").strip():
                raise Mistake("edit_empty")
            start, end = (int(x) for x in selected.split(":")) if selected else (None, None)
            edit = EditRequest(
                op=op_name,
                text=current,
                start=start,
                end=end,
                tone=(tone_value or "").strip() or None if op_name == "tone" else None,
                target=target_value if op_name == "translate" and target_value in ("en", "zh") else None,
                model=model_id or None,
            )
            prepared = ctx.studio.editing.prepare(edit, source="ui")
            run = ctx.studio.editing.start(prepared)
            with lock:
                runs[session] = run
            notes = " ".join(message_text(lang_value, n) for n in prepared.notes)
            working = text(lang_value, "edit_running", start=prepared.start, end=prepared.end)
            yield {
                status: note(working + (" " + notes if notes else ""), "info"),
                answer: "",
                changes: "",
                proposal: None,
                run_button: gr.Button(visible=False),
                stop: gr.Button(visible=True),
                accept: gr.Button(visible=False),
                reject: gr.Button(visible=False),
            }
            written = ""
            for chunk in run:
                if chunk.prompt_progress is not None:  # a long text: how much of it the model has read
                    done, total = chunk.prompt_progress.read, chunk.prompt_progress.total
                    reading = text(lang_value, "prompt_reading", done=done, total=total)
                    yield {status: note(working + " " + reading, "info")}
                    continue
                written += chunk.text
                yield {answer: written}
            result = run.result
            said = " ".join(message_text(lang_value, n) for n in result.notes)
            if result.finish_reason == "cancelled":
                yield idle(note(text(lang_value, "edit_stopped"), "info"), None)
            elif result.items is not None:
                done = text(lang_value, "edit_done_list", tokens=result.usage.completion_tokens)
                yield {**idle(note(f"{done} {said}".strip(), "ok"), None), changes: list_html(result.items)}
            elif not result.changed:
                yield {**idle(note(f"{text(lang_value, 'edit_unchanged')} {said}".strip(), "info"), None), changes: ""}
            else:
                done = text(lang_value, "edit_done", tokens=result.usage.completion_tokens)
                state = {"original": current, "text": result.text}
                yield {**idle(note(f"{done} {said}".strip(), "ok"), state, result), changes: diff_html(result.changes)}
        except BaseException:
            yield idle(gr.skip(), None)
            raise
        finally:
            with lock:
                runs.pop(session, None)

    def on_stop(request: gr.Request):
        with lock:
            run = runs.get(request.session_hash)
        if run is not None:
            run.cancel()

    @reports_to(status)
    def on_accept(lang_value, current, state):
        if not state:
            raise Mistake("edit_nothing")
        if current != state["original"]:
            raise Mistake("edit_changed_since")
        return {
            editor: state["text"],
            **idle(note(text(lang_value, "edit_accepted"), "ok"), None),
            changes: "",
            answer: "",
        }

    @reports_to(status)
    def on_reject(lang_value):
        return {**idle(note(text(lang_value, "edit_rejected"), "info"), None), changes: "", answer: ""}

    buttons = [run_button, stop, accept, reject]
    run_button.click(
        on_run,
        [page_lang, editor, op, tone, target, model, selection],
        [status, answer, changes, proposal, *buttons],
        js=_SELECTION_JS % (editor.elem_id or "write-editor"),
    )
    stop.click(on_stop, None, None, queue=False)
    with_lang = "(...args) => { args[0] = document.documentElement.lang || 'en'; return args; }"
    accept.click(
        on_accept, [page_lang, editor, proposal], [editor, status, answer, changes, proposal, *buttons], js=with_lang
    )
    reject.click(on_reject, [page_lang], [status, answer, changes, proposal, *buttons], js=with_lang)
    # The model list is filled when the page loads (models can be added while the server runs).
    root = gr.context.Context.root_block
    if root is not None:
        root.load(text_models, None, model, queue=False)
