"""The Gallery / History tab: every text and image generation, newest first (the gallery service);
search by prompt, filter by kind and model, open one to see all its parameters, reuse them, delete."""

from __future__ import annotations

import time
from collections.abc import Callable

import gradio as gr

from ..services.gallery import KINDS, GalleryEntry
from .chat import OPTION_FIELDS, ChatTab
from .common import Mistake, UIContext, note, reports_to
from .i18n import t, text
from .image_labels import label_badge, labels_html, nsfw_cell
from .images import ImagesTab

LIMIT = 200


def build(
    ctx: UIContext, lang: gr.Radio, main_tabs: gr.Tabs, chat_tab: ChatTab, images_tab: ImagesTab
) -> tuple[Callable, list[gr.Component], list[gr.Component]]:
    """The tab; returns (listing handler, its inputs, its outputs) so the app refreshes it when opened."""
    with gr.Row(elem_classes=["aigc-bottom-row"]):
        query = gr.Textbox(label=t("gal_search"), placeholder=t("gal_search_ph"), scale=4, elem_id="gal-search")
        kind = gr.Radio(
            [(t(f"gal_kind_{k}"), k) for k in KINDS], value="all", label=t("gal_kind"), scale=2, elem_id="gal-kind"
        )
        model = gr.Dropdown([("—", "")], value="", label=t("gal_model"), scale=2, elem_id="gal-model")
        refresh = gr.Button(t("refresh"), scale=0, min_width=110, elem_id="gal-refresh")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            thumbs = gr.Gallery(
                label=t("gal_images"),
                columns=6,
                height=260,
                object_fit="cover",
                format="png",
                allow_preview=False,
                fit_columns=False,
                elem_id="gal-thumbs",
                interactive=False,
            )
            table = gr.Dataframe(
                interactive=False,
                wrap=True,
                max_height=420,
                elem_id="gal-table",
                column_widths=["15%", "8%", "14%", "11%", "12%", "40%"],
            )
        with gr.Column(scale=2, elem_classes=["aigc-detail"]):
            detail_title = gr.Markdown(t("gal_pick"), elem_id="gal-detail-title")
            detail_image = gr.Image(
                label=t("gal_image"), interactive=False, visible=False, height=300, elem_id="gal-detail-image"
            )
            detail_labels = gr.HTML(elem_id="gal-detail-labels")
            detail_text = gr.Markdown(elem_id="gal-detail-text", elem_classes=["aigc-conversation"])
            detail_params = gr.JSON(label=t("gal_params"), open=True, elem_id="gal-detail-params")
            with gr.Row():
                reuse = gr.Button(t("gal_reuse"), variant="primary", size="sm", elem_id="gal-reuse")
                delete = gr.Button(t("gal_delete"), variant="stop", size="sm", elem_id="gal-delete")
            action_note = gr.HTML(elem_id="gal-note")
    entries = gr.State([])
    chosen = gr.State(None)

    def listing(query_value: str, kind_value: str, model_value: str, lang_value: str):
        found = ctx.studio.gallery.entries(query_value or "", kind_value or "all", model_value or "", limit=LIMIT)
        rows = [
            [
                time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created)),
                text(lang_value, f"gal_kind_{e.kind}"),
                e.model,
                # Generated text carries its label when it is exported or copied: the badge the chat shows.
                label_badge(lang_value, e.labels) if e.kind == "image" else text(lang_value, "text_badge"),
                nsfw_cell(lang_value, e.nsfw_score, e.nsfw_action) if e.kind == "image" else "",
                e.prompt,
            ]
            for e in found
        ]
        columns = ("gal_col_time", "gal_col_kind", "gal_col_model", "gal_col_label", "gal_col_nsfw", "gal_col_prompt")
        headers = [text(lang_value, key) for key in columns]
        images = [(e.path, e.prompt[:60]) for e in found if e.kind == "image"]
        models = [("—", "")] + [(m.id, m.id) for m in ctx.studio.registry.all()]
        return (
            gr.Dataframe(value=rows or [[""] * len(headers)], headers=headers),
            images,
            found,
            gr.Dropdown(choices=models),
        )

    def show(entry: GalleryEntry, lang_value: str):
        if entry.kind == "image":
            body = f"```\n{entry.infotext}\n```"
            image = gr.Image(value=entry.path, visible=True)
            labels = labels_html(lang_value, entry.labels)
            return entry, f"### 🖼 {entry.id}", image, labels, body, entry.params, ""
        hidden = gr.Image(value=None, visible=False)
        if entry.kind == "document":
            doc = ctx.studio.writing.get(entry.id)
            version = doc["version"]
            params = {"model": version["model"], "version": version["number"], "reason": version["reason"]}
            params |= {"versions": entry.params.get("versions"), "notes": version["notes"]}
            return entry, f"### 📄 {doc['title']}", hidden, "", version["content"], params, ""
        conv = ctx.studio.history.get(entry.id)
        lines = [f"**{text(lang_value, 'role_' + m['role'])}**: {m['content']}" for m in conv["messages"]]
        params = {"model": conv["model"], "responses": conv["responses"]}
        return entry, f"### 💬 {conv['title']}", hidden, "", "\n\n".join(lines), params, ""

    @reports_to(action_note)
    def on_row(lang_value: str, found: list[GalleryEntry], event: gr.SelectData):
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if row is None or row >= len(found):
            return [gr.skip()] * 7
        return show(found[row], lang_value)

    @reports_to(action_note)
    def on_thumb(lang_value: str, found: list[GalleryEntry], event: gr.SelectData):
        images = [e for e in found if e.kind == "image"]
        return show(images[event.index], lang_value)

    n_image_targets = 2 + len(images_tab.form_outputs)
    n_chat_targets = 5 + len(OPTION_FIELDS)

    @reports_to(action_note)
    def on_reuse(lang_value: str, entry: GalleryEntry | None):
        if entry is None:
            raise Mistake("gal_pick")
        if entry.kind == "document":
            raise Mistake("gal_doc_reuse")
        if entry.kind == "image":
            fields = images_tab.with_known_model(ctx.studio.gallery.reuse_fields(entry))
            # The input image of img2img/inpaint/edit is not recorded, so its parameters go to txt2img.
            return (
                gr.Tabs(selected="images"),
                gr.Tabs(selected="txt2img"),
                "txt2img",
                *images_tab.fill_form(fields, mode="txt2img"),
                *[gr.skip()] * n_chat_targets,
                "",
            )
        conv = ctx.studio.history.get(entry.id)
        shown = [
            {"role": m["role"], "content": m["content"]}
            for m in conv["messages"]
            if m["role"] != "system" and not m["superseded"]
        ]
        system = next((m["content"] for m in reversed(conv["messages"]) if m["role"] == "system"), "")
        last = conv["responses"][-1]["options"] if conv["responses"] else {}
        options = [("\n".join(last.get(n) or []) if n == "stop" else last.get(n)) for n in OPTION_FIELDS]
        return (
            gr.Tabs(selected="chat"),
            *[gr.skip()] * n_image_targets,
            shown,
            conv["id"],
            gr.Radio(value=conv["id"]),
            system,
            conv["model"],
            *options,
            "",
        )

    @reports_to(action_note)
    def on_delete(
        lang_value: str,
        entry: GalleryEntry | None,
        open_conversation: str | None,
        query_value: str,
        kind_value: str,
        model_value: str,
    ):
        if entry is None:
            raise Mistake("gal_pick")
        ctx.studio.gallery.delete(entry)
        cleared = (None, t("gal_pick"), gr.Image(value=None, visible=False), "", "", None)
        # One truth across tabs: a deleted conversation leaves the Chat list, and the Chat tab too
        # when it was open there.
        was_open = entry.kind == "text" and entry.id == open_conversation
        chat = ([], None) if was_open else (gr.skip(), gr.skip())
        keep = None if was_open else open_conversation
        return (
            *cleared,
            *listing(query_value, kind_value, model_value, lang_value),
            *chat,
            chat_tab.conversation_choices(keep),
            note(text(lang_value, "gal_deleted"), "ok"),
        )

    filters = [query, kind, model, lang]
    list_outputs = [table, thumbs, entries, model]
    detail_outputs = [chosen, detail_title, detail_image, detail_labels, detail_text, detail_params, action_note]
    for trigger in (refresh.click, query.submit, kind.input, model.input):
        trigger(listing, filters, list_outputs)

    def on_language(found, *values):
        # Redraw only a list already shown (the tab was opened); its headers are in the old language.
        return listing(*values) if found else [gr.skip()] * len(list_outputs)

    lang.change(on_language, [entries, *filters], list_outputs)
    table.select(on_row, [lang, entries], detail_outputs)
    thumbs.select(on_thumb, [lang, entries], detail_outputs)
    chat_targets = [
        chat_tab.chatbot,
        chat_tab.conversation,
        chat_tab.conversations,
        chat_tab.system,
        chat_tab.model,
        *[chat_tab.options[n] for n in OPTION_FIELDS],
    ]
    image_targets = [images_tab.mode_tabs, images_tab.mode, *images_tab.form_outputs]
    reuse.click(on_reuse, [lang, chosen], [main_tabs, *image_targets, *chat_targets, action_note])
    delete.click(
        on_delete,
        [lang, chosen, chat_tab.conversation, query, kind, model],
        [
            *detail_outputs[:6],
            *list_outputs,
            chat_tab.chatbot,
            chat_tab.conversation,
            chat_tab.conversations,
            action_note,
        ],
    )
    return listing, filters, list_outputs
