"""The Code tab: a code conversation with the code service — the model's answers streamed, the code
in an editor (each answer's code, and each edit saved, a new version), a diff between two versions,
and a Run panel (call expression, arguments, stdin, expected output, limits bounded by the configured
maxima) with the sandbox's result in plain words. Self-repair runs the code after each answer and sends
a failure back to the model; every attempt's answer, version and run show as they come.

Each action is one call to ``studio.code``; what is shown after a turn is read back from the session
as stored, so the page shows what history holds."""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass

import gradio as gr

from ..contracts import RUN_LANGUAGES, RunLimits
from ..services.code import CodeTurn, RunSpec
from .code_views import (
    conversation,
    diff_html,
    editor_update,
    lowest,
    note_text,
    result_html,
    run_summary,
    version_label,
)
from .common import Mistake, UIContext, note, reports_to
from .i18n import t, text
from .messages import message_text

STREAM_INTERVAL = 0.1  # seconds between conversation updates while an answer streams
SESSIONS_SHOWN = 50
MAX_REPAIR = 5
LIMIT_FIELDS = list(RunLimits.model_fields)  # wall, cpu, memory, processes, output, files
RUNNABLE = tuple(RUN_LANGUAGES)  # what the sandbox runs: python, javascript


@dataclass
class _Claim:
    """A page's turn or run in progress; ``turn`` once a turn has started (Stop cancels it)."""

    turn: CodeTurn | None = None


@dataclass
class CodeTab:
    refresh: object  # (lang, session, model) -> the model list, the session list, the limits' ranges
    refresh_inputs: list[gr.Component]
    refresh_outputs: list[gr.Component]


def build(ctx: UIContext, lang: gr.Radio) -> CodeTab:
    session = gr.State(None)  # the open session's id
    shown = gr.State(None)  # the id of the version in the editor
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=240, elem_classes=["aigc-sidebar"]):
            new = gr.Button(t("c_new"), size="sm", elem_id="code-new")
            sessions = gr.Radio([], label=t("c_sessions"), elem_id="code-sessions", elem_classes=["aigc-conversations"])
            delete = gr.Button(t("c_delete"), size="sm", variant="stop", elem_id="code-delete")
            model = gr.Dropdown([], label=t("c_model"), elem_id="code-model")
        with gr.Column(scale=4):
            chatbot = gr.Chatbot(
                elem_id="code-log",
                height=380,
                buttons=["copy"],
                render_markdown=True,
                feedback_options=None,
                placeholder=t("c_empty"),
                label=t("c_conversation"),
                show_label=False,
            )
            with gr.Row(equal_height=True):
                prompt = gr.Textbox(
                    show_label=False, placeholder=t("c_prompt_ph"), lines=1, max_lines=8, scale=5, elem_id="code-input"
                )
                language = gr.Radio(
                    [(t("c_lang_auto"), "auto"), ("JavaScript", "javascript"), ("Python", "python")],
                    value="auto",
                    label=t("c_language"),
                    elem_id="code-lang",
                    scale=2,
                )
                with gr.Column(scale=1, min_width=110):
                    send = gr.Button(t("c_send"), variant="primary", elem_id="code-send")
                    stop = gr.Button(t("c_stop"), variant="stop", elem_id="code-stop")
            with gr.Row(equal_height=True):
                repair = gr.Slider(
                    0, MAX_REPAIR, value=0, step=1, label=t("c_repair"), info=t("c_repair_help"), elem_id="code-repair"
                )
                autorun = gr.Checkbox(value=False, label=t("c_autorun"), elem_id="code-autorun")
            status = gr.HTML(elem_id="code-status", elem_classes=["aigc-status"])
            editor = gr.Code(
                label=t("c_editor"), language=None, interactive=True, lines=12, max_lines=40, elem_id="code-editor"
            )
            with gr.Row(equal_height=False, elem_classes=["aigc-bottom-row"]):
                save = gr.Button(t("c_save"), size="sm", elem_id="code-save")
                versions = gr.Dropdown([], label=t("c_versions"), elem_id="code-versions", scale=3)
                open_version = gr.Button(t("c_open"), size="sm", elem_id="code-version-open")
                diff_to = gr.Dropdown([], label=t("c_diff_to"), elem_id="code-diff-to", scale=3)
                compare = gr.Button(t("c_compare"), size="sm", elem_id="code-compare")
            diff = gr.HTML(label=t("c_diff"), elem_id="code-diff")
            gr.Markdown(t("c_run_title"))
            with gr.Row():
                call = gr.Textbox(label=t("c_call"), placeholder=t("c_call_ph"), scale=3, elem_id="code-call")
                expect = gr.Textbox(label=t("c_expect"), placeholder=t("c_expect_ph"), scale=2, elem_id="code-expect")
            with gr.Row():
                args = gr.Textbox(label=t("c_args"), lines=2, elem_id="code-args")
                stdin = gr.Textbox(label=t("c_stdin"), lines=2, elem_id="code-stdin")
            with gr.Accordion(t("c_limits"), open=False, elem_id="code-limits"):
                limits: dict[str, gr.Number] = {}
                with gr.Row():
                    for name in LIMIT_FIELDS:
                        limits[name] = gr.Number(
                            RunLimits.model_fields[name].default,
                            label=t(f"f_{name}"),
                            precision=None if name == "wall_seconds" else 0,
                            elem_id=f"code-limit-{name}",
                            min_width=120,
                        )
                        # The sandbox says the allowed range, in the page's language, by the Run button.
                        limits[name].raise_if_out_of_bounds = lambda *_: None
            run_button = gr.Button(t("c_run"), variant="primary", elem_id="code-run")
            result = gr.HTML(elem_id="code-result")
            with gr.Row():
                stdout = gr.Textbox(
                    label=t("c_stdout"), lines=4, max_lines=20, interactive=False, elem_id="code-stdout"
                )
                stderr = gr.Textbox(
                    label=t("c_stderr"), lines=4, max_lines=20, interactive=False, elem_id="code-stderr"
                )
            runs_log = gr.HTML(elem_id="code-runs")

    studio = lambda: ctx.studio  # noqa: E731 - read when a handler runs (the app's lifespan builds it)
    turns: dict[str, _Claim] = {}  # browser session -> what it has going (a turn, a run)
    lock = threading.Lock()

    # -- rendering ------------------------------------------------------------------------------------

    def session_choices(selected: str | None = None) -> gr.Radio:
        rows = studio().code.sessions(SESSIONS_SHOWN)
        labels = [(f"{r['title']} · {r['language'] or '-'} · v{r['versions']}", r["id"]) for r in rows]
        return gr.Radio(choices=labels, value=selected)

    def version_pickers(lang_value, all_versions: list, selected=None, compare_with=None):
        choices = [(version_label(lang_value, v), v["id"]) for v in reversed(all_versions)]
        return gr.Dropdown(choices=choices, value=selected), gr.Dropdown(choices=choices, value=compare_with)

    def runs_html(lang_value: str | None, stored: dict) -> str:
        by_id = {v["id"]: v for v in stored["versions"]}
        items = []
        for number, run in enumerate(stored["runs"], 1):
            version = by_id.get(run["version_id"])
            written = note_text(lang_value, version["note"])
            label = text(lang_value, "c_run_line", version=version["version"], note=written)
            summary = run_summary(lang_value, run["result"], run["matched"])
            items.append(f"<li><b>#{number}</b> {html.escape(label)} — {html.escape(summary)}</li>")
        if not items:
            return ""
        return f"<div class='aigc-runs'><b>{html.escape(text(lang_value, 'c_runs'))}</b><ol>{''.join(items)}</ol></div>"

    def show_run(lang_value: str | None, run) -> dict:
        if run is None:
            return {result: "", stdout: "", stderr: ""}
        r = run["result"]
        return {result: result_html(lang_value, r, run["matched"]), stdout: r["stdout"], stderr: r["stderr"]}

    def show_session(
        lang_value: str | None, session_id: str, *, pick: int | None = None, changed_since: int | None = None
    ) -> dict:
        """Everything the tab shows of a stored session, with version ``pick`` in the editor (else the
        newest of block 1). ``changed_since``: the number of versions of block 1 before this turn; when
        the turn made a new one, its diff from the one before shows."""
        stored = studio().code.session(session_id)
        block1 = [v for v in stored["versions"] if v["block"] == 1]
        newest = block1[-1] if block1 else (stored["versions"][-1] if stored["versions"] else None)
        picked = next((v for v in stored["versions"] if v["id"] == pick), newest)
        # "Compare with" starts at the version before the one shown (or after it, for a first version).
        same_block = [v for v in stored["versions"] if picked is not None and v["block"] == picked["block"]]
        at = same_block.index(picked) if picked is not None else 0
        previous = same_block[at - 1] if at > 0 else (same_block[1] if len(same_block) > 1 else None)
        chosen, other = version_pickers(
            lang_value,
            stored["versions"],
            picked["id"] if picked is not None else None,
            previous["id"] if previous is not None else None,
        )
        shown_diff = ""
        if block1 and len(block1) > 1 and changed_since is not None and len(block1) > changed_since:
            shown_diff = diff_html(studio().code.diff(block1[-2]["id"], block1[-1]["id"]))
        return {
            session: session_id,
            chatbot: conversation(stored["messages"]),
            editor: editor_update(picked),
            shown: picked["id"] if picked is not None else None,
            versions: chosen,
            diff_to: other,
            diff: shown_diff,
            runs_log: runs_html(lang_value, stored),
            **show_run(lang_value, stored["runs"][-1] if stored["runs"] else None),
        }

    # -- reading the form -----------------------------------------------------------------------------

    def run_spec(call_v, args_v, stdin_v, expect_v, *limit_values) -> RunSpec:
        given = dict(zip(LIMIT_FIELDS, limit_values, strict=True))
        return RunSpec(
            call=(call_v or "").strip() or None,
            args=[a for a in (args_v or "").splitlines() if a],
            stdin=stdin_v or "",
            expect=expect_v if (expect_v or "").strip() else None,
            limits=RunLimits(**{k: v for k, v in given.items() if v is not None}),
        )

    def chosen_language(language_v: str | None, version) -> str | None:
        """An edit's language: the version's when the sandbox runs it, else the one picked above the
        editor (so a "bash" or untagged block can be made Python or JavaScript), else the version's."""
        current = (version["language"] or None) if version is not None else None
        if current in RUNNABLE or language_v not in RUNNABLE:
            return current
        return language_v

    def claim(session_hash: str) -> _Claim:
        """One turn or run at a time per page: a second is refused until the first is released."""
        with lock:
            if session_hash in turns:
                raise Mistake("c_busy")
            turns[session_hash] = held = _Claim()
        return held

    def release(session_hash: str, held: _Claim) -> None:
        # Only this claim: a later action may have claimed the page since this one let go.
        with lock:
            if turns.get(session_hash) is held:
                del turns[session_hash]

    # -- actions --------------------------------------------------------------------------------------

    @reports_to(status)
    def on_send(
        request: gr.Request,
        lang_value,
        prompt_v,
        language_v,
        model_v,
        session_id,
        repair_v,
        autorun_v,
        call_v,
        args_v,
        stdin_v,
        expect_v,
        *limit_values,
    ):
        if not (prompt_v or "").strip():
            raise Mistake("c_no_prompt")
        attempts = int(repair_v or 0)
        spec = run_spec(call_v, args_v, stdin_v, expect_v, *limit_values) if attempts or autorun_v else None
        earlier = studio().code.session(session_id) if session_id else {"messages": [], "versions": []}
        before = sum(1 for v in earlier["versions"] if v["block"] == 1)
        held = claim(request.session_hash)
        try:
            turn = studio().code.turn(
                prompt_v,
                session_id=session_id,
                language=None if language_v in (None, "auto") else language_v,
                model=model_v or None,
                run=spec,
                repair=attempts,
            )
            held.turn = turn
            log = [
                *conversation(earlier["messages"]),
                {"role": "user", "content": prompt_v},
                {"role": "assistant", "content": ""},
            ]
            yield {chatbot: log, prompt: "", status: note(text(lang_value, "c_working"), "info"), diff: ""}
            last, made, failure, finish, said, reading = 0.0, 0, None, None, [], False
            for event in turn:
                kind = event.kind
                if kind == "reading":  # a long prompt (the code sent back): how much of it is read
                    reading = True
                    read_note = text(lang_value, "prompt_reading", done=event.read, total=event.prompt_tokens)
                    yield {status: note(read_note, "info")}
                elif kind == "delta":
                    if reading:  # the answer starts: back to the working note
                        reading = False
                        yield {status: note(text(lang_value, "c_working"), "info")}
                    log[-1]["content"] += event.text
                    if time.monotonic() - last > STREAM_INTERVAL:
                        last = time.monotonic()
                        yield {chatbot: log}
                elif kind == "version":
                    made += 1
                    v = event.version.to_dict()
                    written = note_text(lang_value, v["note"])
                    message = text(lang_value, "c_new_version", version=v["version"], note=written)
                    yield {chatbot: log, editor: editor_update(v), shown: v["id"], status: note(message, "info")}
                elif kind == "run":
                    yield show_run(lang_value, event.run.to_dict())
                elif kind == "attempt":
                    # The repair request and the next answer come into the conversation as they stream.
                    message = text(lang_value, "c_attempt", n=event.attempt, of=event.of)
                    log += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
                    yield {chatbot: log, status: note(message, "info")}
                elif kind == "error":
                    failure = message_text(lang_value, event.message)
                elif kind == "done":
                    finish = event.finish_reason
                    said = [message_text(lang_value, n) for n in event.notes]
            if failure is not None:
                final = note(text(lang_value, "c_failed", message=failure))
            elif finish == "cancelled":
                final = note(text(lang_value, "c_stopped"), "info")
            elif made == 0:
                final = note(text(lang_value, "c_no_code"), "info")
            else:
                final = note(text(lang_value, "c_done"), "ok")
            final += "".join(note(n, "info") for n in said)
            # Free the page before the last update shows: Gradio closes the generator (and runs its
            # finally) only after the browser has it, and a Run clicked at once must not be refused.
            release(request.session_hash, held)
            yield {
                **show_session(lang_value, turn.session_id, changed_since=before),
                sessions: session_choices(turn.session_id),
                status: final,
            }
        finally:
            release(request.session_hash, held)

    def on_stop(request: gr.Request):
        with lock:
            held = turns.get(request.session_hash)
        if held is not None and held.turn is not None:
            held.turn.cancel()

    @reports_to(status)
    def on_run(
        request: gr.Request,
        lang_value,
        session_id,
        shown_id,
        code_v,
        language_v,
        call_v,
        args_v,
        stdin_v,
        expect_v,
        *limit_values,
    ):
        spec = run_spec(call_v, args_v, stdin_v, expect_v, *limit_values)
        held = claim(request.session_hash)
        try:
            if session_id is None:
                # Code typed or pasted into a fresh tab runs as a session of its own.
                if language_v not in RUNNABLE:
                    raise Mistake("c_pick_language")
                record = studio().code.run_source(language_v, code_v or "", spec)
                session_id, ran = record.session_id, {"id": record.version_id, "version": 1}
            else:
                stored = {v["id"]: v for v in studio().code.session(session_id)["versions"]}
                version = stored.get(shown_id)
                # gr.Code shows code stripped at both ends: only a change inside is an edit.
                if version is None or (code_v or "").strip() != version["code"].strip():
                    # Refused limits or no sandbox must not leave the edit behind as a version.
                    studio().sandbox.check_limits(spec.limits)
                    studio().sandbox.check()
                    # What is in the editor is what runs: an unsaved edit becomes a version first.
                    block = version["block"] if version is not None else 1
                    language = chosen_language(language_v, version)
                    version = studio().code.edit(session_id, code_v or "", language, block).to_dict()
                studio().code.run(version["id"], spec)
                ran = version
            return {
                **show_session(lang_value, session_id, pick=ran["id"]),
                sessions: session_choices(session_id),
                status: note(text(lang_value, "c_ran", version=ran["version"]), "info"),
            }
        finally:
            release(request.session_hash, held)

    @reports_to(status)
    def on_save(lang_value, session_id, shown_id, code_v, language_v):
        if session_id is None:
            raise Mistake("c_no_session")
        stored = {v["id"]: v for v in studio().code.session(session_id)["versions"]}
        current = stored.get(shown_id)
        version = (
            studio()
            .code.edit(
                session_id,
                code_v or "",
                language=chosen_language(language_v, current),
                block=current["block"] if current is not None else 1,
            )
            .to_dict()
        )
        return {
            **show_session(lang_value, session_id, pick=version["id"]),
            sessions: session_choices(session_id),
            status: note(text(lang_value, "c_saved", version=version["version"]), "ok"),
        }

    @reports_to(status)
    def on_open_session(lang_value, session_id):
        if not session_id:
            raise Mistake("c_no_session")
        return {**show_session(lang_value, session_id), status: ""}

    @reports_to(status)
    def on_open_version(lang_value, session_id, version_id):
        if session_id is None:
            raise Mistake("c_no_session")
        if version_id is None:
            raise Mistake("c_no_version")
        stored = {v["id"]: v for v in studio().code.session(session_id)["versions"]}
        if version_id not in stored:
            raise Mistake("c_no_version")
        return {editor: editor_update(stored[version_id]), shown: version_id, status: ""}

    @reports_to(status)
    def on_compare(lang_value, session_id, a_id, b_id):
        if session_id is None:
            raise Mistake("c_no_session")
        if a_id is None or b_id is None:
            raise Mistake("c_no_version")
        # Older first, so "+" lines are what the newer version added.
        first, second = sorted((a_id, b_id))
        changes = studio().code.diff(first, second)
        if not changes.strip():
            return {diff: "", status: note(text(lang_value, "c_same"), "info")}
        return {diff: diff_html(changes), status: ""}

    @reports_to(status)
    def on_delete(lang_value, session_id):
        if not session_id:
            raise Mistake("c_no_session")
        title = next((r["title"] for r in studio().code.sessions(SESSIONS_SHOWN) if r["id"] == session_id), session_id)
        studio().code.delete(session_id)
        return {
            **cleared(),
            sessions: session_choices(None),
            status: note(text(lang_value, "c_deleted", title=title), "ok"),
        }

    def cleared() -> dict:
        empty_pick = gr.Dropdown(choices=[], value=None)
        return {
            session: None,
            shown: None,
            chatbot: [],
            editor: gr.Code(value="", language=None),
            versions: empty_pick,
            diff_to: empty_pick,
            diff: "",
            result: "",
            stdout: "",
            stderr: "",
            runs_log: "",
            status: "",
        }

    def on_new():
        return {**cleared(), sessions: gr.Radio(value=None), prompt: ""}

    def limit_ranges(lang_value) -> list[gr.Number]:
        """Each limit's allowed range, up to the configured maximum, as the help under its box."""
        maxima = studio().sandbox.maxima
        # Only the help changes: an updated maximum would make a per-page copy of the box with Gradio's
        # own range check (an English toast); the sandbox names the range instead, by the Run button.
        return [
            gr.Number(info=text(lang_value, "c_range", low=f"{lowest(name):g}", high=f"{getattr(maxima, name):g}"))
            for name in LIMIT_FIELDS
        ]

    def refresh(lang_value, session_id, model_v):
        """When the tab opens: the model list (keeping the model picked), the session list (keeping the
        open one) and the limits' ranges."""
        registry = studio().registry
        ids = [m.id for m in registry.all() if m.kind == "text"]
        models = gr.Dropdown(choices=ids, value=model_v if model_v in ids else registry.default_model)
        return models, session_choices(session_id), *limit_ranges(lang_value)

    limit_inputs = [limits[name] for name in LIMIT_FIELDS]
    shown_outputs = [session, shown, chatbot, editor, versions, diff_to, diff, result, stdout, stderr, runs_log, status]
    run_form = [call, args, stdin, expect, *limit_inputs]
    send_event = dict(
        fn=on_send,
        inputs=[lang, prompt, language, model, session, repair, autorun, *run_form],
        outputs=[*shown_outputs, sessions, prompt],
        concurrency_limit=None,
    )
    send.click(**send_event)
    prompt.submit(**send_event)
    stop.click(on_stop, None, None, queue=False)
    run_button.click(
        on_run,
        [lang, session, shown, editor, language, *run_form],
        [*shown_outputs, sessions],
        concurrency_limit=None,
    )
    save.click(on_save, [lang, session, shown, editor, language], [*shown_outputs, sessions])
    sessions.input(on_open_session, [lang, sessions], shown_outputs)
    open_version.click(on_open_version, [lang, session, versions], [editor, shown, status])
    compare.click(on_compare, [lang, session, versions, diff_to], [diff, status])
    delete.click(on_delete, [lang, session], [*shown_outputs, sessions])
    new.click(on_new, None, [*shown_outputs, sessions, prompt], queue=False)
    # The conversation's own clear button starts a new session too (the old one stays in the list).
    chatbot.clear(on_new, None, [*shown_outputs, sessions, prompt], queue=False)
    refresh_outputs = [model, sessions, *limit_inputs]
    lang.change(limit_ranges, lang, limit_inputs, queue=False)
    return CodeTab(refresh=refresh, refresh_inputs=[lang, session, model], refresh_outputs=refresh_outputs)
