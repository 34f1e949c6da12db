"""What an img2img or inpaint run starts from and how its result is put back, as A1111 prepares it.

Read from A1111's ``StableDiffusionProcessingImg2Img.init``, ``apply_overlay``, ``create_binary_mask``
and ``modules/masking.py``. ``prepare_init`` takes the caller's image and mask at their own size and
gives what a model works on (``InitInput``): the image fitted to the request by ``resize_mode`` (or,
"Only masked", the masked region cropped and scaled to the request size), the blurred mask the model
repaints, and how ``InitInput.finish`` lays the model's picture back over the original. Engines share it,
so the plain test engine and the diffusers engine give the same sizes and keep the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ..contracts import ImageRequest
from .resize import resize_image

__all__ = ["InitInput", "blank_mask", "blur_mask", "crop_region", "expand_crop_region", "fill", "prepare_init"]

_BACKGROUND = (255, 255, 255)  # A1111's img2img_background_color: what transparent input pixels become


def _gaussian_kernel(sigma: float) -> np.ndarray:
    # OpenCV's getGaussianKernel for the kernel size A1111 asks for: 2·int(2.5σ + 0.5) + 1 taps
    size = 2 * int(2.5 * sigma + 0.5) + 1
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _blur_axis(pixels: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    # numpy's "reflect" is OpenCV's default border (BORDER_REFLECT_101: no edge pixel repeated)
    padded = np.pad(pixels.astype(np.float64), pad, mode="reflect")
    out = np.zeros(pixels.shape, dtype=np.float64)
    length = pixels.shape[axis]
    for tap, weight in enumerate(kernel):
        out += weight * (padded[tap : tap + length] if axis == 0 else padded[:, tap : tap + length])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blur_mask(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """A1111's mask blur: a Gaussian of σ ``blur_x`` along rows, then one of σ ``blur_y`` along columns,
    each rounded back to 8 bits (A1111 runs OpenCV's ``GaussianBlur`` once per direction)."""
    pixels = np.asarray(mask.convert("L"))
    if blur_x > 0:
        pixels = _blur_axis(pixels, blur_x, axis=1)
    if blur_y > 0:
        pixels = _blur_axis(pixels, blur_y, axis=0)
    return Image.fromarray(pixels, "L")


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """The box (x1, y1, x2, y2) around the mask's non-black pixels, grown by ``padding`` within the
    image; None for a blank mask (A1111's ``get_crop_region_v2``)."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_crop_region(
    region: tuple[int, int, int, int], width: int, height: int, image_width: int, image_height: int
) -> tuple[int, int, int, int]:
    """Grow ``region`` to the aspect ratio of ``width``×``height``, kept inside the image where it fits
    (A1111's ``expand_crop_region``)."""
    x1, y1, x2, y2 = region
    if (x2 - x1) / (y2 - y1) > width / height:
        diff = int((x2 - x1) / (width / height) - (y2 - y1))
        y1, y2 = y1 - diff // 2, y2 + diff - diff // 2
        if y2 >= image_height:
            y1, y2 = y1 - (y2 - image_height), image_height
        if y1 < 0:
            y1, y2 = 0, y2 - y1
        y2 = min(y2, image_height)
    else:
        diff = int((y2 - y1) * (width / height) - (x2 - x1))
        x1, x2 = x1 - diff // 2, x2 + diff - diff // 2
        if x2 >= image_width:
            x1, x2 = x1 - (x2 - image_width), image_width
        if x1 < 0:
            x1, x2 = 0, x2 - x1
        x2 = min(x2, image_width)
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's ``masking.fill``: the masked area takes the colours around it, blurred in coarse to fine."""
    filled = Image.new("RGBA", image.size)
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return filled.convert("RGB")


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _binary_mask(mask: Image.Image) -> Image.Image:
    # A mask painted in a browser arrives as RGBA with the strokes in its alpha channel
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        return mask.getchannel("A").point(lambda alpha: 255 if alpha > 128 else 0)
    return mask.convert("L")


def blank_mask(request: ImageRequest, mask: Image.Image) -> bool:
    """Whether ``mask``, inverted as the request says, marks nothing to repaint (blurring keeps it so)."""
    mask = _binary_mask(mask)
    return (ImageOps.invert(mask) if request.inpainting_mask_invert else mask).getbbox() is None


@dataclass
class InitInput:
    """What an img2img / inpaint / edit run starts from, and how its pictures are finished."""

    image: Image.Image  # RGB the model encodes: the request's size (resize_mode 3: the input's own size)
    original: Image.Image  # RGB at the output's size: the input as the output is laid over it
    mask: Image.Image | None = None  # L, the request's size: where the model repaints (blurred, not doubled)
    overlay_mask: Image.Image | None = None  # L, the output's size: where the model's picture shows
    paste_to: tuple[int, int, int, int] | None = None  # "Only masked": (x, y, width, height) of the crop
    latent_resize: bool = False  # resize_mode 3: the encoded image is resized in latent space

    def finish(self, generated: Image.Image) -> Image.Image:
        """The model's picture (the request's size) -> the output: scaled into the crop it came from
        ("Only masked"), then laid under the original, which shows where the overlay mask is black
        (A1111's ``apply_overlay``). Without a mask the picture is the output."""
        if self.overlay_mask is None:
            return generated
        if self.paste_to is not None:
            x, y, w, h = self.paste_to
            canvas = Image.new("RGBA", self.original.size)
            canvas.paste(resize_image(1, generated, w, h), (x, y))
            generated = canvas
        overlay = self.original.convert("RGBA")
        overlay.putalpha(ImageOps.invert(self.overlay_mask))
        result = generated.convert("RGBA")
        result.alpha_composite(overlay)
        return result.convert("RGB")


def prepare_init(request: ImageRequest, image: Image.Image, mask: Image.Image | None = None) -> InitInput:
    """``image`` (and ``mask``, white where to repaint) at the caller's size -> what the model works on.

    The mask is inverted (``inpainting_mask_invert``) and blurred once (``mask_blur_x``/``mask_blur_y``,
    both ``mask_blur`` unless set). "Only masked" (``inpaint_full_res``): the blurred mask's box plus
    ``inpaint_full_res_padding``, grown to the request's aspect ratio, is cut from image and mask and
    scaled to the request's size; the output keeps the input's size. Otherwise image and mask are fitted
    by ``resize_mode`` and the output has the request's size; as in A1111 the overlay mask is then the
    blurred mask doubled (the model's picture shows fully wherever the blurred mask is half white or more).
    A blank mask with "Only masked" is refused: the caller decides what that means.
    """
    width, height = request.width, request.height
    image = _flatten(image)
    region = None
    repaint = overlay_mask = None
    if mask is not None:
        if mask.size != image.size:
            raise ValueError(f"the mask is {mask.width}x{mask.height}, the image {image.width}x{image.height}")
        mask = _binary_mask(mask)
        if request.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        blur_x = request.mask_blur if request.mask_blur_x is None else request.mask_blur_x
        blur_y = request.mask_blur if request.mask_blur_y is None else request.mask_blur_y
        mask = blur_mask(mask, blur_x, blur_y)
        if request.inpaint_full_res:
            region = crop_region(mask, request.inpaint_full_res_padding)
            if region is None:
                raise ValueError("the mask is blank: 'Only masked' has no region to repaint")
            region = expand_crop_region(region, width, height, mask.width, mask.height)
            overlay_mask = mask
            repaint = resize_image(2, mask.crop(region), width, height)
        else:
            # resize_mode 3 stretches the pixels before encoding, so the mask is stretched the same way
            repaint = resize_image(request.resize_mode if request.resize_mode != 3 else 0, mask, width, height)
            doubled = np.clip(np.asarray(repaint, dtype=np.float32) * 2, 0, 255).astype(np.uint8)
            overlay_mask = Image.fromarray(doubled, "L")
    latent_resize = region is None and request.resize_mode == 3
    if region is not None:
        original = image
        x1, y1, x2, y2 = region
        image = resize_image(2, image.crop(region), width, height)
    else:
        original = resize_image(0 if latent_resize else request.resize_mode, image, width, height)
        image = image if latent_resize else original
    if repaint is not None and request.inpainting_fill != 1:
        image = fill(image, repaint if image.size == repaint.size else repaint.resize(image.size))
    return InitInput(
        image=image,
        original=original,
        mask=repaint,
        overlay_mask=overlay_mask,
        paste_to=(x1, y1, x2 - x1, y2 - y1) if region is not None else None,
        latent_resize=latent_resize,
    )
