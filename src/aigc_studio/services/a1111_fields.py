"""AUTOMATIC1111 1.10's txt2img and img2img request fields and its options, as data: what the studio does
with each one.

Every field of A1111's API request (``modules/api/models.py``: the ``StableDiffusionProcessing*``
dataclasses of ``modules/processing.py`` plus the API's own fields) is in ``TXT2IMG`` or ``IMG2IMG`` with
one policy:

- ``Honoured(field)``: becomes ``ImageRequest.field``; ``a1111_default`` is what A1111's API uses when a
  client leaves the field out, where that differs from the studio's own default.
- ``Neutral(...)``: A1111 has it, the studio cannot do it; accepted only at the values that change
  nothing (A1111's default and its "off" values), refused with a 422 naming it otherwise.
- ``Accepted(why)``: any value, because it changes no image here (A1111 ignores it too in that case).
- ``Handled(what)``: read by the A1111 service itself (input images, saving, options, infotext).

A field in neither table is not A1111's, and is refused. Options (``/sdapi/v1/options`` and a request's
``override_settings``) are classed the same way in ``OPTIONS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DYNAMIC_PROMPTS_ARGS",
    "DYNAMIC_PROMPTS_SCRIPT",
    "IMG2IMG",
    "INFOTEXT_OPTIONS",
    "OPTIONS",
    "TIMESTEP_SAMPLERS",
    "TXT2IMG",
    "Accepted",
    "Handled",
    "Honoured",
    "Neutral",
    "Option",
    "dynamic_prompts_arg_problem",
]


@dataclass(frozen=True)
class Honoured:
    """Honoured as ``ImageRequest.<field>``."""

    field: str
    kind: Any
    a1111_default: object = None  # A1111's API default where it differs from the studio's
    same: tuple = ()  # values that mean "unset" in A1111 ("Use same sampler")

    def describe(self) -> str:
        left_out = "" if self.a1111_default is None else f" (left out: {json.dumps(self.a1111_default)}, as in A1111)"
        return f"Honoured as the studio's {self.field}{left_out}."


@dataclass(frozen=True)
class Neutral:
    """Accepted only where it changes nothing; ``why`` says what the studio lacks."""

    kind: Any
    allowed: tuple  # the values accepted (None always is: a client that sends null means "default")
    why: str
    test: Callable[[Any], bool] | None = None  # instead of ``allowed``, for ranges
    shown: str = ""  # how ``allowed`` reads in a message, where the values alone would not say it
    schema: dict | None = None  # with ``test``: the JSON Schema keywords that say the same

    def accepts(self, value: object) -> bool:
        if value is None:
            return True
        if self.test is not None:
            return self.test(value)
        # The request model has already parsed each value to its type, so plain equality is exact here.
        return value in self.allowed

    def allowed_text(self) -> str:
        return self.shown or " or ".join(json.dumps(a) for a in self.allowed)

    def describe(self) -> str:
        return f"Accepted only as {self.allowed_text()}: {self.why}."


@dataclass(frozen=True)
class Accepted:
    """Any value: it changes no image here."""

    kind: Any
    why: str

    def describe(self) -> str:
        return f"Accepted at any value: {self.why}."


@dataclass(frozen=True)
class Handled:
    """Read by the A1111 service itself."""

    kind: Any
    what: str

    def describe(self) -> str:
        return self.what


def _not_positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value <= 0


# Samplers A1111 runs as "timestep" samplers: their eta option is eta_ddim, every other sampler's eta_ancestral.
TIMESTEP_SAMPLERS = ("DDIM", "PLMS", "UniPC")

_NO_SCRIPTS = "the studio has no scripts or extensions"

COMMON: dict[str, Honoured | Neutral | Accepted | Handled] = {
    "prompt": Honoured("prompt", str),
    "negative_prompt": Honoured("negative_prompt", str),
    "styles": Handled(
        list[str],
        "Saved prompt styles (GET /sdapi/v1/prompt-styles; AIGC_HOME/styles.csv) applied in order to the prompt and "
        "negative prompt as A1111 applies them ({prompt} in a style takes the prompt, else the style is appended "
        "after ', '); infotext and info record the prompts that ran. An unknown name is a 422 naming it.",
    ),
    "seed": Honoured("seed", int),
    "subseed": Honoured("subseed", int),
    "subseed_strength": Honoured("subseed_strength", float),
    "seed_resize_from_h": Neutral(
        int,
        (),
        "the studio cannot resize the seed's noise",
        test=_not_positive,
        shown="0 or -1 (off)",
        schema={"maximum": 0},
    ),
    "seed_resize_from_w": Neutral(
        int,
        (),
        "the studio cannot resize the seed's noise",
        test=_not_positive,
        shown="0 or -1 (off)",
        schema={"maximum": 0},
    ),
    "sampler_name": Honoured("sampler_name", str),
    "sampler_index": Handled(
        str, 'Honoured as sampler_name when sampler_name is not given (A1111\'s default: "Euler").'
    ),
    "scheduler": Honoured("scheduler", str),
    "batch_size": Honoured("batch_size", int),
    "n_iter": Honoured("n_iter", int),
    "steps": Honoured("steps", int, a1111_default=50),
    "cfg_scale": Honoured("cfg_scale", float),
    "width": Honoured("width", int),
    "height": Honoured("height", int),
    "restore_faces": Neutral(bool, (False,), "the studio has no face restoration model"),
    "tiling": Honoured("tiling", bool),
    "do_not_save_samples": Handled(
        bool, "true: no file and no gallery record; the images still come back. False (default): kept."
    ),
    "do_not_save_grid": Accepted(bool, "the studio never makes grids"),
    "eta": Honoured("eta", float),
    "denoising_strength": Honoured("denoising_strength", float),
    "s_min_uncond": Honoured("s_min_uncond", float),
    "s_churn": Neutral(float, (0, 0.0), "the studio's samplers add no sigma churn"),
    "s_tmax": Accepted(float, "A1111 uses it only with s_churn above 0, which the studio refuses"),
    "s_tmin": Accepted(float, "A1111 uses it only with s_churn above 0, which the studio refuses"),
    "s_noise": Accepted(float, "A1111 uses it only with s_churn above 0, which the studio refuses"),
    "override_settings": Handled(
        dict[str, Any],
        "A1111 options for this request only: sd_model_checkpoint, CLIP_stop_at_last_layers, token_merging_ratio, "
        "tiling, eta_ancestral, eta_ddim, s_min_uncond and s_min_uncond_all are honoured; options that change no "
        "image are accepted; any other is accepted only at its default (see GET /sdapi/v1/options).",
    ),
    "override_settings_restore_afterwards": Handled(
        bool,
        "false: sd_model_checkpoint, CLIP_stop_at_last_layers and token_merging_ratio in override_settings stay set"
        " afterwards.",
    ),
    "refiner_checkpoint": Neutral(str, ("", "None", "none"), "the studio has no refiner pass"),
    "refiner_switch_at": Accepted(float, "A1111 uses it only with refiner_checkpoint, which the studio refuses"),
    "disable_extra_networks": Accepted(
        bool, "the studio has no extra networks (LoRA, hypernetworks) to turn on or off"
    ),
    "firstpass_image": Neutral(str, ("",), "the studio's hires fix starts from its own first pass"),
    "comments": Accepted(dict[str, Any], "A1111 itself discards a request's comments"),
    "script_name": Neutral(str, ("",), _NO_SCRIPTS),
    "script_args": Accepted(list, "A1111 passes them only to script_name's script, which the studio refuses"),
    "send_images": Handled(bool, "false: the answer carries no images (they are still kept, see do_not_save_samples)."),
    "save_images": Handled(
        bool,
        "Accepted at any value. A1111 saves API images only when it is true; the studio keeps every image "
        "(file and gallery record) unless do_not_save_samples is true.",
    ),
    "alwayson_scripts": Handled(
        dict[str, Any],
        'Only "Dynamic Prompts" (the sd-dynamic-prompts extension\'s name, any case, a version such as " v2.17.1" '
        "after it), with the extension's script args: [enabled (default true), combinatorial (default false), "
        "combinatorial batches 1, magic prompt false, feeling lucky false, attention grabber false, min attention, "
        "max attention, magic prompt length, magic temperature, fixed seed false, unlink seed false, "
        "disable negative prompt, Jinja2 false, no image generation false, max generations 0, magic model, "
        "blocklist]: enabled draws {a|b} choices and __wildcards__ (AIGC_HOME/wildcards) per image, random "
        "from the seed or every combination, and the infotext gets Template: and Negative Template: lines. "
        "Without it braces are literal, as in A1111. Another script, or an arg the studio cannot honour at the "
        "value sent, is a 422 naming it.",
    ),
    "force_task_id": Accepted(str, "the studio's job ids are its own"),
    "infotext": Handled(
        str, "A1111 infotext: its parameters apply to the fields this request does not set (the model stays)."
    ),
}

# The sd-dynamic-prompts extension as an A1111 "alwayson" script: its name (a version may follow) and its
# script args in its order, each with the JSON Schema of the values the studio accepts and the extension's
# default. The first two are honoured; the others only where they change nothing here.
DYNAMIC_PROMPTS_SCRIPT = "dynamic prompts"
DYNAMIC_PROMPTS_ARGS: tuple[tuple[str, dict[str, Any], object], ...] = (
    ("enabled", {"type": "boolean"}, True),
    ("combinatorial generation", {"type": "boolean"}, False),
    ("combinatorial batches", {"enum": [1]}, 1),
    ("magic prompt", {"enum": [False]}, False),
    ("I'm feeling lucky", {"enum": [False]}, False),
    ("attention grabber", {"enum": [False]}, False),
    ("minimum attention", {"type": "number"}, 1.1),
    ("maximum attention", {"type": "number"}, 1.5),
    ("max magic prompt length", {"type": "number"}, 100),
    ("magic prompt creativity", {"type": "number"}, 0.7),
    ("fixed seed", {"enum": [False]}, False),
    ("unlink seed from prompt", {"enum": [False]}, False),
    ("don't apply to negative prompts", {"type": "boolean"}, True),
    ("Jinja2 templates", {"enum": [False]}, False),
    ("don't generate images", {"enum": [False]}, False),
    ("max generations", {"enum": [0]}, 0),
    ("magic prompt model", {"type": ["string", "null"]}, None),
    ("magic prompt blocklist regex", {"type": ["string", "null"]}, None),
)


def dynamic_prompts_arg_problem(index: int, value: object) -> str | None:
    """Why the extension's script arg ``index`` cannot be ``value`` here, or None when it can."""
    name, schema, _ = DYNAMIC_PROMPTS_ARGS[index]
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds is not None:
        ok = any(
            (kind == "boolean" and isinstance(value, bool))
            or (kind == "number" and isinstance(value, int | float) and not isinstance(value, bool))
            or (kind == "string" and isinstance(value, str))
            or (kind == "null" and value is None)
            for kind in kinds
        )
        return None if ok else f"must be {' or '.join(kinds)}, got {json.dumps(value)}"
    allowed = schema["enum"][0]
    same = value is allowed if isinstance(allowed, bool) else (value == allowed and not isinstance(value, bool))
    if same:
        return None
    return f"the studio does not do {name!r}; accepted only as {json.dumps(allowed)}, got {json.dumps(value)}"


TXT2IMG = {
    **COMMON,
    "enable_hr": Honoured("enable_hr", bool),
    "firstphase_width": Neutral(
        int, (0,), "A1111's old hires fix sizes; give width/height and hr_scale or hr_resize_x/y instead"
    ),
    "firstphase_height": Neutral(
        int, (0,), "A1111's old hires fix sizes; give width/height and hr_scale or hr_resize_x/y instead"
    ),
    "hr_scale": Honoured("hr_scale", float),
    "hr_upscaler": Honoured("hr_upscaler", str),
    "hr_second_pass_steps": Honoured("hr_second_pass_steps", int),
    "hr_resize_x": Honoured("hr_resize_x", int),
    "hr_resize_y": Honoured("hr_resize_y", int),
    "hr_checkpoint_name": Neutral(
        str, ("", "Use same checkpoint"), "the studio's hires fix runs its second pass with the same model"
    ),
    "hr_sampler_name": Honoured("hr_sampler_name", str, same=("Use same sampler",)),
    "hr_scheduler": Honoured("hr_scheduler", str, same=("Use same scheduler",)),
    "hr_prompt": Honoured("hr_prompt", str),
    "hr_negative_prompt": Honoured("hr_negative_prompt", str),
}

IMG2IMG = {
    **COMMON,
    "init_images": Handled(list[str], "The input image, base64 (A1111 takes the first; so does the studio)."),
    "resize_mode": Honoured("resize_mode", int),
    "image_cfg_scale": Honoured("image_cfg_scale", float),
    "mask": Handled(str, "Inpainting mask, base64: white is repainted."),
    "mask_blur_x": Handled(
        int, "Honoured as the mask's horizontal blur, unless mask_blur is given (it sets both, as in A1111)."
    ),
    "mask_blur_y": Handled(
        int, "Honoured as the mask's vertical blur, unless mask_blur is given (it sets both, as in A1111)."
    ),
    "mask_blur": Honoured("mask_blur", int),
    "mask_round": Neutral(bool, (True,), "the studio always rounds the latent mask, as A1111 does by default"),
    "inpainting_fill": Honoured("inpainting_fill", int, a1111_default=0),
    "inpaint_full_res": Honoured("inpaint_full_res", bool, a1111_default=True),
    "inpaint_full_res_padding": Honoured("inpaint_full_res_padding", int, a1111_default=0),
    "inpainting_mask_invert": Honoured("inpainting_mask_invert", int),
    "initial_noise_multiplier": Neutral(float, (1, 1.0), "the studio does not scale img2img's initial noise"),
    "latent_mask": Neutral(str, ("",), "the studio has no separate latent mask"),
    "include_init_images": Handled(bool, "true: the answer's parameters echo init_images and mask."),
}


# ---------------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class Option:
    """An A1111 option. ``kind``: "honoured" (the studio acts on it), "field" (a request field, per
    request), "inert" (changes no image: stored and reported), "fixed" (the studio reports its own value
    and ignores another), "neutral" (changes an image: only ``default`` is accepted)."""

    default: object
    kind: str
    why: str = ""
    field: str | None = None  # for "field": the ImageRequest field it sets when the request does not
    also: tuple = ()  # for "neutral": other values that change nothing here either

    def is_default(self, value: object) -> bool:
        """Whether ``value`` changes nothing: the default (the same type, so that 1 is not True) or ``also``."""
        if isinstance(self.default, bool) or isinstance(value, bool):
            return value is self.default
        return value == self.default or value in self.also

    def neutral_text(self) -> str:
        return " or ".join(json.dumps(v) for v in (self.default, *self.also))


def _inert(**defaults: object) -> dict[str, Option]:
    return {key: Option(value, "inert") for key, value in defaults.items()}


def _neutral(why: str, **defaults: object) -> dict[str, Option]:
    return {key: Option(value, "neutral", why) for key, value in defaults.items()}


# A1111's options (modules/shared_options.py) that the studio knows. Unknown keys are ignored by
# POST /options, as A1111 ignores them, and refused in override_settings, where they could change an image.
OPTIONS: dict[str, Option] = {
    "sd_model_checkpoint": Option(None, "honoured", "the default image model (studio.models.set_default)"),
    "CLIP_stop_at_last_layers": Option(1, "honoured", "the studio's clip_skip setting"),
    "token_merging_ratio": Option(0.0, "honoured", "the studio's token_merging_ratio setting"),
    "sd_checkpoint_hash": Option("", "fixed", "the hash of the default image model"),
    "tiling": Option(False, "field", field="tiling"),
    "eta_ancestral": Option(1.0, "field", field="eta"),
    "eta_ddim": Option(0.0, "field", field="eta"),
    **{
        key: Option(value, "fixed", "the studio writes every image as a PNG with its infotext under AIGC_HOME")
        for key, value in {
            "samples_save": True,
            "samples_format": "png",
            "grid_save": False,
            "enable_pnginfo": True,
            "save_txt": False,
            "outdir_samples": "",
            "outdir_txt2img_samples": "",
            "outdir_img2img_samples": "",
        }.items()
    },
    **_inert(
        samples_filename_pattern="",
        save_images_add_number=True,
        grid_format="png",
        grid_extended_filename=False,
        grid_only_if_multiple=True,
        grid_prevent_empty_spots=False,
        grid_zip_filename_pattern="",
        n_rows=-1,
        font="",
        grid_text_active_color="#000000",
        grid_text_inactive_color="#999999",
        grid_background_color="#ffffff",
        save_images_before_face_restoration=False,
        save_images_before_highres_fix=False,
        save_images_before_color_correction=False,
        save_mask=False,
        save_mask_composite=False,
        jpeg_quality=80,
        webp_lossless=False,
        export_for_4chan=True,
        img_downscale_threshold=4.0,
        target_side_length=4000,
        img_max_size_mp=200,
        use_original_name_batch=True,
        use_upscaler_name_as_suffix=False,
        save_selected_only=True,
        save_init_img=False,
        temp_dir="",
        clean_temp_dir_at_start=False,
        save_incomplete_images=False,
        outdir_extras_samples="outputs/extras-images",
        outdir_grids="",
        outdir_txt2img_grids="outputs/txt2img-grids",
        outdir_img2img_grids="outputs/img2img-grids",
        outdir_save="log/images",
        outdir_init_images="outputs/init-images",
        save_to_dirs=True,
        grid_save_to_dirs=True,
        use_save_to_dirs_for_ui=False,
        directories_filename_pattern="[date]",
        directories_max_prompt_words=8,
        ESRGAN_tile=192,
        ESRGAN_tile_overlap=8,
        face_restoration_model="CodeFormer",
        code_former_weight=0.5,
        face_restoration_unload=False,
        auto_launch_browser="Local",
        show_warnings=False,
        show_gradio_deprecation_warnings=True,
        memmon_poll_rate=8,
        samples_log_stdout=False,
        multiple_tqdm=True,
        print_hypernet_extra=False,
        list_hidden_files=True,
        disable_mmap_load_safetensors=False,
        hide_ldm_prints=True,
        sd_checkpoints_limit=1,
        sd_checkpoints_keep_in_cpu=True,
        sd_checkpoint_cache=0,
        sd_vae_checkpoint_cache=0,
        sd_vae_overrides_per_model_preferences=True,
        auto_vae_precision=True,
        persistent_cond_cache=True,
        batch_cond_uncond=True,
        unload_models_when_training=False,
        pin_memory=False,
        save_optimizer_state=False,
        save_training_settings_to_txt=True,
        interrogate_keep_models_in_memory=False,
        interrogate_return_ranks=False,
        interrogate_clip_num_beams=1,
        interrogate_clip_min_length=24,
        interrogate_clip_max_length=48,
        interrogate_clip_dict_limit=1500,
        interrogate_deepbooru_score_threshold=0.5,
        deepbooru_sort_alpha=True,
        deepbooru_use_spaces=True,
        deepbooru_escape=True,
        deepbooru_filter_tags="",
        extra_networks_show_hidden_directories=True,
        extra_networks_default_multiplier=1.0,
        extra_networks_card_width=0,
        extra_networks_card_height=0,
        extra_networks_card_text_scale=1.0,
        extra_networks_card_show_desc=True,
        extra_networks_add_text_separator=" ",
        textual_inversion_print_at_load=False,
        textual_inversion_add_hashes_to_infotext=True,
        localization="None",
        gradio_theme="Default",
        return_grid=True,
        do_not_show_images=False,
        send_seed=True,
        send_size=True,
        js_modal_lightbox=True,
        js_modal_lightbox_initially_zoomed=True,
        show_progress_in_title=True,
        samplers_in_dropdown=True,
        dimensions_and_batch_together=True,
        quicksettings_list=["sd_model_checkpoint"],
        hidden_tabs=[],
        hires_fix_show_sampler=False,
        hires_fix_show_prompts=False,
        disable_token_counters=False,
        add_model_hash_to_info=True,
        add_model_name_to_info=True,
        add_version_to_infotext=True,
        disable_weights_auto_swap=True,
        infotext_styles="Apply if any",
        show_progressbar=True,
        live_previews_enable=True,
        live_previews_image_format="png",
        show_progress_grid=True,
        show_progress_every_n_steps=10,
        show_progress_type="Approx NN",
        live_preview_content="Prompt",
        live_preview_refresh_period=1000,
        live_preview_fast_interrupt=False,
        hide_samplers=[],
        postprocessing_enable_in_main_ui=[],
        postprocessing_operation_order=[],
        upscaling_max_images_in_cache=5,
        disabled_extensions=[],
        disable_all_extensions="none",
    ),
    **_neutral("the studio has no face restoration model", face_restoration=False),
    **_neutral("the studio cannot shift ancestral noise seeds (ENSD)", eta_noise_seed_delta=0),
    **_neutral("the studio's samplers add no sigma churn", s_churn=0.0),
    **_neutral("A1111 uses it only with s_churn above 0", s_tmin=0.0, s_tmax=0.0, s_noise=1.0),
    "s_min_uncond": Option(0.0, "field", field="s_min_uncond"),
    "s_min_uncond_all": Option(False, "field", field="s_min_uncond_all"),
    # "None": the checkpoint's own; "Automatic": a file named like the checkpoint, else its own (the studio
    # has no such files, so the checkpoint's own).
    "sd_vae": Option("Automatic", "neutral", "the studio uses the checkpoint's own VAE", also=("None",)),
    "sd_unet": Option("Automatic", "neutral", "the studio uses the checkpoint's own UNet", also=("None",)),
    **_neutral("the studio has no hypernetworks", sd_hypernetwork="None"),
    **_neutral(
        "the studio merges tokens at token_merging_ratio in every pass (img2img and hires fix too)",
        token_merging_ratio_img2img=0.0,
        token_merging_ratio_hr=0.0,
    ),
    **_neutral("the studio does not scale img2img's initial noise", initial_noise_multiplier=1.0),
    **_neutral("the studio adds no extra img2img noise", img2img_extra_noise=0.0),
    **_neutral("the studio always uses the full inpainting conditioning mask", inpainting_mask_weight=1.0),
    **_neutral("the studio does not correct img2img colours", img2img_color_correction=False),
    **_neutral("the studio runs img2img's steps as A1111 does by default", img2img_fix_steps=False),
    **_neutral("the studio does not pad the prompt and negative prompt", pad_cond_uncond=False),
    **_neutral("the studio keeps every sigma of the schedule", always_discard_next_to_last_sigma=False),
    **_neutral("the studio's weighting is A1111's default emphasis", enable_emphasis=True, emphasis="Original"),
    **_neutral("the studio uses the schedule's own sigma range", use_old_karras_scheduler_sigmas=False),
    **_neutral("the studio has no zero-terminal-SNR schedule", sd_noise_schedule="Default"),
    **_neutral("the studio does not quantize k-diffusion sigmas", enable_quantization=False),
    **_neutral("the studio's hires fix is A1111's current one", use_old_hires_fix_width_height=False),
    **_neutral("the studio's SDXL conditioning does not crop", sdxl_crop_top=0, sdxl_crop_left=0),
    **_neutral("the studio's schedule types are chosen per request", k_sched_type="Automatic"),
    **_neutral("A1111 uses them only with a schedule chosen by k_sched_type", sigma_min=0.0, sigma_max=0.0, rho=0.0),
}

# Infotext labels A1111 maps onto options (their OptionInfo ``infotext``): pasted infotext sets them.
INFOTEXT_OPTIONS = {
    "Clip skip": "CLIP_stop_at_last_layers",
    "Tiling": "tiling",
    "Eta": "eta_ancestral",
    "Eta DDIM": "eta_ddim",
    "ENSD": "eta_noise_seed_delta",
    "Face restoration": "face_restoration",
    "Sigma churn": "s_churn",
    "Sigma tmin": "s_tmin",
    "Sigma tmax": "s_tmax",
    "Sigma noise": "s_noise",
    "NGMS": "s_min_uncond",
    "NGMS all steps": "s_min_uncond_all",
    "VAE": "sd_vae",
    "Token merging ratio": "token_merging_ratio",
    "Token merging ratio hr": "token_merging_ratio_hr",
    "Noise multiplier": "initial_noise_multiplier",
    "Extra noise": "img2img_extra_noise",
    "Conditional mask weight": "inpainting_mask_weight",
    "Pad conds": "pad_cond_uncond",
    "Discard penultimate sigma": "always_discard_next_to_last_sigma",
    "Emphasis": "emphasis",
    "Noise Schedule": "sd_noise_schedule",
}
