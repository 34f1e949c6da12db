"""AUTOMATIC1111-compatible generation parameters ("infotext") and where images keep them.

The layout is the one A1111 writes (modules/processing.py ``create_infotext``) and reads
(modules/infotext_utils.py ``parse_generation_parameters``), so images made here paste into A1111,
Civitai and other readers, and A1111 images paste here::

    a cat, best quality
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 512x512

PNG keeps it in the ``parameters`` text chunk; JPEG and WebP in EXIF UserComment (0x9286),
``b"UNICODE\\0"`` + UTF-16 big-endian, as piexif's ``UserComment.dump(..., encoding="unicode")`` does.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from PIL import Image, PngImagePlugin

from .resize import RESIZE_MODES

__all__ = [
    "InfotextParams",
    "add_templates",
    "exif_save_args",
    "format_infotext",
    "params_from_request",
    "parse_infotext",
    "read_infotext",
    "save_image",
    "to_request_fields",
    "write_png",
]

PathOrFile = str | os.PathLike[str] | IO[bytes]

# A1111's own pattern for one "key: value" pair; a quoted value is a JSON string.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY_RE = re.compile(r"\w[\w \-/]+")
_SIZE_RE = re.compile(r"(\d+)x(\d+)")  # used with fullmatch: A1111's "^...$" also splits "8x8" + newline
_NEGATIVE_PREFIX = "Negative prompt:"
# The sd-dynamic-prompts extension's lines after the parameter line (its pnginfo_saver).
_TEMPLATE_PREFIX = "Template: "
_NEGATIVE_TEMPLATE_PREFIX = "Negative Template: "
_PNG_KEY = "parameters"
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"
_ASCII_PREFIX = b"ASCII\x00\x00\x00"
_JIS_PREFIX = b"JIS\x00\x00\x00\x00\x00"
_JPEG_MAX_SEGMENT = 65533  # bytes one APP1 marker can carry

# infotext key -> (A1111 API request field, type). "-1"/"-2" keys are the halves of a "WxH" value.
_REQUEST_FIELDS: tuple[tuple[str, str, type], ...] = (
    ("Steps", "steps", int),
    ("Sampler", "sampler_name", str),
    ("Schedule type", "scheduler", str),
    ("CFG scale", "cfg_scale", float),
    ("Image CFG scale", "image_cfg_scale", float),
    ("Seed", "seed", int),
    ("Size-1", "width", int),
    ("Size-2", "height", int),
    ("Model hash", "sd_model_hash", str),
    ("Variation seed", "subseed", int),
    ("Variation seed strength", "subseed_strength", float),
    ("Seed resize from-1", "seed_resize_from_w", int),
    ("Seed resize from-2", "seed_resize_from_h", int),
    ("Denoising strength", "denoising_strength", float),
    ("Clip skip", "clip_skip", int),
    ("Hires upscale", "hr_scale", float),
    ("Hires resize-1", "hr_resize_x", int),
    ("Hires resize-2", "hr_resize_y", int),
    ("Hires steps", "hr_second_pass_steps", int),
    ("Hires upscaler", "hr_upscaler", str),
    ("Hires sampler", "hr_sampler_name", str),
    ("Hires schedule type", "hr_scheduler", str),
    ("Hires prompt", "hr_prompt", str),
    ("Hires negative prompt", "hr_negative_prompt", str),
    ("Mask blur", "mask_blur", int),
    ("Masked area padding", "inpaint_full_res_padding", int),
    ("Eta", "eta", float),
    ("Eta DDIM", "eta", float),
    ("Token merging ratio", "token_merging_ratio", float),
    ("NGMS", "s_min_uncond", float),
)
# infotext key -> (request field, the values A1111 writes for it, in the field's order)
_LABELLED_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Mask mode": ("inpainting_mask_invert", ("Inpaint masked", "Inpaint not masked")),
    "Masked content": ("inpainting_fill", ("fill", "original", "latent noise", "latent nothing")),
    "Inpaint area": ("inpaint_full_res", ("Whole picture", "Only masked")),
    "Resize mode": ("resize_mode", tuple(RESIZE_MODES.values())),
}


@dataclass
class InfotextParams:
    """A parsed infotext: prompts plus the parameter line as A1111 returns it.

    ``params`` maps each key to its (unquoted) string value in file order. A value of the form
    ``WxH`` is split into ``"<key>-1"`` and ``"<key>-2"`` as A1111 does, so ``Size: 512x768`` becomes
    ``{"Size-1": "512", "Size-2": "768"}``. A1111's paste-time defaults (``Clip skip: 1`` ...) are not
    filled in: a missing key means the image did not say.
    """

    prompt: str
    negative_prompt: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def width(self) -> int | None:
        """Image width from ``Size``, or None when the infotext has no size."""
        value = self.params.get("Size-1")
        return int(value) if value is not None else None

    @property
    def height(self) -> int | None:
        """Image height from ``Size``, or None when the infotext has no size."""
        value = self.params.get("Size-2")
        return int(value) if value is not None else None


def _format_value(value: object) -> str:
    # A1111 prints whatever Python prints, but its UI hands integral floats over as ints
    # ("CFG scale: 7"); matching that keeps our infotexts identical to the UI's.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _quote(text: str) -> str:
    # A1111's quote() JSON-encodes values holding "," ":" or a newline. We also quote the few values
    # its parser would otherwise change: empty, padded with whitespace, or starting with a quote (the
    # parser would unquote it, or run it into the next quoted value). A1111 reads these back right.
    if "," in text or ":" in text or "\n" in text or text != text.strip() or text[:1] in ('"', ""):
        return json.dumps(text, ensure_ascii=False)
    return text


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """Write prompts and parameters in A1111's infotext layout.

    ``params`` is written in the caller's order; None values are dropped; a value equal to its key is
    written as the bare key (A1111 does this for flags). Fewer than 3 parameters make a line that A1111
    (and :func:`parse_infotext`) reads as part of the prompt.
    """
    pairs = []
    for key, value in params.items():
        if value is None:
            continue
        if not _KEY_RE.fullmatch(key):
            raise ValueError(
                f"infotext key {key!r} is not readable back: use 2+ letters, digits, '_', ' ', '-' or '/',"
                " starting with a letter, digit or '_'"
            )
        text = _format_value(value)
        pairs.append(key if text == key else f"{key}: {_quote(text)}")
    negative = f"\n{_NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{', '.join(pairs)}".strip()


def add_templates(infotext: str, template: str | None, negative_template: str | None) -> str:
    """``infotext`` with the dynamic-prompt templates its prompts were drawn from, as the sd-dynamic-prompts
    extension writes them: ``Template: ...`` and ``Negative Template: ...`` lines after the parameter line
    (each only when not empty). :func:`parse_infotext` gives them back as ``params["Template"]`` and
    ``params["Negative Template"]``."""
    if template:
        infotext += f"\n{_TEMPLATE_PREFIX}{template}"
    if negative_template:
        infotext += f"\n{_NEGATIVE_TEMPLATE_PREFIX}{negative_template}"
    return infotext


def _split_templates(lines: list[str]) -> tuple[list[str], dict[str, str]]:
    # The extension's template lines follow the parameter line; a template may hold newlines of its own.
    for k in range(1, len(lines)):
        starts = lines[k].startswith(_TEMPLATE_PREFIX) or lines[k].startswith(_NEGATIVE_TEMPLATE_PREFIX)
        if starts and len(_PARAM_RE.findall(lines[k - 1])) >= 3:
            break
    else:
        return lines, {}
    templates: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[k:]:
        if line.startswith(_NEGATIVE_TEMPLATE_PREFIX) and "Negative Template" not in templates:
            current = templates["Negative Template"] = [line[len(_NEGATIVE_TEMPLATE_PREFIX) :]]
        elif line.startswith(_TEMPLATE_PREFIX) and not templates:
            current = templates["Template"] = [line[len(_TEMPLATE_PREFIX) :]]
        elif current is not None:
            current.append(line)
    return lines[:k], {key: "\n".join(value) for key, value in templates.items()}


def _append_line(text: str, line: str) -> str:
    # A1111 joins with "\n" but never starts with one, so an empty first line vanishes.
    return line if text == "" else f"{text}\n{line}"


def parse_infotext(text: str) -> InfotextParams:
    """Read an infotext the way A1111's ``parse_generation_parameters`` does.

    The last line is the parameter line when it holds at least 3 ``key: value`` pairs; lines before
    the first ``Negative prompt:`` line are the prompt, the rest the negative prompt. Every line is
    stripped of surrounding whitespace, as in A1111. ``Template:`` and ``Negative Template:`` lines after
    the parameter line (the sd-dynamic-prompts extension's) become ``params["Template"]`` and
    ``params["Negative Template"]``, and the prompts stay the ones that ran, as the extension reads them.
    """
    all_lines, templates = _split_templates(text.strip().split("\n"))
    *lines, last_line = all_lines
    if len(_PARAM_RE.findall(last_line)) < 3:
        lines.append(last_line)
        last_line = ""

    prompt = negative = ""
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(_NEGATIVE_PREFIX) :].strip()
        if in_negative:
            negative = _append_line(negative, line)
        else:
            prompt = _append_line(prompt, line)

    params: dict[str, str] = {}
    for key, value in _PARAM_RE.findall(last_line):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            # A1111 keeps a malformed quoted value as written; so do we
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        size = _SIZE_RE.fullmatch(value)
        if size:
            params[f"{key}-1"], params[f"{key}-2"] = size.group(1), size.group(2)
        else:
            params[key] = value
    params.update(templates)
    return InfotextParams(prompt=prompt, negative_prompt=negative, params=params)


def _typed(key: str, raw: str, kind: type) -> object:
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"infotext field {key!r} must be {kind.__name__}, got {raw!r}") from None


def _raw(params: Mapping[str, str], key: str) -> str | None:
    # A text value that happens to look like "12x34" was split by the parser; put it back together.
    if key in params:
        return params[key]
    if f"{key}-1" in params and f"{key}-2" in params:
        return f"{params[key + '-1']}x{params[key + '-2']}"
    return None


def to_request_fields(parsed: InfotextParams) -> dict[str, object]:
    """Map a parsed infotext onto A1111 ``/sdapi/v1/txt2img`` / ``img2img`` request names, typed.

    Gives prompt, negative_prompt, steps, sampler_name, scheduler, cfg_scale, seed, width, height,
    subseed, subseed_strength, denoising_strength, clip_skip, eta (from ``Eta`` or ``Eta DDIM``),
    sd_model_hash and sd_model_checkpoint (the ``Model`` name, else the ``Model hash``; A1111 accepts
    either); the hires-fix fields, with ``enable_hr`` true when A1111 would tick it (a denoising strength
    and a ``Hires upscale``, ``Hires resize`` or ``Hires upscaler``); ``tiling``; and the inpainting
    fields (mask blur, mask mode, masked content, inpaint area and padding) and ``resize_mode``, where
    the infotext has them. Fields the infotext lacks are left out rather than defaulted.
    """
    fields: dict[str, object] = {"prompt": parsed.prompt, "negative_prompt": parsed.negative_prompt}
    for key, name, kind in _REQUEST_FIELDS:
        raw = _raw(parsed.params, key)
        if raw is not None:
            fields[name] = _typed(key, raw, kind)
    hires_keys = ("Hires upscale", "Hires upscaler", "Hires resize-1")
    if "Denoising strength" in parsed.params and any(key in parsed.params for key in hires_keys):
        fields["enable_hr"] = True
    if "Tiling" in parsed.params:
        fields["tiling"] = parsed.params["Tiling"] in ("True", "Tiling")
    if "NGMS all steps" in parsed.params:
        fields["s_min_uncond_all"] = parsed.params["NGMS all steps"] == "True"
    for key, (name, labels) in _LABELLED_FIELDS.items():
        raw = _raw(parsed.params, key)
        if raw is None:
            continue
        if raw not in labels and not raw.isdigit():
            raise ValueError(f"infotext field {key!r} must be one of {', '.join(labels)}, got {raw!r}")
        value = labels.index(raw) if raw in labels else int(raw)
        fields[name] = bool(value) if name == "inpaint_full_res" else value
    checkpoint = _raw(parsed.params, "Model") or parsed.params.get("Model hash")
    if checkpoint is not None:
        fields["sd_model_checkpoint"] = checkpoint
    return fields


def params_from_request(fields: Mapping[str, object]) -> dict[str, object]:
    """Build infotext parameters, in A1111's order, from A1111 request names.

    The inverse of :func:`to_request_fields`; like A1111 it omits ``Clip skip`` at 1 or below and the variation
    seed when ``subseed_strength`` is 0, and eta at its sampler's default; hires keys only with ``enable_hr``
    ("Hires upscale" when both resizes are 0, else "Hires resize"; "Hires steps" when not 0; "Hires sampler",
    "Hires schedule type", "Hires prompt" and "Hires negative prompt" only where they differ from the first
    pass); "Tiling: True" with ``tiling``; "Token merging ratio" above 0; "NGMS" above 0 (and "NGMS all
    steps: True" with ``s_min_uncond_all``); the inpainting keys for the fields given (a field that does not
    apply to the run is passed as None): "Mask blur" above 0, "Mask mode: Inpaint not masked", "Inpaint
    area: Only masked" with "Masked area padding", "Masked content" unless it is "original"; and "Resize
    mode" (a key of the studio's; A1111 writes none) unless it is 0.
    Callers append extras such as ``Version`` after it.
    """

    def size(w: str, h: str) -> str | None:
        return f"{fields[w]}x{fields[h]}" if fields.get(w) and fields.get(h) else None

    def differs(name: str, first: str) -> object:
        value = fields.get(name)
        return value if value not in (None, "") and value != fields.get(first) else None

    varied = bool(fields.get("subseed_strength"))
    hires = bool(fields.get("enable_hr"))
    resized = bool(fields.get("hr_resize_x") or fields.get("hr_resize_y"))
    clip_skip = fields.get("clip_skip")
    blur_x, blur_y = fields.get("mask_blur_x"), fields.get("mask_blur_y")
    mask_blur = fields.get("mask_blur")
    if blur_x is not None or blur_y is not None:  # A1111 writes one blur, and none when they differ
        blur_x, blur_y = (mask_blur if b is None else b for b in (blur_x, blur_y))
        mask_blur = blur_x if blur_x == blur_y else None
    fill, resize_mode = fields.get("inpainting_fill"), fields.get("resize_mode")
    only_masked = bool(fields.get("inpaint_full_res"))
    # A1111 writes eta when it differs from the sampler's default: DDIM's 0 ("Eta DDIM"), the ancestral
    # and SDE samplers' 1 ("Eta"). A sampler without eta has None here (engines/samplers.py check_sampler).
    eta, ddim = fields.get("eta"), fields.get("sampler_name") == "DDIM"
    return {
        "Steps": fields.get("steps"),
        "Sampler": fields.get("sampler_name"),
        "Schedule type": fields.get("scheduler"),
        "CFG scale": fields.get("cfg_scale"),
        "Image CFG scale": fields.get("image_cfg_scale"),
        "Seed": fields.get("seed"),
        "Size": size("width", "height"),
        "Model hash": fields.get("sd_model_hash"),
        "Model": fields.get("sd_model_checkpoint"),
        "Variation seed": fields.get("subseed") if varied else None,
        "Variation seed strength": fields.get("subseed_strength") if varied else None,
        "Seed resize from": size("seed_resize_from_w", "seed_resize_from_h"),
        "Denoising strength": fields.get("denoising_strength"),
        "Clip skip": clip_skip if isinstance(clip_skip, int) and clip_skip > 1 else None,
        "Tiling": "True" if fields.get("tiling") else None,
        "Token merging ratio": fields.get("token_merging_ratio") or None,
        "NGMS": fields.get("s_min_uncond") or None,
        "NGMS all steps": "True" if fields.get("s_min_uncond") and fields.get("s_min_uncond_all") else None,
        "Mask mode": "Inpaint not masked" if fields.get("inpainting_mask_invert") else None,
        "Mask blur": mask_blur if isinstance(mask_blur, int) and mask_blur > 0 else None,
        "Inpaint area": "Only masked" if only_masked else None,
        "Masked area padding": fields.get("inpaint_full_res_padding") if only_masked else None,
        "Masked content": _LABELLED_FIELDS["Masked content"][1][fill] if isinstance(fill, int) and fill != 1 else None,
        "Resize mode": RESIZE_MODES[resize_mode] if isinstance(resize_mode, int) and resize_mode else None,
        "Hires sampler": differs("hr_sampler_name", "sampler_name") if hires else None,
        "Hires prompt": differs("hr_prompt", "prompt") if hires else None,
        "Hires negative prompt": differs("hr_negative_prompt", "negative_prompt") if hires else None,
        "Hires schedule type": differs("hr_scheduler", "scheduler") if hires else None,
        "Hires upscale": fields.get("hr_scale") if hires and not resized else None,
        "Hires resize": f"{fields.get('hr_resize_x') or 0}x{fields.get('hr_resize_y') or 0}"
        if hires and resized
        else None,
        "Hires steps": (fields.get("hr_second_pass_steps") or None) if hires else None,
        "Hires upscaler": fields.get("hr_upscaler") if hires else None,
        "Eta DDIM": eta if ddim and eta else None,
        "Eta": eta if not ddim and eta is not None and eta != 1 else None,
    }


def write_png(
    image: Image.Image,
    path_or_fp: PathOrFile,
    infotext: str,
    extra_text: Mapping[str, str] | None = None,
) -> None:
    """Save ``image`` as PNG with ``infotext`` in the ``parameters`` text chunk.

    Pillow stores Latin-1 text as tEXt and anything else (Chinese prompts) as UTF-8 iTXt; A1111 and
    Pillow read both. ``extra_text`` adds more text chunks (keys must be Latin-1, 1-79 bytes).
    """
    extra = dict(extra_text or {})
    if _PNG_KEY in extra:
        raise ValueError(f"extra_text must not contain {_PNG_KEY!r}; pass the infotext as `infotext`")
    info = PngImagePlugin.PngInfo()
    info.add_text(_PNG_KEY, infotext)
    for key, value in extra.items():
        info.add_text(key, value)
    image.save(path_or_fp, format="PNG", pnginfo=info)


def _exif_with_comment(infotext: str) -> bytes:
    # Built by hand because Pillow's Exif writer types a bytes UserComment as BYTE, which piexif (and
    # so A1111) returns as a tuple of ints and cannot decode; the standard type is UNDEFINED (7).
    # Same structure piexif.dump makes: big-endian TIFF header, IFD0 holding only the pointer to the
    # Exif IFD, the Exif IFD holding only UserComment, then the comment bytes.
    comment = _UNICODE_PREFIX + infotext.encode("utf-16-be")
    exif_ifd_offset = 8 + 2 + 12 + 4
    comment_offset = exif_ifd_offset + 2 + 12 + 4
    tiff = (
        struct.pack(">2sHI", b"MM", 42, 8)
        + struct.pack(">HHHIII", 1, _EXIF_IFD, 4, 1, exif_ifd_offset, 0)  # LONG pointer, no next IFD
        + struct.pack(">HHHIII", 1, _USER_COMMENT, 7, len(comment), comment_offset, 0)  # UNDEFINED
        + comment
    )
    return b"Exif\x00\x00" + tiff


def save_image(image: Image.Image, path: str | os.PathLike[str], infotext: str | None, *, quality: int = 90) -> None:
    """Save ``image`` at ``path`` with ``infotext`` where A1111 keeps it, by suffix.

    ``.png``: the ``parameters`` text chunk. ``.jpg``/``.jpeg``/``.webp``: EXIF UserComment; modes
    these formats cannot hold (RGBA for JPEG, palette images) are converted first. ``None`` saves
    without metadata. ``quality`` applies to JPEG and WebP.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        if infotext is None:
            image.save(path, format="PNG")
        else:
            write_png(image, path, infotext)
        return
    if suffix in (".jpg", ".jpeg"):
        image_format = "JPEG"
    elif suffix == ".webp":
        image_format = "WEBP"
    else:
        raise ValueError(f"unsupported image suffix {suffix!r} in {os.fspath(path)!r}; use .png, .jpg, .jpeg or .webp")
    image, options = exif_save_args(image, image_format, infotext, quality=quality)
    image.save(path, format=image_format, **options)


def exif_save_args(
    image: Image.Image, image_format: str, infotext: str | None, *, quality: int = 90
) -> tuple[Image.Image, dict[str, object]]:
    """What :func:`save_image` passes to Pillow for ``"JPEG"`` or ``"WEBP"``: the image in a mode the
    format can hold (RGBA for JPEG and palette images are converted) and the save options, with
    ``infotext`` as EXIF UserComment when not None. ValueError when it is too long for one JPEG segment."""
    allowed_modes = ("RGB", "L") if image_format == "JPEG" else ("RGB", "RGBA")
    if image.mode not in allowed_modes:
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha and "RGBA" in allowed_modes else "RGB")
    options: dict[str, object] = {"quality": quality}
    if infotext is not None:
        exif = _exif_with_comment(infotext)
        if image_format == "JPEG" and len(exif) > _JPEG_MAX_SEGMENT:
            raise ValueError(
                f"infotext is too long for JPEG EXIF ({len(exif)} bytes, at most {_JPEG_MAX_SEGMENT});"
                " save as .png or .webp instead"
            )
        options["exif"] = exif
    return image, options


def _decode_user_comment(data: bytes | str, endian: str | None) -> str:
    if isinstance(data, str):
        return data
    prefix, body = data[:8], data[8:]
    if prefix == _UNICODE_PREFIX:
        # The EXIF standard ties UTF-16 byte order to the EXIF block's; A1111's is always big-endian.
        text = body.decode("utf-16-le" if endian == "<" else "utf-16-be", errors="replace")
    elif prefix == _ASCII_PREFIX:
        text = body.decode("utf-8", errors="replace")  # many writers put UTF-8 under "ASCII"
    elif prefix == _JIS_PREFIX:
        text = body.decode("shift_jis", errors="replace")
    elif prefix == b"\x00" * 8:
        text = body.decode("utf-8", errors="ignore")
    else:
        text = data.decode("utf-8", errors="ignore")  # no prefix at all: A1111 reads raw UTF-8 too
    return text.rstrip("\x00")


def _infotext_from_image(image: Image.Image) -> str | None:
    # PNG text chunks may follow the pixel data; `.text` reads to the end of the file for them.
    text_chunks = getattr(image, "text", None) or image.info
    infotext = text_chunks.get(_PNG_KEY)
    exif_data = image.info.get("exif")
    if exif_data:
        exif = Image.Exif()
        exif.load(exif_data)
        comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
        if comment:
            decoded = _decode_user_comment(comment, exif.endian)
            # As in A1111, a non-empty EXIF comment wins over a PNG text chunk.
            if decoded:
                infotext = decoded
    return str(infotext) if infotext is not None else None


def read_infotext(source: PathOrFile | Image.Image) -> str | None:
    """Return the A1111 infotext stored in an image, or None when it has none.

    ``source`` is a path, a binary file object or an open PIL image. Reads the PNG ``parameters``
    text chunk (tEXt, zTXt or iTXt) and EXIF UserComment (JPEG, WebP, PNG eXIf).
    """
    if isinstance(source, Image.Image):
        return _infotext_from_image(source)
    with Image.open(source) as image:
        return _infotext_from_image(image)
