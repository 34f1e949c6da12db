"""AUTOMATIC1111's image geometry: img2img resize modes, the PIL upscalers and the hires-fix target size.

Read from A1111's ``modules/images.py`` (``resize_image``), ``modules/upscaler.py`` (``Upscaler.upscale``,
the Lanczos and Nearest upscalers) and ``modules/processing.py`` (``calculate_target_resolution``), so an
image fitted or upscaled here has the size and the pixels A1111 gives it.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

__all__ = [
    "LATENT_UPSCALE_MODES",
    "RESIZE_MODES",
    "HiresSize",
    "hires_size",
    "resize_image",
    "upscale_image",
]

# resize_mode -> A1111's label for it (its img2img radio buttons)
RESIZE_MODES = {0: "Just resize", 1: "Crop and resize", 2: "Resize and fill", 3: "Just resize (latent upscale)"}

# A1111's shared.latent_upscale_modes: hires upscaler -> torch interpolate settings
LATENT_UPSCALE_MODES: dict[str, dict] = {
    "Latent": {"mode": "bilinear", "antialias": False},
    "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
    "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
    "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
    "Latent (nearest)": {"mode": "nearest", "antialias": False},
    "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
}
_PIL_UPSCALERS = {"Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}
_LATENT_FACTOR = 8  # A1111's opt_f: pixels per latent cell


def upscale_image(image: Image.Image, width: int, height: int, upscaler: str | None = None) -> Image.Image:
    """``image`` at ``width``×``height``, as A1111's ``resize`` inside ``resize_image`` makes it.

    Without an upscaler (or for a mask) that is one Lanczos resize. With "Lanczos" or "Nearest", an image
    that grows is first scaled by the larger of the two ratios with that filter (A1111's
    ``Upscaler.upscale``: to that size, then to a multiple of 8 with Lanczos), then brought to the exact
    size with Lanczos.
    """
    if upscaler is None or image.mode == "L":
        return image.resize((width, height), resample=Image.LANCZOS)
    if upscaler not in _PIL_UPSCALERS:
        raise ValueError(f"{upscaler!r} is not a pixel upscaler; valid: {', '.join(_PIL_UPSCALERS)}")
    scale = max(width / image.width, height / image.height)
    if scale > 1.0:
        dest = (int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8))
        scaled = image.resize((int(image.width * scale), int(image.height * scale)), resample=_PIL_UPSCALERS[upscaler])
        if scaled.size != dest:
            scaled = scaled.resize(dest, resample=Image.LANCZOS)
        image = scaled
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.LANCZOS)
    return image


def resize_image(mode: int, image: Image.Image, width: int, height: int, upscaler: str | None = None) -> Image.Image:
    """Fit ``image`` to ``width``×``height`` by A1111's resize mode.

    0 just resize (stretch); 1 crop and resize (scale to cover, centre, cut the excess); 2 resize and fill
    (scale to fit, centre, fill the bars by stretching the image's edge rows or columns). Mode 3 (latent
    resize) happens after encoding; for pixels it is mode 0 here.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {', '.join(map(str, RESIZE_MODES))}, got {mode}")
    if mode in (0, 3):
        return upscale_image(image, width, height, upscaler)
    ratio, src_ratio = width / height, image.width / image.height
    if mode == 1:
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width
    else:
        src_w = width if ratio < src_ratio else image.width * height // image.height
        src_h = height if ratio >= src_ratio else image.height * width // image.width
    resized = upscale_image(image, src_w, src_h, upscaler)
    result = Image.new(image.mode if image.mode == "L" else "RGB", (width, height))
    result.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if mode == 2 and ratio < src_ratio:  # bars above and below: the first and last row, stretched
        bar = height // 2 - src_h // 2
        result.paste(resized.resize((width, bar), box=(0, 0, width, 0)), box=(0, 0))
        result.paste(resized.resize((width, bar), box=(0, resized.height, width, resized.height)), box=(0, bar + src_h))
    elif mode == 2 and ratio > src_ratio:  # bars left and right: the first and last column, stretched
        bar = width // 2 - src_w // 2
        result.paste(resized.resize((bar, height), box=(0, 0, 0, height)), box=(0, 0))
        result.paste(resized.resize((bar, height), box=(resized.width, 0, resized.width, height)), box=(bar + src_w, 0))
    return result


@dataclass(frozen=True)
class HiresSize:
    """Where hires fix goes: the upscale target, and the latent rows/columns cut off to fill a target of
    another aspect ratio (A1111's ``truncate_x``/``truncate_y``, in latent cells)."""

    upscale_to_x: int
    upscale_to_y: int
    truncate_x: int = 0
    truncate_y: int = 0

    @property
    def latent_size(self) -> tuple[int, int]:
        """(width, height) of the second pass's latents, after the cut."""
        return (
            self.upscale_to_x // _LATENT_FACTOR - self.truncate_x,
            self.upscale_to_y // _LATENT_FACTOR - self.truncate_y,
        )

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the finished image."""
        width, height = self.latent_size
        return width * _LATENT_FACTOR, height * _LATENT_FACTOR


def hires_size(width: int, height: int, hr_scale: float, hr_resize_x: int = 0, hr_resize_y: int = 0) -> HiresSize:
    """A1111's hires-fix target for a first pass of ``width``×``height``.

    Both resizes 0: scale by ``hr_scale``. One of them 0: that side follows the aspect ratio. Both set: the
    image is upscaled to cover the target and the excess is cut from the latents, centred ("crop to fill").
    """
    if hr_resize_x == 0 and hr_resize_y == 0:
        return HiresSize(int(width * hr_scale), int(height * hr_scale))
    if hr_resize_y == 0:
        return HiresSize(hr_resize_x, hr_resize_x * height // width)
    if hr_resize_x == 0:
        return HiresSize(hr_resize_y * width // height, hr_resize_y)
    if width / height < hr_resize_x / hr_resize_y:
        to_x, to_y = hr_resize_x, hr_resize_x * height // width
    else:
        to_x, to_y = hr_resize_y * width // height, hr_resize_y
    return HiresSize(to_x, to_y, (to_x - hr_resize_x) // _LATENT_FACTOR, (to_y - hr_resize_y) // _LATENT_FACTOR)
