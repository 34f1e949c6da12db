"""The visible (explicit) label on images: "AI生成" or "AI-generated" in a corner.

GB 45438-2025 asks for a mark whose text height is at least 5% of the picture's shorter side. The
height is measured on the rendered pixels, not taken from the font size: the font is sized so that
the capital letters "AI", which both labels start with and which are the shortest full-height
glyphs in either of them, are at least that tall. Where that would be hard to read (small pictures)
the text is made taller, up to what fits inside the picture.

The mark is white text with a thin dark outline on a dark translucent plate, so it reads on light
and dark pictures alike; the whole mark is blended at the opacity asked for. Only the pixels inside
the returned box change.

Chinese needs a CJK font. The lookup asks fontconfig for one that covers Chinese, then tries the
usual install paths (WenQuanYi, Noto CJK, Droid Sans Fallback), and keeps a font only if it really
draws the label's glyphs. Without one the mark says "AI-generated" in a Latin font (DejaVu Sans
Bold, else Pillow's built-in scalable font) and :class:`VisibleMark` says so: never boxes of tofu.
"""

from __future__ import annotations

import functools
import io
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

IMAGE_LABEL = {"zh": "AI生成", "en": "AI-generated"}
POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left")

# What ``VisibleMark.font`` says when Pillow's own font was used.
BUILTIN_FONT = "Pillow built-in"

# The GB 45438-2025 minimum, and a floor under it below which text is hard to read at all.
MIN_HEIGHT_RATIO = 0.05
LEGIBLE_CAP_HEIGHT = 9

# The plate: black at this alpha (before opacity) under white text with a black outline.
PLATE_ALPHA = 150

_CJK_FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
_LATIN_FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)


@dataclass(frozen=True)
class VisibleMark:
    """What :func:`mark_image` drew, and where."""

    text: str  # the label drawn (may be English where Chinese was asked for and no CJK font exists)
    language: str  # "zh" or "en": the language of ``text``
    position: str  # the corner
    box: tuple[int, int, int, int]  # (left, top, right, bottom) of the changed pixels, right/bottom exclusive
    text_height: int  # height in pixels of the capitals "AI" as rendered (the 5% rule is met by it)
    font: str  # the font file used, or BUILTIN_FONT
    opacity: int  # percent

    def to_dict(self) -> dict:
        """The mark as JSON-ready values, for the item's record."""
        return {
            "text": self.text,
            "language": self.language,
            "position": self.position,
            "box": list(self.box),
            "text_height": self.text_height,
            "font": self.font,
            "opacity": self.opacity,
        }


def mark_image(
    image: Image.Image, *, language: str = "zh", position: str = "bottom-right", opacity: int = 80
) -> tuple[Image.Image, VisibleMark]:
    """Draw the visible AI label in a corner of a copy of ``image``.

    The result has the same size; RGB, RGBA and L images keep their mode, others come back as RGB
    (RGBA if they carry transparency). Raises ValueError for a language, position or opacity that
    is not allowed, or a picture too small to hold a mark whose text is 5% of its shorter side.
    """
    if language not in IMAGE_LABEL:
        raise ValueError(f"label language must be one of {', '.join(IMAGE_LABEL)}, got {language!r}")
    if position not in POSITIONS:
        raise ValueError(f"label position must be one of {', '.join(POSITIONS)}, got {position!r}")
    if not 10 <= opacity <= 100:
        raise ValueError(f"label opacity must be 10-100 percent, got {opacity}")

    base = _workable(image)
    width, height = base.size
    text, language, font_key = _text_and_font(language)
    layout = _fitting_layout(font_key, text, width, height)
    margin = _margin(width, height, layout.size)
    plate_w, plate_h = layout.size
    left = margin if position.endswith("left") else width - margin - plate_w
    top = margin if position.startswith("top") else height - margin - plate_h
    box = (left, top, left + plate_w, top + plate_h)

    overlay = layout.overlay
    if opacity < 100:
        alpha = overlay.getchannel("A").point(lambda a: a * opacity // 100)
        overlay = overlay.copy()
        overlay.putalpha(alpha)
    region = base.crop(box).convert("RGBA")
    region.alpha_composite(overlay)
    marked = base.copy()
    marked.paste(region.convert(base.mode), box[:2])
    font_name = BUILTIN_FONT if font_key is None else font_key
    return marked, VisibleMark(text, language, position, box, layout.cap_height, font_name, opacity)


def _workable(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    transparent = image.mode in ("LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if transparent else "RGB")


def _margin(width: int, height: int, plate: tuple[int, int]) -> int:
    # 2% of the shorter side, less where the plate leaves no room (tiny pictures).
    wanted = max(1, round(min(width, height) * 0.02))
    return max(0, min(wanted, (width - plate[0]) // 2, (height - plate[1]) // 2))


def _text_and_font(language: str) -> tuple[str, str, str | None]:
    """The text to draw, its language and font file (None: Pillow's built-in)."""
    if language == "zh":
        cjk = _cjk_font_file()
        if cjk is not None:
            return IMAGE_LABEL["zh"], "zh", cjk
    return IMAGE_LABEL["en"], "en", _latin_font_file()


@functools.cache
def _cjk_font_file() -> str | None:
    """A font file that really draws the Chinese label, or None when this machine has none."""
    candidates = [*_fontconfig_files(":lang=zh-cn"), *_CJK_FONT_PATHS]
    for path in dict.fromkeys(candidates):
        if Path(path).is_file() and _draws(path, IMAGE_LABEL["zh"]):
            return path
    return None


@functools.cache
def _latin_font_file() -> str | None:
    """A bold sans font file for the English label, or None for Pillow's built-in font."""
    for path in dict.fromkeys([*_fontconfig_files("sans:bold:lang=en"), *_LATIN_FONT_PATHS]):
        scalable = path.lower().endswith((".ttf", ".otf", ".ttc"))
        if scalable and Path(path).is_file() and _draws(path, IMAGE_LABEL["en"]):
            return path
    return None


def _fontconfig_files(pattern: str) -> list[str]:
    if shutil.which("fc-match") is None:
        return []
    try:
        found = subprocess.run(
            ["fc-match", "-f", "%{file}\n", pattern], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in found.stdout.splitlines() if line]


def _draws(path: str, text: str) -> bool:
    # A font without a glyph draws its .notdef box instead; compare each character's bitmap with
    # the one of a code point no font maps (U+10FFFD, private use).
    font = _font(path, 32)
    tofu = _ink(font, "\U0010fffd")
    return all(_ink(font, ch) not in (tofu, None) for ch in text if not ch.isspace() and ch != "-")


def _ink(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> bytes | None:
    mask = font.getmask(text)
    return bytes(mask) if mask.getbbox() else None


@functools.cache
def _font_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


@functools.cache
def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font at a pixel size; the file is read once and each size made once."""
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(io.BytesIO(_font_bytes(path)), size)


@dataclass(frozen=True)
class _Layout:
    overlay: Image.Image  # RGBA, the plate with its text, at full opacity
    cap_height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.overlay.size


def _fitting_layout(font_key: str | None, text: str, width: int, height: int) -> _Layout:
    shorter = min(width, height)
    required = max(1, math.ceil(shorter * MIN_HEIGHT_RATIO))
    # Taller than the minimum where the minimum is hard to read, but never past an eighth of the side.
    wanted = max(required, min(LEGIBLE_CAP_HEIGHT, shorter // 8))
    for cap in range(wanted, required - 1, -1):
        layout = _layout(font_key, text, cap)
        if layout.size[0] <= width and layout.size[1] <= height:
            return layout
    need = _layout(font_key, text, required).size
    raise ValueError(
        f"image is too small for a visible label: {width}x{height}; "
        f"{text!r} at 5% of the shorter side needs at least {need[0]}x{need[1]}"
    )


@functools.lru_cache(maxsize=256)
def _layout(font_key: str | None, text: str, cap: int) -> _Layout:
    """The mark for text whose capitals are at least ``cap`` pixels tall (cached: sizes repeat)."""
    size, cap_height = _size_for_cap(font_key, cap)
    font = _font(font_key, size)
    stroke = max(1, round(cap_height / 10))
    pad_x = max(1, round(cap_height * 0.35))
    pad_y = max(1, round(cap_height * 0.25))

    # Render once onto a generous canvas and crop to the ink, so the plate hugs what is drawn.
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font, stroke_width=stroke)
    canvas = Image.new("L", (right - left + 4 * stroke, bottom - top + 4 * stroke))
    ImageDraw.Draw(canvas).text((2 * stroke - left, 2 * stroke - top), text, font=font, fill=255, stroke_width=stroke)
    ink_left, ink_top, ink_right, ink_bottom = canvas.getbbox()
    origin = (2 * stroke - left - ink_left + pad_x, 2 * stroke - top - ink_top + pad_y)
    plate_size = (ink_right - ink_left + 2 * pad_x, ink_bottom - ink_top + 2 * pad_y)

    overlay = Image.new("RGBA", plate_size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    radius = min(pad_x, pad_y)
    draw.rounded_rectangle((0, 0, plate_size[0] - 1, plate_size[1] - 1), radius=radius, fill=(0, 0, 0, PLATE_ALPHA))
    draw.text(origin, text, font=font, fill=(255, 255, 255, 255), stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
    return _Layout(overlay, cap_height)


def _size_for_cap(font_key: str | None, cap: int) -> tuple[int, int]:
    """The smallest font size whose rendered "AI" is at least ``cap`` pixels tall, and that height."""
    size = max(4, round(cap / 0.7))
    height = _cap_height(font_key, size)
    while height < cap:
        size += max(1, (cap - height) // 2)
        height = _cap_height(font_key, size)
    while size > 4 and _cap_height(font_key, size - 1) >= cap:
        size -= 1
        height = _cap_height(font_key, size)
    return size, height


def _cap_height(font_key: str | None, size: int) -> int:
    box = _font(font_key, size).getmask("AI").getbbox()
    return 0 if box is None else box[3] - box[1]
