"""The Gallery / History tab: every text and image generation, newest first; search by prompt, filter
by kind and model, open one to see all its parameters, reuse them, delete."""

from __future__ import annotations

import time
from collections.abc import Callable

import gradio as gr

from ..studio import Studio
from .chat import OPTION_FIELDS, ChatTab
from .common import UIContext, shows_errors
from .i18n import t, text
from .images import ImagesTab

LIMIT = 200
KINDS = ["all", "image", "text"]


def gallery_entries(
    studio: Studio, query: str = "", kind: str = "all", model: str = "", limit: int = LIMIT
) -> list[dict]:
    """Text and image generations, newest first, from the image service and history."""
    query = query.strip()
    entries: list[dict] = []
    if kind in ("all", "image"):
        for row in studio.images.list(limit=limit, query=query or None, model=model or None):
            entries.append(
                {
                    "kind": "image",
                    "id": row["id"],
                    "created": row["created"],
                    "model": row["model"],
                    "prompt": row["prompt"],
                    "path": row["path"],
                    "params": row["params"],
                    "infotext": row["infotext"],
                    "mode": row["mode"],
                }
            )
    if kind in ("all", "text"):
        rows = studio.history.search(query, limit=limit) if query else studio.history.list(limit=limit)
        seen: set[str] = set()
        for row in rows:
            if row["id"] in seen or (model and row["model"] != model):
                continue
            seen.add(row["id"])
            entries.append(
                {
                    "kind": "text",
                    "id": row["id"],
                    "created": row["updated"],
                    "model": row["model"],
                    "prompt": row["title"],
                }
            )
    entries.sort(key=lambda e: e["created"], reverse=True)
    return entries[:limit]


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
                column_widths=["18%", "10%", "16%", "56%"],
            )
        with gr.Column(scale=2, elem_classes=["aigc-detail"]):
            detail_title = gr.Markdown(t("gal_pick"), elem_id="gal-detail-title")
            detail_image = gr.Image(
                label=t("gal_image"), interactive=False, visible=False, height=300, elem_id="gal-detail-image"
            )
            detail_text = gr.Markdown(elem_id="gal-detail-text", elem_classes=["aigc-conversation"])
            detail_params = gr.JSON(label=t("gal_params"), open=True, elem_id="gal-detail-params")
            with gr.Row():
                reuse = gr.Button(t("gal_reuse"), variant="primary", size="sm", elem_id="gal-reuse")
                delete = gr.Button(t("gal_delete"), variant="stop", size="sm", elem_id="gal-delete")
    entries = gr.State([])
    chosen = gr.State(None)

    def listing(query_value: str, kind_value: str, model_value: str, lang_value: str):
        found = gallery_entries(ctx.studio, query_value or "", kind_value or "all", model_value or "")
        rows = [
            [
                time.strftime("%Y-%m-%d %H:%M", time.localtime(e["created"])),
                text(lang_value, f"gal_kind_{e['kind']}"),
                e["model"],
                e["prompt"],
            ]
            for e in found
        ]
        headers = [text(lang_value, key) for key in ("gal_col_time", "gal_col_kind", "gal_col_model", "gal_col_prompt")]
        images = [(e["path"], e["prompt"][:60]) for e in found if e["kind"] == "image"]
        models = [("—", "")] + [(m.id, m.id) for m in ctx.studio.registry.all()]
        return (
            gr.Dataframe(value=rows or [["", "", "", ""]], headers=headers),
            images,
            found,
            gr.Dropdown(choices=models),
        )

    def show(entry: dict, lang_value: str):
        if entry["kind"] == "image":
            title = f"### 🖼 {entry['id']}"
            body = f"```\n{entry['infotext']}\n```"
            return entry, title, gr.Image(value=entry["path"], visible=True), body, entry["params"]
        conv = ctx.studio.history.get(entry["id"])
        lines = [f"**{text(lang_value, 'role_' + m['role'])}**: {m['content']}" for m in conv["messages"]]
        params = {"model": conv["model"], "responses": conv["responses"]}
        return entry, f"### 💬 {conv['title']}", gr.Image(value=None, visible=False), "\n\n".join(lines), params

    @shows_errors
    def on_row(found: list[dict], lang_value: str, event: gr.SelectData):
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if row is None or row >= len(found):
            return [gr.skip()] * 5
        return show(found[row], lang_value)

    @shows_errors
    def on_thumb(found: list[dict], lang_value: str, event: gr.SelectData):
        images = [e for e in found if e["kind"] == "image"]
        return show(images[event.index], lang_value)

    @shows_errors
    def on_reuse(entry: dict | None, lang_value: str):
        if entry is None:
            raise gr.Error(text(lang_value, "gal_pick"))
        if entry["kind"] == "image":
            fields = images_tab.with_known_model(entry["params"])
            # The input image of img2img/inpaint/edit is not recorded, so its parameters go to txt2img.
            chat_skip = [gr.skip()] * (5 + len(OPTION_FIELDS))
            return (
                gr.Tabs(selected="images"),
                gr.Tabs(selected="txt2img"),
                "txt2img",
                *images_tab.fill_form(fields, mode="txt2img"),
                *chat_skip,
            )
        conv = ctx.studio.history.get(entry["id"])
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
            gr.skip(),
            gr.skip(),
            *[gr.skip()] * len(images_tab.form_outputs),
            shown,
            conv["id"],
            gr.Radio(value=conv["id"]),
            system,
            conv["model"],
            *options,
        )

    @shows_errors
    def on_delete(entry: dict | None, query_value: str, kind_value: str, model_value: str, lang_value: str):
        if entry is None:
            raise gr.Error(text(lang_value, "gal_pick"))
        if entry["kind"] == "text":
            ctx.studio.history.delete(entry["id"])
        else:
            ctx.studio.images.delete(entry["id"])
        gr.Info(text(lang_value, "gal_deleted"))
        cleared = (None, t("gal_pick"), gr.Image(value=None, visible=False), "", None)
        return *cleared, *listing(query_value, kind_value, model_value, lang_value)

    filters = [query, kind, model, lang]
    list_outputs = [table, thumbs, entries, model]
    detail_outputs = [chosen, detail_title, detail_image, detail_text, detail_params]
    for trigger in (refresh.click, query.submit, kind.input, model.input):
        trigger(listing, filters, list_outputs)

    def on_language(found, *values):
        # Redraw only a list already shown (the tab was opened); its headers are in the old language.
        return listing(*values) if found else [gr.skip()] * len(list_outputs)

    lang.change(on_language, [entries, *filters], list_outputs)
    table.select(on_row, [entries, lang], detail_outputs)
    thumbs.select(on_thumb, [entries, lang], detail_outputs)
    chat_targets = [
        chat_tab.chatbot,
        chat_tab.conversation,
        chat_tab.conversations,
        chat_tab.system,
        chat_tab.model,
        *[chat_tab.options[n] for n in OPTION_FIELDS],
    ]
    image_targets = [images_tab.mode_tabs, images_tab.mode, *images_tab.form_outputs]
    reuse.click(on_reuse, [chosen, lang], [main_tabs, *image_targets, *chat_targets])
    delete.click(on_delete, [chosen, *filters], [*detail_outputs, *list_outputs])
    return listing, filters, list_outputs
