"""The Chat tab: streamed multi-turn answers from the chat service, with the conversation list from
history (open, rename, delete), stop, regenerate, model picker, system prompt and sampling options.

While an answer streams, Send turns into Stop (as in Open WebUI) and a message typed meanwhile stays
in the box until the answer ends: one answer per browser session at a time, nothing dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from pydantic import ValidationError

from ..contracts import Message, TextOptions
from ..errors import StudioError
from .common import Mistake, UIContext, empty_to_none, field_widget, note, reports_to
from .i18n import t, text

# Sampling options in the order a user reaches for them; every one is declared in TextOptions.
OPTION_FIELDS = [
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "max_tokens",
    "stop",
]
CONVERSATIONS_SHOWN = 50
REGENERATE = "\0regenerate"  # what the claim step hands on when Regenerate, not Send, started the answer


@dataclass
class ChatTab:
    chatbot: gr.Chatbot
    conversation: gr.State
    conversations: gr.Radio
    model: gr.Dropdown
    system: gr.Textbox
    options: dict[str, gr.Component]
    on_load: Callable[[], tuple]  # fresh lists when a page opens
    load_outputs: list[gr.Component]
    # the conversation list from history, with ``selected`` (a conversation id or None) chosen
    conversation_choices: Callable[..., gr.Radio]


def _text_models(registry) -> dict:
    """The model picker's choices (the text models) and value (the default)."""
    return {"choices": [m.id for m in registry.all() if m.kind == "text"], "value": registry.default_model}


def _models_now(ctx: UIContext) -> dict:
    """The model picker as the page is built; empty where the studio is not up yet (a server whose
    lifespan builds it) or has no model, which the page's load then says."""
    try:
        return _text_models(ctx.studio.registry)
    except (AttributeError, StudioError):
        return {"choices": [], "value": None}


def _plain(content) -> str:
    """The text of a chatbot message as the browser sends it back (a list of content blocks)."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


def _shown(messages: list[dict]) -> list[dict]:
    # Replaced (regenerated) answers stay in history but are not shown in the conversation. Tool calls
    # (from API clients) show as the calls; the chat box has no tool role, so results are left out.
    return [
        {"role": m["role"], "content": _plain(m["content"]) or _calls(m.get("tool_calls"))}
        for m in messages
        if m["role"] in ("user", "assistant") and not m.get("superseded")
    ]


def _calls(calls: list[dict] | None) -> str:
    return "\n".join(f"`{c['name']}({c['arguments']})`" for c in calls or [])


def build(ctx: UIContext, lang: gr.Radio) -> ChatTab:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=240, elem_classes=["aigc-sidebar"]):
            new_chat = gr.Button(t("chat_new"), size="sm", elem_id="chat-new")
            conversations = gr.Radio(
                [], label=t("chat_conversations"), elem_id="chat-conversations", elem_classes=["aigc-conversations"]
            )
            with gr.Accordion(t("chat_manage"), open=False, elem_id="chat-manage"):
                title = gr.Textbox(label=t("chat_title"), elem_id="chat-title")
                with gr.Row():
                    rename = gr.Button(t("chat_rename"), size="sm", elem_id="chat-rename")
                    delete = gr.Button(t("chat_delete"), size="sm", variant="stop", elem_id="chat-delete")
                manage_note = gr.HTML(elem_id="chat-manage-note")
        with gr.Column(scale=4):
            with gr.Row():
                # The list as the page is built, so a new page can be used at once; each page load
                # refreshes it (on_load).
                model = gr.Dropdown(**_models_now(ctx), label=t("chat_model"), elem_id="chat-model", scale=1)
                system = gr.Textbox(
                    label=t("chat_system"),
                    placeholder=t("chat_system_ph"),
                    lines=1,
                    max_lines=6,
                    elem_id="chat-system",
                    scale=3,
                )
            chatbot = gr.Chatbot(
                elem_id="chat-log",
                height=460,
                buttons=["copy", "copy_all"],
                render_markdown=True,
                feedback_options=None,
                placeholder=t("chat_empty"),
                label=t("tab_chat"),
                show_label=False,
            )
            with gr.Row(equal_height=True):
                message = gr.Textbox(
                    show_label=False,
                    placeholder=t("chat_input_ph"),
                    lines=1,
                    max_lines=10,
                    scale=6,
                    elem_id="chat-input",
                    autofocus=True,
                )
                with gr.Column(scale=1, min_width=120):
                    # One place, two buttons: Send while idle, Stop while an answer streams.
                    send = gr.Button(t("chat_send"), variant="primary", elem_id="chat-send")
                    stop = gr.Button(t("chat_stop"), variant="stop", visible=False, elem_id="chat-stop")
                    regenerate = gr.Button(t("chat_regenerate"), size="sm", elem_id="chat-regenerate")
            status = gr.HTML(elem_id="chat-status", elem_classes=["aigc-status"])
            with gr.Accordion(t("chat_sampling"), open=False, elem_id="chat-sampling"):
                options: dict[str, gr.Component] = {}
                with gr.Row():
                    for name in OPTION_FIELDS[:4]:
                        options[name] = field_widget(TextOptions, name, unset=True, placeholder=t("unset_ph"))
                with gr.Row():
                    for name in OPTION_FIELDS[4:7]:
                        options[name] = field_widget(TextOptions, name, unset=True, placeholder=t("unset_ph"))
                with gr.Row():
                    for name in OPTION_FIELDS[7:9]:
                        options[name] = field_widget(TextOptions, name, unset=True, placeholder=t("unset_ph"))
                    options["stop"] = gr.Textbox(
                        label=t("f_stop"), info=t("h_stop"), lines=2, elem_id="textoptions-stop"
                    )
    conversation = gr.State(None)

    def conversation_choices(selected: str | None = None) -> gr.Radio:
        rows = ctx.studio.history.list(limit=CONVERSATIONS_SHOWN)
        return gr.Radio(choices=[(r["title"], r["id"]) for r in rows], value=selected)

    def text_models():
        return gr.Dropdown(**_text_models(ctx.studio.registry))

    def read_options(values: tuple) -> TextOptions:
        fields = dict(zip(OPTION_FIELDS, values, strict=True))
        stop_lines = [s for s in (fields.pop("stop") or "").split("\n") if s]
        return TextOptions(**{k: empty_to_none(v) for k, v in fields.items()}, stop=stop_lines)

    def streaming(session: str) -> bool:
        with ctx.lock:
            return session in ctx.chat_runs

    def claim(request: gr.Request, user_text: str | None, regenerating: bool = False):
        """Start an answer unless one streams for this page: Send turns into Stop at once. While one
        streams, the new message stays in the box (nothing is sent, nothing is lost)."""
        with ctx.lock:
            if request.session_hash in ctx.chat_runs or (not regenerating and not (user_text or "").strip()):
                return gr.skip(), None, gr.skip(), gr.skip()
            ctx.chat_runs[request.session_hash] = None  # claimed; the run is filled in when it starts
        box = gr.skip() if regenerating else ""
        return box, REGENERATE if regenerating else user_text, gr.Button(visible=False), gr.Button(visible=True)

    def claim_regenerate(request: gr.Request):
        return claim(request, None, regenerating=True)

    def release(request: gr.Request):
        """Send comes back once this page's answer has ended (or failed to start)."""
        if streaming(request.session_hash):
            return gr.skip(), gr.skip()
        return gr.Button(visible=True), gr.Button(visible=False)

    def stream(prepared, shown: list[dict], session: str, lang_value: str):
        run = ctx.studio.chat.start(prepared)
        with ctx.lock:
            ctx.chat_runs[session] = run
        answer = ""
        yield {chatbot: shown, status: ""}
        reading = False
        for chunk in run:
            if chunk.prompt_progress is not None:  # a long prompt: how much of it is read
                reading = True
                done, total = chunk.prompt_progress.read, chunk.prompt_progress.total
                yield {status: note(text(lang_value, "prompt_reading", done=done, total=total), "info")}
                continue
            answer += chunk.text
            shown[-1]["content"] = answer
            yield {chatbot: shown, status: ""} if reading else {chatbot: shown}
            reading = False
        result = run.result
        reason = text(lang_value, f"reason_{result.finish_reason}")
        summary = text(
            lang_value,
            "chat_stats",
            tokens=result.usage.completion_tokens,
            prompt=result.usage.prompt_tokens,
            seed=result.seed,
            reason=reason,
        )
        if result.trimmed:
            summary += " · " + text(lang_value, "chat_trimmed", n=result.trimmed)
        yield {
            chatbot: shown,
            conversation: result.conversation_id,
            conversations: conversation_choices(result.conversation_id),
            status: note(summary, "info"),
        }

    @reports_to(status)
    def on_send(request: gr.Request, lang_value, user_text, shown, conversation_id, model_id, system_prompt, *values):
        if user_text is None:
            # Another answer of this page still streams: the message waits in the box. (A generator
            # that yields nothing would set every output to None, emptying the box.)
            yield gr.skip()
            return
        prepared = None
        try:
            options = read_options(values)
            new = [Message(role="user", content=user_text)]
            if system_prompt.strip():
                stored = ctx.studio.history.messages(conversation_id) if conversation_id else []
                current = next((m.content for m in reversed(stored) if m.role == "system"), None)
                if current != system_prompt:
                    new.insert(0, Message(role="system", content=system_prompt))
            prepared = ctx.studio.chat.prepare(
                new, model=model_id, options=options, conversation_id=conversation_id, trim=True, source="ui"
            )
            shown = [*_shown(shown), {"role": "user", "content": user_text}, {"role": "assistant", "content": ""}]
            yield from stream(prepared, shown, request.session_hash, lang_value)
        except (StudioError, ValidationError):
            if prepared is None:
                yield {message: user_text}  # refused before it was sent: the message goes back into the box
            raise
        finally:
            with ctx.lock:
                ctx.chat_runs.pop(request.session_hash, None)

    @reports_to(status)
    def on_regenerate(request: gr.Request, lang_value, claimed, conversation_id, model_id, *values):
        # The last question is answered again in the same conversation; the answer it replaces
        # stays in history, marked as replaced.
        if claimed is None:
            yield gr.skip()
            return
        try:
            if not conversation_id:
                raise Mistake("chat_nothing_to_regenerate")
            prepared = ctx.studio.chat.prepare(
                [],
                model=model_id,
                options=read_options(values),
                trim=True,
                conversation_id=conversation_id,
                regenerate=True,
                source="ui",
            )
            shown = [*_shown([m.model_dump() for m in prepared.request.messages]), {"role": "assistant", "content": ""}]
            yield from stream(prepared, shown, request.session_hash, lang_value)
        finally:
            with ctx.lock:
                ctx.chat_runs.pop(request.session_hash, None)

    def on_stop(request: gr.Request):
        with ctx.lock:
            run = ctx.chat_runs.get(request.session_hash)
        if run is not None:
            run.cancel()

    @reports_to(status)
    def on_open(lang_value, conversation_id):
        conv = ctx.studio.history.get(conversation_id)
        system_prompt = next((m["content"] for m in reversed(conv["messages"]) if m["role"] == "system"), "")
        return _shown(conv["messages"]), conversation_id, conv["title"], system_prompt, conv["model"], "", ""

    @reports_to(manage_note)
    def on_rename(lang_value, conversation_id, new_title):
        if not conversation_id or not new_title.strip():
            raise Mistake("chat_pick_first")
        ctx.studio.history.rename(conversation_id, new_title.strip())
        return conversation_choices(conversation_id), note(text(lang_value, "chat_renamed"), "ok")

    @reports_to(manage_note)
    def on_delete(lang_value, conversation_id):
        if not conversation_id:
            raise Mistake("chat_pick_first")
        deleted = ctx.studio.history.get(conversation_id)["title"]
        ctx.studio.history.delete(conversation_id)
        done = note(text(lang_value, "chat_deleted", title=deleted), "ok")
        return [], None, conversation_choices(None), "", "", done

    option_inputs = [options[name] for name in OPTION_FIELDS]
    stream_outputs = [chatbot, conversation, conversations, status, message]
    pending = gr.State(None)
    buttons = [send, stop]
    for trigger in (send.click, message.submit):
        # The claim empties the box at once; the handler reads the message from ``pending``.
        trigger(claim, message, [message, pending, *buttons], queue=False).then(
            on_send,
            [lang, pending, chatbot, conversation, model, system, *option_inputs],
            stream_outputs,
            concurrency_limit=None,
        ).then(release, None, buttons, queue=False)
    regenerate.click(claim_regenerate, None, [message, pending, *buttons], queue=False).then(
        on_regenerate, [lang, pending, conversation, model, *option_inputs], stream_outputs, concurrency_limit=None
    ).then(release, None, buttons, queue=False)
    stop.click(on_stop, None, None, queue=False)
    conversations.input(
        on_open, [lang, conversations], [chatbot, conversation, title, system, model, status, manage_note]
    )
    new_chat.click(
        lambda: ([], None, gr.Radio(value=None), "", ""), None, [chatbot, conversation, conversations, title, status]
    )
    # The chatbot's own clear button starts a new conversation (the old one stays in history).
    chatbot.clear(lambda: (None, gr.Radio(value=None), ""), None, [conversation, conversations, status])
    rename.click(on_rename, [lang, conversation, title], [conversations, manage_note])
    delete.click(on_delete, [lang, conversation], [chatbot, conversation, conversations, title, status, manage_note])

    def on_load():
        return conversation_choices(None), text_models()

    return ChatTab(
        chatbot,
        conversation,
        conversations,
        model,
        system,
        options,
        on_load,
        [conversations, model],
        conversation_choices,
    )
