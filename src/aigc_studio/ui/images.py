"""The Image tab: txt2img (with hires. fix), img2img, inpainting (mask painted in the browser),
instruction edit and PNG info, with A1111's parameter panel built from ``ImageRequest``, a progress
bar with a preview, interrupt / skip, and A1111's shortcuts (Ctrl+Enter generates, Alt+Enter skips).
Every generation goes through the image service and its job queue."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr
from PIL import Image

from ..contracts import HR_UPSCALERS, INPAINTING_FILL, OPENVINO_PHASE, SAMPLERS, SCHEDULERS, ImageRequest
from ..errors import StudioError
from ..images.infotext import parse_infotext, read_infotext, to_request_fields
from . import prompt_tools
from .common import Mistake, UIContext, field_widget, note, progress_bar, reports_to, snaps_to_multiple
from .i18n import t, text
from .image_labels import labels_html

# Every ImageRequest field the form shows, in the order handlers receive them. The hires. fix
# accordion has its own denoising slider (A1111's): it is ``denoising_strength`` in txt2img.
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
    "resize_mode",
    "mask_blur",
    "inpainting_fill",
    "inpainting_mask_invert",
    "inpaint_full_res",
    "inpaint_full_res_padding",
    "image_cfg_scale",
    "clip_skip",
    "eta",
    "s_min_uncond",
    "s_min_uncond_all",
    "tiling",
    "enable_hr",
    "hr_upscaler",
    "hr_second_pass_steps",
    "hires_denoising_strength",
    "hr_scale",
    "hr_resize_x",
    "hr_resize_y",
    "styles",
    "dynamic_prompts",
]
HIRES_DENOISING = "hires_denoising_strength"
HIRES_FIELDS = ("hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y")
POLL_SECONDS = 0.2


@dataclass
class ImagesTab:
    form: dict[str, gr.Component]
    mode: gr.State
    mode_tabs: gr.Tabs
    tabs: dict[str, gr.Tab]  # i18n key of its label -> sub-tab
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
        With ``mode``, the mode-dependent widgets are shown or hidden for it too."""
        fields = dict(fields)
        if mode == "txt2img" and "denoising_strength" in fields:
            fields[HIRES_DENOISING] = fields["denoising_strength"]  # txt2img's denoising is the hires pass's
        values = []
        for name in FORM_FIELDS:
            value = fields.get(name, gr.skip())
            if isinstance(value, bool) and isinstance(self.form[name], gr.Radio):
                value = int(value)  # a yes/no field shown as two choices has the values 0 and 1
            if name == "dynamic_prompts" and value is None:
                value = prompt_tools.DYNAMIC_OFF
            values.append(value)
        if mode is not None:
            for name in ("denoising_strength", "resize_mode"):
                given = {"value": fields[name]} if name in fields else {}
                values[FORM_FIELDS.index(name)] = self.form[name].__class__(visible=starts_from_image(mode), **given)
        return values


def starts_from_image(mode: str) -> bool:
    """Denoising strength and resize mode apply to img2img and inpainting."""
    return mode in ("img2img", "inpaint")


def request_fields(mode: str, values: tuple) -> dict:
    """The form's values as ImageRequest fields: an empty model is the default one; in txt2img the
    hires. fix slider is the denoising strength; hires. fix is txt2img's only (as in A1111)."""
    fields = dict(zip(FORM_FIELDS, values, strict=True))
    hires_denoising = fields.pop(HIRES_DENOISING)
    if mode == "txt2img":
        fields["denoising_strength"] = hires_denoising
    else:
        fields["enable_hr"] = False
    if not fields["model"]:
        del fields["model"]
    if fields["eta"] is None:
        del fields["eta"]
    fields.update(prompt_tools.request_values(fields["styles"], fields["dynamic_prompts"]))
    return fields


def with_hires(fields: dict) -> dict:
    """Request fields from an infotext: hires. fix values there mean it was on (A1111 writes them only then)."""
    if any(name in fields for name in HIRES_FIELDS):
        return {**fields, "enable_hr": True}
    return fields


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
    tabs: dict[str, gr.Tab] = {}

    def widget(name: str, **kwargs) -> gr.Component:
        form[name] = field_widget(ImageRequest, name, **kwargs)
        return form[name]

    with gr.Row(equal_height=True):
        with gr.Column(scale=5):
            widget("prompt", lines=3, max_lines=8, placeholder=t("img_prompt_ph"))
            widget("negative_prompt", lines=2, max_lines=6)
            tools = prompt_tools.build_widgets()
            form["styles"], form["dynamic_prompts"] = tools.styles, tools.dynamic
        with gr.Column(scale=1, min_width=220, elem_classes=["aigc-params"]):
            generate = gr.Button(t("img_generate"), variant="primary", size="lg", elem_id="img-generate")
            with gr.Row():
                interrupt = gr.Button(
                    t("img_interrupt"), variant="stop", size="sm", min_width=80, elem_id="img-interrupt"
                )
                skip = gr.Button(t("img_skip"), size="sm", min_width=80, elem_id="img-skip")
            gr.Markdown(t("img_shortcut"), elem_classes=["aigc-hint"], elem_id="img-shortcut")
            widget("model", choices=[])
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, elem_classes=["aigc-params"]):
            mode = gr.State("txt2img")
            with gr.Tabs(selected="txt2img", elem_id="img-modes") as mode_tabs:
                with gr.Tab(t("mode_txt2img"), id="txt2img", elem_id="img-mode-txt2img") as tabs["mode_txt2img"]:
                    gr.Markdown(t("mode_txt2img_help"), elem_classes=["aigc-hint"])
                    with gr.Accordion(t("img_hires"), open=False, elem_id="img-hires"):
                        widget("enable_hr")
                        with gr.Row():
                            widget("hr_upscaler", choices=list(HR_UPSCALERS))
                            widget("hr_second_pass_steps")
                            form[HIRES_DENOISING] = field_widget(
                                ImageRequest, "denoising_strength", elem_id=f"imagerequest-{HIRES_DENOISING}"
                            )
                        with gr.Row():
                            widget("hr_scale")
                            widget("hr_resize_x")
                            widget("hr_resize_y")
                with gr.Tab(t("mode_img2img"), id="img2img", elem_id="img-mode-img2img") as tabs["mode_img2img"]:
                    init_image = gr.Image(
                        type="pil", label=t("img_init"), sources=["upload", "clipboard"], height=300, elem_id="img-init"
                    )
                with gr.Tab(t("mode_inpaint"), id="inpaint", elem_id="img-mode-inpaint") as tabs["mode_inpaint"]:
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
                        widget("inpainting_mask_invert", choices=[(t(f"maskmode_{k}"), k) for k in (0, 1)])
                    widget("inpainting_fill", choices=[(t(f"fill_{k}"), k) for k in INPAINTING_FILL])
                    with gr.Row():
                        widget("inpaint_full_res", choices=[(t(f"area_{k}"), k) for k in (0, 1)])
                        widget("inpaint_full_res_padding")
                with gr.Tab(t("mode_edit"), id="edit", elem_id="img-mode-edit") as tabs["mode_edit"]:
                    edit_image = gr.Image(
                        type="pil",
                        label=t("img_edit_input"),
                        sources=["upload", "clipboard"],
                        height=300,
                        elem_id="img-edit",
                    )
                    widget("image_cfg_scale")
                with gr.Tab(t("mode_pnginfo"), id="pnginfo", elem_id="img-mode-pnginfo") as tabs["mode_pnginfo"]:
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
                    with gr.Row():
                        png_to_txt2img = gr.Button(t("png_to_txt2img"), size="sm", elem_id="png-to-txt2img")
                        png_to_img2img = gr.Button(t("png_to_img2img"), size="sm", elem_id="png-to-img2img")
                    png_note = gr.HTML(elem_id="png-note")
            widget("resize_mode", choices=[(t(f"resize_{k}"), k) for k in range(4)], visible=False)
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
            widget("tiling")
            with gr.Accordion(t("img_advanced"), open=False), gr.Row():
                widget("clip_skip")
                widget("eta", unset=True, placeholder=t("unset_ph"))
            with gr.Accordion(t("img_ngms"), open=False, elem_id="img-ngms"), gr.Row():
                widget("s_min_uncond")
                widget("s_min_uncond_all")
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
            send_note = gr.HTML(elem_id="img-send-note")
            infotext = gr.Textbox(
                label=t("img_infotext"), lines=4, interactive=False, elem_id="img-infotext", buttons=["copy"]
            )
            labels_box = gr.HTML(elem_id="img-labels")
    results = gr.State([])  # [{"path", "seed", "subseed", "infotext", "labels"}] of the last generation
    selected = gr.State(0)
    png_fields = gr.State(None)  # request fields read from the dropped PNG

    tab = ImagesTab(form, mode, mode_tabs, tabs, init_image, mask_editor, edit_image)

    def job_progress(lang_value: str, job) -> str:
        """The bar for a queued or running job: loading the model, then step, batch and ETA as A1111."""
        if job.state == "queued":
            return progress_bar(0, text(lang_value, "img_queued"))
        if job.phase == "labeling":
            return progress_bar(job.progress * 100, text(lang_value, "lab_labeling"))
        if job.phase:  # compiling the UNet or preparing OpenVINO, before the first step
            key = "img_openvino" if job.phase == OPENVINO_PHASE else "img_compiling"
            return progress_bar(job.progress * 100, text(lang_value, key))
        if job.step == 0 and job.batch == 0:
            if ctx.studio.registry.loaded_image_model() != job.model:
                return progress_bar(0, text(lang_value, "img_loading", model=job.model))
            return progress_bar(0, text(lang_value, "img_starting"))
        eta = f"{job.eta:.1f}" if job.eta is not None else "…"
        label = text(
            lang_value,
            "img_progress",
            step=job.step,
            steps=job.steps,
            batch=job.batch + 1,
            batches=job.batches,
            eta=eta,
        )
        return progress_bar(job.progress * 100, label)

    @reports_to(progress)
    def on_generate(request: gr.Request, lang_value, mode_value, init, mask_value, edit_input, *values):
        image_request = ImageRequest(**request_fields(mode_value, values))
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
            yield {progress: job_progress(lang_value, job), preview: gr.Image(value=None, visible=True)}
            shown_step = None
            # Quicker until the first step, so a model load of a fraction of a second still shows.
            while not job.done.wait(POLL_SECONDS if job.step else POLL_SECONDS / 4):
                # A new preview only when a step has passed: each one sent is a file in Gradio's cache.
                step = (job.batch, job.step)
                update = {progress: job_progress(lang_value, job)}
                if job.preview is not None and step != shown_step and job.step:
                    shown = job.preview()
                    if shown is not None:
                        update[preview], shown_step = shown, step
                yield update
        finally:
            ctx.image_jobs.pop(request.session_hash, None)
        result = job.wait()  # None when it was interrupted before it started
        made = [
            {"path": str(g.path), "seed": g.seed, "subseed": g.subseed, "infotext": g.infotext, "labels": g.labels}
            for g in (result.images if result else [])
        ]
        key = "img_done" if result and not result.interrupted else "img_interrupted"
        summary = text(lang_value, key, n=len(made), seconds=f"{job.finished - (job.started or job.created):.1f}")
        items = [(m["path"], f"{m['seed']}") for m in made]
        # Opened on the first image, large, with the batch as thumbnails under it (as in A1111).
        yield {
            progress: progress_bar(100, summary, done=True),
            preview: gr.Image(value=None, visible=False),
            gallery: gr.Gallery(value=items, selected_index=0 if items else None),
            infotext: made[0]["infotext"] if made else "",
            labels_box: labels_html(lang_value, made[0]["labels"]) if made else "",
            results: made,
            selected: 0,
        }

    def on_stop(request: gr.Request):
        ctx.studio.jobs.interrupt(ctx.image_jobs.get(request.session_hash))

    def on_skip():
        ctx.studio.jobs.skip()

    def on_select(lang_value: str, made: list[dict], event: gr.SelectData):
        if not made or event.index is None or event.index >= len(made):
            return gr.skip(), gr.skip(), 0
        chosen = made[event.index]
        return chosen["infotext"], labels_html(lang_value, chosen["labels"]), event.index

    def picked(made: list[dict], index: int) -> dict | None:
        return made[index] if made and index < len(made) else None

    def send_to(target: str):
        @reports_to(send_note)
        def on_send_to(lang_value, made: list[dict], index: int):
            chosen = picked(made, index)
            if chosen is None:
                raise Mistake("img_nothing_selected")
            image = Image.open(chosen["path"])
            outputs = {
                "img2img": [image, gr.skip(), gr.skip()],
                "inpaint": [gr.skip(), image, gr.skip()],
                "edit": [gr.skip(), gr.skip(), image],
            }[target]
            shown = starts_from_image(target)
            return *outputs, gr.Tabs(selected=target), target, gr.Slider(visible=shown), gr.Radio(visible=shown), ""

        return on_send_to

    def reuse(key: str):
        def handler(made: list[dict], index: int, current):
            chosen = picked(made, index)
            return chosen[key] if chosen else current

        return handler

    @reports_to(png_note)
    def on_png(lang_value, path: str | None):
        if not path:
            return "", None, ""
        infotext_value = read_infotext(path)
        if not infotext_value:
            return "", None, note(text(lang_value, "png_none"), "info")
        try:
            fields = with_hires(to_request_fields(parse_infotext(infotext_value)))
        except ValueError as exc:
            raise Mistake("png_unreadable", why=str(exc)) from None
        return infotext_value, fields, ""

    def png_send(target: str):
        @reports_to(png_note)
        def on_png_send(lang_value, fields: dict | None, path: str | None):
            if not fields:
                raise Mistake("png_drop_first")
            image = Image.open(path).convert("RGB") if target == "img2img" and path else gr.skip()
            return (
                gr.Tabs(selected=target),
                target,
                image,
                *tab.fill_form(with_known_model(fields), mode=target),
                "",
            )

        return on_png_send

    def with_known_model(fields: dict) -> dict:
        """Request fields, with the checkpoint kept only when this studio has that model."""
        fields = dict(fields)
        checkpoint = fields.pop("sd_model_checkpoint", None) or fields.pop("model", None)
        if checkpoint:
            # the image may name a model this studio lacks; then the current choice stays
            with contextlib.suppress(StudioError):
                fields["model"] = ctx.studio.models.resolve_checkpoint(str(checkpoint)).id
        return fields

    def on_load():
        registry = ctx.studio.registry
        ids = [m.id for m in registry.all() if m.kind == "image"]
        try:
            default = registry.default_image_model
        except StudioError:
            default = None  # no image model installed yet: the service says so on Generate
        return gr.Dropdown(choices=ids, value=default), prompt_tools.style_choices(ctx)

    outputs = [progress, preview, gallery, infotext, labels_box, results, selected]
    form_inputs = [form[name] for name in FORM_FIELDS]
    # show_progress hidden: the tab draws its own bar, with steps, ETA and a preview. Ctrl+Enter
    # in the tab clicks Generate (the page script), as in A1111.
    generate.click(
        on_generate,
        [lang, mode, init_image, mask_editor, edit_image, *form_inputs],
        outputs,
        concurrency_limit=None,
        show_progress="hidden",
    )
    interrupt.click(on_stop, None, None, queue=False)
    skip.click(on_skip, None, None, queue=False)
    for mode_tab, mode_id in [
        (tabs["mode_txt2img"], "txt2img"),
        (tabs["mode_img2img"], "img2img"),
        (tabs["mode_inpaint"], "inpaint"),
        (tabs["mode_edit"], "edit"),
        (tabs["mode_pnginfo"], "txt2img"),
    ]:
        mode_tab.select(
            lambda m=mode_id: (m, gr.Slider(visible=starts_from_image(m)), gr.Radio(visible=starts_from_image(m))),
            None,
            [mode, form["denoising_strength"], form["resize_mode"]],
            queue=False,
        )
    for name in ("width", "height"):
        snaps_to_multiple(form[name], ImageRequest, name)
    gallery.select(on_select, [lang, results], [infotext, labels_box, selected])
    targets = [
        init_image,
        mask_editor,
        edit_image,
        mode_tabs,
        mode,
        form["denoising_strength"],
        form["resize_mode"],
        send_note,
    ]
    to_img2img.click(send_to("img2img"), [lang, results, selected], targets)
    to_inpaint.click(send_to("inpaint"), [lang, results, selected], targets)
    to_edit.click(send_to("edit"), [lang, results, selected], targets)
    random_seed.click(lambda: -1, None, form["seed"], queue=False)
    random_subseed.click(lambda: -1, None, form["subseed"], queue=False)
    reuse_seed.click(reuse("seed"), [results, selected, form["seed"]], form["seed"], queue=False)
    reuse_subseed.click(reuse("subseed"), [results, selected, form["subseed"]], form["subseed"], queue=False)
    png.change(on_png, [lang, png], [png_text, png_fields, png_note])
    png_targets = [mode_tabs, mode, init_image, *tab.form_outputs, png_note]
    png_to_txt2img.click(png_send("txt2img"), [lang, png_fields, png], png_targets)
    png_to_img2img.click(png_send("img2img"), [lang, png_fields, png], png_targets)

    prompt_tools.wire(ctx, tools, lang, form)
    tab.on_load, tab.load_outputs = on_load, [form["model"], tools.styles]
    tab.with_known_model = with_known_model
    return tab
