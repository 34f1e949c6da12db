"""The Image tab: txt2img, img2img, inpainting (mask painted in the browser), instruction edit and PNG
info, with A1111's parameter panel built from ``ImageRequest``, a progress bar with a preview, and
interrupt / skip. Every generation goes through the image service and its job queue."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr
from PIL import Image

from ..contracts import INPAINTING_FILL, SAMPLERS, SCHEDULERS, ImageRequest
from ..errors import StudioError
from ..images.infotext import parse_infotext, read_infotext, to_request_fields
from .common import UIContext, field_widget, progress_bar, shows_errors
from .i18n import t, text

# Every ImageRequest field the form shows, in the order handlers receive them.
FORM_FIELDS = [
    "prompt",
    "negative_prompt",
    "model",
    "steps",
    "sampler_name",
    "scheduler",
    "cfg_scale",
    "seed",
    "subseed",
    "subseed_strength",
    "width",
    "height",
    "batch_size",
    "n_iter",
    "denoising_strength",
    "mask_blur",
    "inpainting_fill",
    "image_cfg_scale",
    "clip_skip",
]
POLL_SECONDS = 0.2


@dataclass
class ImagesTab:
    form: dict[str, gr.Component]
    mode: gr.State
    mode_tabs: gr.Tabs
    init_image: gr.Image
    mask_editor: gr.ImageMask
    edit_image: gr.Image
    on_load: Callable[[], tuple] = lambda: ()
    load_outputs: list[gr.Component] = field(default_factory=list)
    # request fields (from a record or an infotext) -> the same, with a model this studio has
    with_known_model: Callable[[dict], dict] = dict

    @property
    def form_outputs(self) -> list[gr.Component]:
        return [self.form[name] for name in FORM_FIELDS]

    def fill_form(self, fields: dict, mode: str | None = None) -> list:
        """New values for the form from request fields (A1111 names); what is missing stays as it is.
        With ``mode``, the mode-dependent denoising slider is shown or hidden for it too."""
        values = [fields[name] if name in fields else gr.skip() for name in FORM_FIELDS]
        if mode is not None:
            given = {"value": fields["denoising_strength"]} if "denoising_strength" in fields else {}
            values[FORM_FIELDS.index("denoising_strength")] = gr.Slider(visible=uses_denoising(mode), **given)
        return values


def uses_denoising(mode: str) -> bool:
    return mode in ("img2img", "inpaint")


def _job_progress(lang: str, job) -> str:
    """The bar for a queued or running job: step, batch and ETA, as A1111 shows them."""
    if job.state == "queued":
        return progress_bar(0, text(lang, "img_queued"))
    eta = f"{job.eta:.1f}" if job.eta is not None else "…"
    label = text(
        lang, "img_progress", step=job.step, steps=job.steps, batch=job.batch + 1, batches=job.batches, eta=eta
    )
    return progress_bar(job.progress * 100, label)


def _mask_from_editor(value: dict | None) -> tuple[Image.Image | None, Image.Image | None]:
    """(image, mask) from the mask editor: white wherever the user painted."""
    if not value or value.get("background") is None:
        return None, None
    background = value["background"].convert("RGB")
    mask = Image.new("L", background.size, 0)
    for layer in value.get("layers") or []:
        painted = layer.convert("RGBA").getchannel("A").point(lambda a: 255 if a else 0)
        mask.paste(255, mask=painted)
    return background, (mask if mask.getbbox() else None)


def build(ctx: UIContext, lang: gr.Radio) -> ImagesTab:
    form: dict[str, gr.Component] = {}

    def widget(name: str, **kwargs) -> gr.Component:
        form[name] = field_widget(ImageRequest, name, **kwargs)
        return form[name]

    with gr.Row(equal_height=True):
        with gr.Column(scale=5):
            widget("prompt", lines=3, max_lines=8, placeholder=t("img_prompt_ph"))
            widget("negative_prompt", lines=2, max_lines=6)
        with gr.Column(scale=1, min_width=220, elem_classes=["aigc-params"]):
            generate = gr.Button(t("img_generate"), variant="primary", size="lg", elem_id="img-generate")
            with gr.Row():
                interrupt = gr.Button(
                    t("img_interrupt"), variant="stop", size="sm", min_width=80, elem_id="img-interrupt"
                )
                skip = gr.Button(t("img_skip"), size="sm", min_width=80, elem_id="img-skip")
            widget("model", choices=[])
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, elem_classes=["aigc-params"]):
            mode = gr.State("txt2img")
            with gr.Tabs(selected="txt2img", elem_id="img-modes") as mode_tabs:
                with gr.Tab(t("mode_txt2img"), id="txt2img") as tab_txt2img:
                    gr.Markdown(t("mode_txt2img_help"), elem_classes=["aigc-hint"])
                with gr.Tab(t("mode_img2img"), id="img2img") as tab_img2img:
                    init_image = gr.Image(
                        type="pil", label=t("img_init"), sources=["upload", "clipboard"], height=300, elem_id="img-init"
                    )
                with gr.Tab(t("mode_inpaint"), id="inpaint") as tab_inpaint:
                    mask_editor = gr.ImageMask(
                        type="pil",
                        format="png",
                        label=t("img_mask"),
                        sources=["upload", "clipboard"],
                        # Half-transparent, so the picture stays visible under the mask.
                        brush=gr.Brush(default_size=32, colors=[("#ffffff", 0.6)], color_mode="fixed"),
                        transforms=[],
                        layers=False,
                        height=360,
                        elem_id="img-mask",
                    )
                    with gr.Row():
                        widget("mask_blur")
                        widget("inpainting_fill", choices=[(t(f"fill_{k}"), k) for k in INPAINTING_FILL])
                with gr.Tab(t("mode_edit"), id="edit") as tab_edit:
                    edit_image = gr.Image(
                        type="pil",
                        label=t("img_edit_input"),
                        sources=["upload", "clipboard"],
                        height=300,
                        elem_id="img-edit",
                    )
                    widget("image_cfg_scale")
                with gr.Tab(t("mode_pnginfo"), id="pnginfo") as tab_pnginfo:
                    png = gr.Image(
                        type="filepath",
                        image_mode=None,
                        label=t("png_drop"),
                        height=240,
                        sources=["upload", "clipboard"],
                        elem_id="img-pnginfo",
                    )
                    png_text = gr.Textbox(
                        label=t("png_text"), lines=4, interactive=False, elem_id="png-text", buttons=["copy"]
                    )
            widget("denoising_strength", visible=False)
            with gr.Row():
                widget("sampler_name", choices=list(SAMPLERS))
                widget("scheduler", choices=list(SCHEDULERS.values()))
            widget("steps")
            with gr.Row():
                with gr.Column(scale=4, min_width=200):
                    widget("width")
                    widget("height")
                with gr.Column(scale=2, min_width=160):
                    widget("n_iter")
                    widget("batch_size")
            widget("cfg_scale")
            with gr.Row(equal_height=True, elem_classes=["aigc-seed-row"]):
                widget("seed", scale=4)
                random_seed = gr.Button("🎲", size="sm", min_width=48, scale=0, elem_id="img-seed-random")
                reuse_seed = gr.Button("♻️", size="sm", min_width=48, scale=0, elem_id="img-seed-reuse")
            with gr.Accordion(t("img_variation"), open=False):
                with gr.Row(equal_height=True, elem_classes=["aigc-seed-row"]):
                    widget("subseed", scale=4)
                    random_subseed = gr.Button("🎲", size="sm", min_width=48, scale=0)
                    reuse_subseed = gr.Button("♻️", size="sm", min_width=48, scale=0)
                widget("subseed_strength")
            with gr.Accordion(t("img_advanced"), open=False):
                widget("clip_skip")
        with gr.Column(scale=4):
            progress = gr.HTML(elem_id="img-progress")
            preview = gr.Image(
                label=t("img_preview"), interactive=False, height=128, visible=False, elem_id="img-preview"
            )
            gallery = gr.Gallery(
                label=t("img_results"),
                columns=4,
                height=440,
                format="png",
                object_fit="contain",
                elem_id="img-gallery",
                interactive=False,
            )
            with gr.Row():
                to_img2img = gr.Button(t("img_to_img2img"), size="sm", elem_id="img-to-img2img")
                to_inpaint = gr.Button(t("img_to_inpaint"), size="sm", elem_id="img-to-inpaint")
                to_edit = gr.Button(t("img_to_edit"), size="sm", elem_id="img-to-edit")
            infotext = gr.Textbox(
                label=t("img_infotext"), lines=4, interactive=False, elem_id="img-infotext", buttons=["copy"]
            )
    results = gr.State([])  # [{"path", "seed", "subseed", "infotext"}] of the last generation
    selected = gr.State(0)

    tab = ImagesTab(form, mode, mode_tabs, init_image, mask_editor, edit_image)

    @shows_errors
    def on_generate(request: gr.Request, mode_value, init, mask_value, edit_input, lang_value, *values):
        fields = {k: v for k, v in zip(FORM_FIELDS, values, strict=True) if k != "model" or v}
        image_request = ImageRequest(**fields)
        init_image = mask = None
        if mode_value == "img2img":
            init_image = init
        elif mode_value == "inpaint":
            init_image, mask = _mask_from_editor(mask_value)
        elif mode_value == "edit":
            init_image = edit_input
        job = ctx.studio.images.submit(image_request, mode_value, init_image=init_image, mask=mask, source="ui")
        ctx.image_jobs[request.session_hash] = job.id
        try:
            yield _job_progress(lang_value, job), gr.Image(value=None, visible=True), *[gr.skip()] * 4
            shown_step = None
            while not job.done.wait(POLL_SECONDS):
                # A new preview only when a step has passed: each one sent is a file in Gradio's cache.
                step = (job.batch, job.step)
                preview = job.preview() if job.preview is not None and step != shown_step else None
                shown_step = step if preview is not None else shown_step
                yield _job_progress(lang_value, job), preview if preview is not None else gr.skip(), *[gr.skip()] * 4
        finally:
            ctx.image_jobs.pop(request.session_hash, None)
        result = job.wait()  # None when it was interrupted before it started
        made = [
            {"path": str(g.path), "seed": g.seed, "subseed": g.subseed, "infotext": g.infotext}
            for g in (result.images if result else [])
        ]
        key = "img_done" if result and not result.interrupted else "img_interrupted"
        summary = text(lang_value, key, n=len(made), seconds=f"{job.finished - (job.started or job.created):.1f}")
        items = [(m["path"], f"{m['seed']}") for m in made]
        # Opened on the first image, large, with the batch as thumbnails under it (as in A1111).
        shown = gr.Gallery(value=items, selected_index=0 if items else None)
        yield (
            progress_bar(100, summary, done=True),
            gr.Image(value=None, visible=False),
            shown,
            made[0]["infotext"] if made else "",
            made,
            0,
        )

    def on_stop(request: gr.Request):
        ctx.studio.jobs.interrupt(ctx.image_jobs.get(request.session_hash))

    def on_skip():
        ctx.studio.jobs.skip()

    def on_select(made: list[dict], event: gr.SelectData):
        if not made or event.index is None or event.index >= len(made):
            return gr.skip(), 0
        return made[event.index]["infotext"], event.index

    def picked(made: list[dict], index: int) -> dict | None:
        return made[index] if made and index < len(made) else None

    def send_to(target: str):
        def handler(made: list[dict], index: int, lang_value: str):
            chosen = picked(made, index)
            if chosen is None:
                raise gr.Error(text(lang_value, "img_nothing_selected"))
            image = Image.open(chosen["path"])
            outputs = {
                "img2img": [image, gr.skip(), gr.skip()],
                "inpaint": [gr.skip(), image, gr.skip()],
                "edit": [gr.skip(), gr.skip(), image],
            }[target]
            return *outputs, gr.Tabs(selected=target), target, gr.Slider(visible=uses_denoising(target))

        return handler

    def reuse(key: str):
        def handler(made: list[dict], index: int, current):
            chosen = picked(made, index)
            return chosen[key] if chosen else current

        return handler

    @shows_errors
    def on_png(path: str | None, lang_value: str):
        if not path:
            return "", *[gr.skip()] * len(FORM_FIELDS)
        infotext_value = read_infotext(path)
        if not infotext_value:
            gr.Info(text(lang_value, "png_none"))
            return "", *[gr.skip()] * len(FORM_FIELDS)
        try:
            fields = to_request_fields(parse_infotext(infotext_value))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return infotext_value, *tab.fill_form(with_known_model(fields))

    def with_known_model(fields: dict) -> dict:
        """Request fields, with the checkpoint kept only when this studio has that model."""
        fields = dict(fields)
        checkpoint = fields.pop("sd_model_checkpoint", None) or fields.pop("model", None)
        if checkpoint:
            # the image may name a model this studio lacks; then the current choice stays
            with contextlib.suppress(StudioError):
                fields["model"] = ctx.studio.registry.resolve(str(checkpoint), kind="image").id
        return fields

    def on_load():
        registry = ctx.studio.registry
        ids = [m.id for m in registry.all() if m.kind == "image"]
        try:
            default = registry.default_image_model
        except StudioError:
            default = None  # no image model installed yet: the service says so on Generate
        return (gr.Dropdown(choices=ids, value=default),)

    outputs = [progress, preview, gallery, infotext, results, selected]
    form_inputs = [form[name] for name in FORM_FIELDS]
    generate_inputs = [mode, init_image, mask_editor, edit_image, lang, *form_inputs]
    for trigger in (generate.click, form["prompt"].submit):
        # show_progress hidden: the tab draws its own bar, with steps, ETA and a preview.
        trigger(on_generate, generate_inputs, outputs, concurrency_limit=None, show_progress="hidden")
    interrupt.click(on_stop, None, None, queue=False)
    skip.click(on_skip, None, None, queue=False)
    for mode_tab, mode_id in [
        (tab_txt2img, "txt2img"),
        (tab_img2img, "img2img"),
        (tab_inpaint, "inpaint"),
        (tab_edit, "edit"),
        (tab_pnginfo, "txt2img"),
    ]:
        # Denoising strength applies to img2img and inpainting only.
        mode_tab.select(
            lambda m=mode_id: (m, gr.Slider(visible=uses_denoising(m))),
            None,
            [mode, form["denoising_strength"]],
            queue=False,
        )
    gallery.select(on_select, results, [infotext, selected])
    targets = [init_image, mask_editor, edit_image, mode_tabs, mode, form["denoising_strength"]]
    to_img2img.click(send_to("img2img"), [results, selected, lang], targets)
    to_inpaint.click(send_to("inpaint"), [results, selected, lang], targets)
    to_edit.click(send_to("edit"), [results, selected, lang], targets)
    random_seed.click(lambda: -1, None, form["seed"], queue=False)
    random_subseed.click(lambda: -1, None, form["subseed"], queue=False)
    reuse_seed.click(reuse("seed"), [results, selected, form["seed"]], form["seed"], queue=False)
    reuse_subseed.click(reuse("subseed"), [results, selected, form["subseed"]], form["subseed"], queue=False)
    png.upload(on_png, [png, lang], [png_text, *tab.form_outputs])

    tab.on_load, tab.load_outputs, tab.with_known_model = on_load, [form["model"]], with_known_model
    return tab
