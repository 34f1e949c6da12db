"""The Models tab: installed models (kind, size, hash, license, source), add a local file, import an
AUTOMATIC1111 install, set the default text and image model, pull a catalog model with a progress bar.
The work is the model service's (``studio.models``) and the registry's; each action's outcome, good or
bad, is a message by its button."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from ..errors import StudioError
from ..models.catalog import CATALOG, find
from .common import Mistake, UIContext, note, progress_bar, reports_to
from .i18n import t, text

COLUMNS = (
    "mod_col_id",
    "mod_col_kind",
    "mod_col_engine",
    "mod_col_size",
    "mod_col_hash",
    "mod_col_license",
    "mod_col_source",
    "mod_col_default",
    "mod_col_loaded",
)


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def build(
    ctx: UIContext, lang: gr.Radio, chat_model: gr.Dropdown, image_model: gr.Dropdown
) -> tuple[Callable, list[gr.Component]]:
    """The tab; returns (refresh handler, its outputs), run when the tab opens (it may hash files)."""
    table = gr.Dataframe(interactive=False, wrap=True, elem_id="models-table", max_height=360)
    with gr.Row(equal_height=False):
        with gr.Column():
            gr.Markdown(t("mod_add_title"))
            path = gr.Textbox(label=t("mod_path"), placeholder=t("mod_path_ph"), elem_id="models-path")
            with gr.Row(elem_classes=["aigc-bottom-row"]):
                name = gr.Textbox(label=t("mod_name"), placeholder=t("mod_name_ph"), elem_id="models-name", scale=3)
                add = gr.Button(t("mod_add"), variant="primary", scale=1, min_width=120, elem_id="models-add")
            add_note = gr.HTML(elem_id="models-add-note")
        with gr.Column():
            gr.Markdown(t("mod_defaults_title"))
            with gr.Row(elem_classes=["aigc-bottom-row"]):
                default_text = gr.Dropdown([], label=t("mod_default_text"), scale=3, elem_id="models-default-text")
                set_text = gr.Button(t("mod_set_default"), scale=1, min_width=120, elem_id="models-set-text")
            with gr.Row(elem_classes=["aigc-bottom-row"]):
                default_image = gr.Dropdown([], label=t("mod_default_image"), scale=3, elem_id="models-default-image")
                set_image = gr.Button(t("mod_set_default"), scale=1, min_width=120, elem_id="models-set-image")
            default_note = gr.HTML(elem_id="models-default-note")
    with gr.Accordion(t("mod_pull_title"), open=False, elem_id="models-pull-section"):
        gr.Markdown(t("mod_pull_note"))
        with gr.Row(elem_classes=["aigc-bottom-row"]):
            catalog = gr.Dropdown(
                [(f"{e.id} ({e.kind}, {_size(e.size_bytes)}, {e.license})", e.id) for e in CATALOG],
                label=t("mod_pull_pick"),
                scale=3,
                elem_id="models-pull-pick",
            )
            pull_button = gr.Button(
                t("mod_pull"), variant="primary", scale=1, min_width=120, elem_id="models-pull-button"
            )
        pull_progress = gr.HTML(elem_id="models-pull-progress")
    with gr.Accordion(t("mod_remote_title"), open=False, elem_id="models-remote-section"):
        gr.Markdown(t("mod_remote_note"))
        with gr.Row():
            remote_name = gr.Textbox(label=t("mod_remote_name"), elem_id="models-remote-name")
            remote_url = gr.Textbox(
                label=t("mod_remote_url"), placeholder="http://127.0.0.1:8080/v1", elem_id="models-remote-url"
            )
            remote_model = gr.Textbox(label=t("mod_remote_model"), elem_id="models-remote-model")
        with gr.Row(elem_classes=["aigc-bottom-row"]):
            remote_env = gr.Textbox(label=t("mod_remote_env"), placeholder="DEEPSEEK_KEY", elem_id="models-remote-env")
            remote_key = gr.Textbox(label=t("mod_remote_key"), type="password", elem_id="models-remote-key")
            remote_add = gr.Button(t("mod_remote_add"), variant="primary", min_width=160, elem_id="models-remote-add")
        remote_note = gr.HTML(elem_id="models-remote-note")
    with gr.Accordion(t("mod_import_title"), open=False, elem_id="models-import-section"):
        gr.Markdown(t("mod_import_note"))
        with gr.Row(elem_classes=["aigc-bottom-row"]):
            import_path = gr.Textbox(
                label=t("mod_import_path"), placeholder=t("mod_import_ph"), scale=3, elem_id="models-import-path"
            )
            import_button = gr.Button(t("mod_import"), scale=1, min_width=120, elem_id="models-import-button")
        import_note = gr.HTML(elem_id="models-import-note")

    def refresh(lang_value: str, new_default: bool = False):
        """The table and the model lists; with ``new_default``, the Chat and Images tabs switch to the
        defaults too (otherwise a model picked there stays picked)."""
        registry = ctx.studio.registry
        try:
            image_default = registry.default_image_model
        except StudioError:
            image_default = None  # none installed
        rows = []
        loaded = {m.id for m in ctx.studio.models.overview().models if m.loaded}
        for info in registry.all():
            # Read once per file and cached; the first read of a large file is slow, which is why the
            # table is filled when the Models tab opens rather than with the page.
            digest = registry.model_hash(info)
            is_default = info.id in (registry.default_model, image_default)
            rows.append(
                [
                    info.id,
                    text(lang_value, f"kind_{info.kind}"),
                    info.engine,
                    _size(info.size_bytes),
                    digest or "—",
                    info.license or "—",
                    info.source,
                    "✓" if is_default else "",
                    "✓" if info.id in loaded else "",
                ]
            )
        headers = [text(lang_value, key) for key in COLUMNS]
        text_ids = [m.id for m in registry.all() if m.kind == "text"]
        image_ids = [m.id for m in registry.all() if m.kind == "image"]
        picked = {"text": {"value": registry.default_model}, "image": {"value": image_default}}
        return (
            gr.Dataframe(value=rows, headers=headers),
            gr.Dropdown(choices=text_ids, value=registry.default_model),
            gr.Dropdown(choices=image_ids, value=image_default),
            gr.Dropdown(choices=text_ids, **(picked["text"] if new_default else {})),
            gr.Dropdown(choices=image_ids, **(picked["image"] if new_default else {})),
        )

    @reports_to(add_note)
    def on_add(lang_value: str, path_value: str, name_value: str):
        if not path_value.strip():
            raise Mistake("mod_path_missing")
        info = ctx.studio.models.add(path_value.strip(), model_id=name_value.strip() or None)
        added = text(lang_value, "mod_added", id=info.id, kind=text(lang_value, f"kind_{info.kind}"))
        return "", "", *refresh(lang_value), note(added, "ok")

    @reports_to(remote_note)
    def on_add_remote(lang_value: str, name_value: str, url_value: str, model_value: str, env: str, key: str):
        if not (name_value.strip() and url_value.strip() and model_value.strip()):
            raise Mistake("mod_remote_missing")
        info, _ = ctx.studio.models.add_remote(
            name_value.strip(),
            url_value.strip(),
            model_value.strip(),
            api_key=key.strip() or None,
            api_key_env=env.strip() or None,
        )
        added = text(lang_value, "mod_remote_added", id=info.id, url=info.path, model=info.remote_model)
        # The key box is emptied either way once added: it is not kept in the page.
        return "", "", "", "", "", *refresh(lang_value), note(added, "ok")

    def set_default(kind: str):
        @reports_to(default_note)
        def on_set_default(lang_value: str, model_id: str | None):
            if not model_id:
                raise Mistake("mod_pick_model")
            chosen = ctx.studio.models.set_default(model_id, kind=kind).id
            return *refresh(lang_value, new_default=True), note(text(lang_value, "mod_default_set", id=chosen), "ok")

        return on_set_default

    @reports_to(pull_progress)
    def on_pull(lang_value: str, entry_id: str | None):
        """Pull in a thread and show its progress every half second; the model service does the work."""
        if not entry_id:
            raise Mistake("mod_pull_pick")
        entry = find(entry_id)
        state = {"done": 0, "total": entry.size_bytes, "file": ""}
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["info"] = ctx.studio.models.pull(
                    entry.id, progress=lambda done, total, file: state.update(done=done, total=total, file=file)
                )[0]
            except StudioError as exc:
                outcome["error"] = exc

        # The pull runs as the signed-in user (its context copied), so the admin check sees who asked.
        worker = threading.Thread(
            target=contextvars.copy_context().run, args=(work,), name=f"pull-{entry.id}", daemon=True
        )
        worker.start()
        while worker.is_alive():
            label = text(
                lang_value,
                "mod_pulling",
                file=state["file"] or entry.id,
                done=state["done"] / 2**20,
                total=state["total"] / 2**20,
            )
            yield {pull_progress: progress_bar(100 * state["done"] / max(state["total"], 1), label)}
            worker.join(0.5)
        if "error" in outcome:
            raise outcome["error"]  # shown in place of the bar; the table stays as it was
        pulled = progress_bar(100, text(lang_value, "mod_pulled", id=outcome["info"].id), done=True)
        yield dict(zip([*outputs, pull_progress], [*refresh(lang_value), pulled], strict=True))

    @reports_to(import_note)
    def on_import(lang_value: str, folder: str):
        if not folder.strip():
            raise Mistake("mod_path_missing")
        outcome = ctx.studio.models.import_a1111(Path(folder.strip()).expanduser())
        lines = [
            text(
                lang_value,
                "mod_imported",
                added=len(outcome.added),
                already=len(outcome.already),
                skipped=len(outcome.skipped),
            )
        ]
        lines += [text(lang_value, "mod_import_skipped", name=name, why=why) for name, why in outcome.skipped]
        return *refresh(lang_value), note(" ".join(lines), "ok")

    outputs = [table, default_text, default_image, chat_model, image_model]
    add.click(on_add, [lang, path, name], [path, name, *outputs, add_note])
    set_text.click(set_default("text"), [lang, default_text], [*outputs, default_note])
    set_image.click(set_default("image"), [lang, default_image], [*outputs, default_note])
    pull_button.click(on_pull, [lang, catalog], [*outputs, pull_progress])
    import_button.click(on_import, [lang, import_path], [*outputs, import_note])
    remote_fields = [remote_name, remote_url, remote_model, remote_env, remote_key]
    remote_add.click(on_add_remote, [lang, *remote_fields], [*remote_fields, *outputs, remote_note])

    def on_language(lang_value: str, shown):
        # Only a table already filled (the tab was opened) is redrawn: filling it may hash files.
        return refresh(lang_value)[0] if shown is not None and len(shown) else gr.skip()

    lang.change(on_language, [lang, table], table)
    return refresh, outputs
