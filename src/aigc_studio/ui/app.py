"""The web UI: one Gradio Blocks app, mounted at ``/`` on the studio's FastAPI app, after the APIs.

``mount_ui(app, studio)`` is all a server needs. Each tab is a module with a ``build`` function; a new
tab (Writing, Code, Compare) is one more ``with gr.Tab(...)`` block in ``build_blocks`` plus its
labels in ``i18n.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from fastapi import FastAPI
from gradio.context import LocalContext

from .. import __version__
from ..config import aigc_home, load_config
from ..studio import Studio
from . import arena, chat, code, compare, gallery, images, inspect, models, settings, write
from .common import UIContext
from .i18n import I18N, LANGUAGES, t
from .page_script import page_script
from .signed_in import SIGN_OUT, gradio_user, run_as_signed_in_user
from .text_labels import BADGE_CSS, label_holder

THEME = gr.themes.Soft(
    primary_hue="indigo",
    neutral_hue="slate",
    # Local fonts only: the page must work with no internet (Gradio ships these). Its Source Sans Pro
    # SemiBold file is a 5 KB subset that lacks letters such as "A", so bold text uses the Bold file.
    font=[
        gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)),
        "ui-sans-serif",
        "system-ui",
        "PingFang SC",
        "Microsoft YaHei",
        "Noto Sans CJK SC",
        "sans-serif",
    ],
    font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "Consolas", "monospace"],
)

CSS = """
#aigc-header { align-items: center; justify-content: space-between; padding: 0 4px; }
#aigc-brand { display: flex; align-items: baseline; gap: .6rem; }
#aigc-brand b { font-size: 1.3rem; font-weight: 600; }
#aigc-brand span { color: var(--body-text-color-subdued); font-size: .85rem; }
#aigc-lang { flex: 0 0 auto !important; width: auto; }
#aigc-lang .wrap { flex-wrap: nowrap; justify-content: flex-end; }
.aigc-sidebar .aigc-conversations { max-height: 520px; overflow-y: auto; }
.aigc-sidebar .aigc-conversations label { width: 100%; }
.aigc-status, .aigc-hint { color: var(--body-text-color-subdued); font-size: .85rem; min-height: 1.2em; }
.aigc-progress { position: relative; height: 26px; border-radius: 6px; overflow: hidden;
  background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
.aigc-progress .aigc-bar { position: absolute; inset: 0 auto 0 0; background: var(--color-accent-soft);
  transition: width .2s linear; }
.aigc-progress.done .aigc-bar { background: var(--block-label-background-fill); }
.aigc-progress span { position: relative; display: block; line-height: 24px; padding: 0 10px; font-size: .85rem;
  font-variant-numeric: tabular-nums; }
#img-generate { min-height: 64px; font-size: 1.1rem; }
/* Parameter help as a tooltip: A1111's panel stays compact, the declared help is one hover away. */
.aigc-params .block { position: relative; }
.aigc-params .form, .aigc-params .block { overflow: visible !important; }
.aigc-params .info-text { display: none; }
.aigc-params .block:hover .info-text { display: block; position: absolute; z-index: 40; left: 8px; right: 8px;
  bottom: calc(100% - 4px); padding: 6px 8px; border-radius: 6px; font-size: .8rem; pointer-events: none;
  color: var(--body-text-color);
  background: var(--background-fill-primary); border: 1px solid var(--border-color-primary);
  box-shadow: var(--shadow-drop-lg); }
.aigc-seed-row, .aigc-bottom-row { align-items: flex-end; }
.aigc-bottom-row > button { flex-grow: 0; height: 42px; margin-bottom: 10px; }
.aigc-seed-row > button { flex: 0 0 44px !important; min-width: 44px !important; height: 42px; margin-bottom: 4px;
  font-size: 1.1rem; padding: 0; }
.aigc-conversation { max-height: 360px; overflow-y: auto; }
.aigc-conversation pre, .aigc-conversation code { white-space: pre-wrap; word-break: break-word; }
.aigc-note { padding: 6px 10px; border-radius: 6px; font-size: .9rem; line-height: 1.35; }
.aigc-note.error { color: var(--error-text-color); background: var(--error-background-fill);
  border: 1px solid var(--error-border-color); }
.aigc-note.ok { color: var(--body-text-color); background: var(--color-accent-soft);
  border: 1px solid var(--border-color-accent); }
.aigc-note.info { color: var(--body-text-color-subdued); }
.aigc-diff { font-family: var(--font-mono); font-size: .85rem; padding: 8px; border-radius: 6px; overflow-x: auto;
  background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
.aigc-diff span { display: block; white-space: pre; }
.aigc-diff .add { background: rgba(34, 197, 94, .18); }
.aigc-diff .del { background: rgba(239, 68, 68, .18); }
.aigc-diff .hunk { color: var(--body-text-color-subdued); }
.aigc-runs ol { margin: 4px 0 0 1.2rem; font-size: .85rem; }
#gal-table .cell-wrap, #gal-table .header-content, #models-table .cell-wrap, #models-table .header-content {
  font-family: var(--font); }
"""


def build_blocks(ctx: UIContext, signed_in: bool = False) -> gr.Blocks:
    """The whole UI as one Blocks; handlers reach the studio through ``ctx``. ``signed_in``: a team
    server's UI, with a sign-out button."""
    with gr.Blocks(title="AIGC Studio", analytics_enabled=False, fill_width=True) as blocks:
        with gr.Row(elem_id="aigc-header", equal_height=True):
            gr.HTML(f"<div id='aigc-brand'><b>AIGC Studio</b><span>v{__version__}</span></div>")
            if signed_in:
                gr.HTML(SIGN_OUT, container=False, elem_id="aigc-signout-box")
            lang = gr.Radio(
                LANGUAGES, value="en", show_label=False, container=False, scale=0, min_width=240, elem_id="aigc-lang"
            )
        tab_langs: list[gr.Component] = []  # the language copies of the tabs built on opening (lazy_tab)
        with gr.Tabs(elem_id="aigc-tabs") as main_tabs:
            with gr.Tab(t("tab_chat"), id="chat", elem_id="tab-chat") as chat_tab_item:
                chat_tab = chat.build(ctx, lang)
            with gr.Tab(t("tab_writing"), id="write", elem_id="tab-write") as write_tab_item:
                lazy_tab(ctx, blocks, tab_langs, write_tab_item, lambda lang: _opened(write.build(ctx, lang)))
            with gr.Tab(t("tab_code"), id="code", elem_id="tab-code") as code_tab_item:
                lazy_tab(ctx, blocks, tab_langs, code_tab_item, lambda lang: _opened(code.build(ctx, lang)))
            with gr.Tab(t("tab_compare"), id="compare", elem_id="tab-compare") as compare_tab_item:
                lazy_tab(
                    ctx, blocks, tab_langs, compare_tab_item, lambda lang: Refresh(*compare.build(ctx, lang), inputs=[])
                )
            with gr.Tab(t("tab_arena"), id="arena", elem_id="tab-arena") as arena_tab_item:

                def build_arena(lang: gr.Component) -> Refresh:
                    open_arena, arena_inputs, arena_outputs = arena.build(ctx, lang)
                    return Refresh(open_arena, arena_outputs, inputs=[lang, *arena_inputs], queue=True)

                lazy_tab(ctx, blocks, tab_langs, arena_tab_item, build_arena)
            with gr.Tab(t("tab_images"), id="images", elem_id="tab-images") as images_tab_item:
                images_tab = images.build(ctx, lang)
            with gr.Tab(t("tab_gallery"), id="gallery", elem_id="tab-gallery") as gallery_tab:

                def build_gallery(lang: gr.Component) -> Refresh:
                    listing, filters, list_outputs = gallery.build(ctx, lang, main_tabs, chat_tab, images_tab)
                    return Refresh(listing, list_outputs, inputs=filters, queue=True)

                lazy_tab(ctx, blocks, tab_langs, gallery_tab, build_gallery)
            with gr.Tab(t("tab_inspect"), id="inspect", elem_id="tab-inspect") as inspect_tab:
                lazy_tab(ctx, blocks, tab_langs, inspect_tab, lambda lang: inspect.build(ctx, lang))
            with gr.Tab(t("tab_models"), id="models", elem_id="tab-models") as models_tab:

                def build_models(lang: gr.Component) -> Refresh:
                    refresh, outputs = models.build(ctx, lang, chat_tab.model, images_tab.form["model"])
                    return Refresh(refresh, outputs, inputs=[lang], queue=True)

                lazy_tab(ctx, blocks, tab_langs, models_tab, build_models)
            with gr.Tab(t("tab_settings"), id="settings", elem_id="tab-settings") as settings_tab:
                # Settings read config.toml each time the tab opens: a default set in Models shows here.
                lazy_tab(
                    ctx,
                    blocks,
                    tab_langs,
                    settings_tab,
                    lambda lang: Refresh(*settings.build(ctx, lang), inputs=[lang]),
                )
            # Later tabs go here, each its own module.
        label_holder(ctx)  # the label line that text copied from generated items gets
        # Every tab label, by its i18n key: Gradio draws the labels of tabs not yet opened once, in the
        # page's first language, so a language switch sends them again (translated in the browser).
        tab_labels = {
            "tab_chat": chat_tab_item,
            "tab_writing": write_tab_item,
            "tab_code": code_tab_item,
            "tab_compare": compare_tab_item,
            "tab_images": images_tab_item,
            "tab_gallery": gallery_tab,
            "tab_inspect": inspect_tab,
            "tab_models": models_tab,
            "tab_settings": settings_tab,
            "tab_arena": arena_tab_item,
            **images_tab.tabs,
        }

        def on_page_load():
            return (*chat_tab.on_load(), *images_tab.on_load())

        blocks.load(on_page_load, None, [*chat_tab.load_outputs, *images_tab.load_outputs], queue=False)
        # Pick the language in the browser (saved choice, else the browser's), then apply it.
        blocks.load(None, None, lang, js="() => window.aigcInitialLocale()")
        lang.input(None, lang, None, js="(lang) => { window.aigcSetLocale(lang, true); return []; }")
        lang.change(
            lambda _: [gr.Tab(label=t(key)) for key in tab_labels],
            lang,
            list(tab_labels.values()),
            js="async (lang) => { await window.aigcSetLocale(lang, false); return lang; }",
            queue=False,
        )
        # The tabs built on first opening follow the language through their own copy of it (lazy_tab).
        lang.change(lambda value: [value] * len(tab_langs), lang, tab_langs, queue=False, show_progress="hidden")
    _keep_off_the_api_page(blocks.fns.values())
    return blocks


def _keep_off_the_api_page(fns) -> None:
    for fn in fns:
        # The studio's APIs are /v1, /sdapi/v1 and /api; the UI's own endpoints stay out of Gradio's
        # API page (which would also put ~250 KB of endpoint descriptions into every page load).
        fn.api_visibility = "undocumented" if fn.fn else "private"


@dataclass
class Refresh:
    """What a tab runs each time it opens (fresh lists from the studio): handler, outputs, inputs."""

    fn: Callable
    outputs: list[gr.Component]
    inputs: list[gr.Component]
    queue: bool = False


def _opened(tab) -> Refresh:
    """The Refresh of a tab object with ``refresh``, ``refresh_outputs`` (and ``refresh_inputs``)."""
    return Refresh(tab.refresh, tab.refresh_outputs, list(getattr(tab, "refresh_inputs", None) or []))


def lazy_tab(
    ctx: UIContext,
    blocks: gr.Blocks,
    tab_langs: list[gr.Component],
    tab_item: gr.Tab,
    build: Callable[[gr.Component], Refresh | None],
) -> None:
    """Build a tab's content the first time a browser session opens it, not with the page.

    Every component on the page costs the browser time before the page can be used (Gradio sets up
    each one and matches it against every event handler), so the page holds only Chat and Images; each
    other tab is built by ``build(lang)`` once per session, on its first opening, and then stays as the
    user leaves it. ``build`` gets the tab's own copy of the language (a hidden box the page keeps in
    step): Gradio keeps one list of handlers per event, and a tab built later would replace the page's
    handlers of the language box with its own. If ``build`` returns a Refresh, it runs on the opening
    and each time the tab opens again. The language copy joins ``tab_langs``, which the page keeps in step."""
    tab_lang = gr.Textbox(value="en", visible=False)
    tab_langs.append(tab_lang)
    opened = gr.State(False)
    # Through the queue: Gradio's browser side acts on a changed state (which starts the build) only
    # when the event was queued; with queue=False the tab stayed empty.
    tab_item.select(lambda: True, None, opened, show_progress="hidden")

    @gr.render(inputs=opened, triggers=[opened.change], show_progress="hidden")
    def content(is_open: bool) -> None:
        if not is_open:
            return
        refresh = build(tab_lang)
        if refresh is not None:
            # Right after the build (the page's load event, for handlers built later) and on each opening.
            gr.on(
                [blocks.load, tab_item.select],
                refresh.fn,
                refresh.inputs,
                refresh.outputs,
                queue=refresh.queue,
            )
        _prepare_built_handlers(ctx)


def _prepare_built_handlers(ctx: UIContext) -> None:
    """The handlers a tab just built: off the API page, and wrapped as the page's own are."""
    config = LocalContext.blocks_config.get(None)
    renderable = LocalContext.renderable.get(None)
    if config is None or renderable is None:
        return
    built = [fn for fn in config.fns.values() if fn.rendered_in is renderable]
    _keep_off_the_api_page(built)
    # Gradio's browser side tells which components may be edited from the page's handlers only (an input of
    # one is editable, an output only is not), so a built tab says it for its own, by the same rule.
    inputs = {id(block) for fn in built for block in fn.inputs}
    for fn in built:
        for block in [*fn.inputs, *fn.outputs]:
            if getattr(block, "rendered_in", None) is renderable and getattr(block, "interactive", False) is None:
                block.interactive = id(block) in inputs
    for fn in built:
        if fn.fn is not None and not getattr(fn, "aigc_wrapped", False):
            for wrap in ctx.handler_wrappers:
                fn.fn = wrap(fn.fn)
            fn.aigc_wrapped = True


def mount_ui(app: FastAPI, studio: Studio | None = None, *, signed_in: bool = False) -> None:
    """Serve the web UI at ``/`` of ``app``. Call it after the API routes are included, so ``/v1``,
    ``/sdapi/v1``, ``/api`` and ``/health`` keep answering. Without ``studio``, handlers use the one
    the app's lifespan builds (``app.state.studio``). ``signed_in``: auth is on (api/auth.py): Gradio
    takes the user from the session and every handler runs as that user (ui/signed_in.py)."""
    ctx = UIContext(app=app, fixed_studio=studio)
    blocks = build_blocks(ctx, signed_in)
    if signed_in:
        ctx.handler_wrappers.append(run_as_signed_in_user(blocks, lambda name: ctx.studio.users.principal_named(name)))
    outputs = studio.config.outputs_dir if studio is not None else aigc_home() / "outputs"
    gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        theme=THEME,
        css=CSS + BADGE_CSS,
        head=page_script(),
        i18n=I18N,
        footer_links=[],
        ssr_mode=False,
        # Generated images live under AIGC_HOME/outputs; the gallery serves them from there.
        allowed_paths=[str(outputs)],
        show_error=True,
        auth_dependency=gradio_user if signed_in else None,
        # The upload limit of the APIs (max_upload_mb) holds for the web UI's uploads too.
        max_file_size=int((studio.config if studio is not None else load_config()).max_upload_mb) * 2**20,
    )
    # Gradio's queue looks for new events every millisecond while it has none (20 times a second on
    # Windows): about 5-10% of a core, taken from the text and image engines decoding in this process.
    # Every 20 ms still starts a click's work well before a person notices.
    blocks._queue.sleep_when_free = 0.02
