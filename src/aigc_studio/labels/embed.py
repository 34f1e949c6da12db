"""Labels inside image files: the A1111 infotext, the TC260 ``AIGC`` label and the IPTC digital source
type, written into and read from PNG, JPEG and WebP.

Where each goes:

- PNG: text chunk ``parameters`` (the infotext, exactly as ``images/infotext.py`` ``write_png`` writes
  it), text chunk ``AIGC`` (the label's JSON; tEXt, or UTF-8 iTXt when it is not Latin-1) and iTXt
  ``XML:com.adobe.xmp`` (the XMP packet), all before the pixel data;
- JPEG: EXIF UserComment (the infotext, as A1111 writes it) and the XMP packet in an APP1 segment;
- WebP: the same EXIF in its ``EXIF`` chunk and the XMP packet in its ``XMP`` chunk.

Reading takes any file, this studio's or another tool's, checks its size from the header before
decoding a pixel, and recomputes the label's integrity digest over the decoded pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace

from PIL import Image, PngImagePlugin

from ..images.decode import ImageTooLarge, UnreadableImage, decode_image
from ..images.infotext import exif_save_args, read_infotext, write_png
from .aigc import AigcLabel, LabelFormatError, image_digest
from .xmp import build_xmp, label_json, parse_xmp

__all__ = ["FORMATS", "MAX_PIXELS", "FileLabels", "encode_image", "encoded_digest", "image_labels", "read_image_labels"]

FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# Refused from the header alone: larger than any picture the studio makes or edits (about 10000x10000).
MAX_PIXELS = 100_000_000

_PILLOW_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_XMP_KEY = "XML:com.adobe.xmp"
_AIGC_KEY = "AIGC"
# One JPEG APP1 segment holds 65533 bytes, less the 29-byte XMP namespace header.
_JPEG_MAX_XMP = 65504


def _pixels_as_encoded(image: Image.Image, fmt: str, quality: int) -> Image.Image:
    # JPEG and lossy WebP change pixels; metadata does not, so encoding without it decodes the same.
    if fmt == "png":
        return image
    converted, options = exif_save_args(image, _PILLOW_FORMAT[fmt], None, quality=quality)
    buffer = io.BytesIO()
    converted.save(buffer, format=_PILLOW_FORMAT[fmt], **options)
    buffer.seek(0)
    return Image.open(buffer)


def encoded_digest(image: Image.Image, fmt: str, *, quality: int = 90) -> str:
    """``image_digest`` of the pixels a reader decodes from ``encode_image(image, fmt, quality=...)``:
    for PNG the image's own, for JPEG and WebP those after lossy compression (what ReservedCode1 must hold
    for the file's integrity to read "match")."""
    _check_format(fmt)
    return image_digest(_pixels_as_encoded(image, fmt, quality))


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"image format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def encode_image(
    image: Image.Image,
    fmt: str,
    *,
    infotext: str | None,
    aigc: AigcLabel | None,
    source_type: str | None,
    quality: int = 90,
) -> bytes:
    """The file for ``image`` in ``fmt`` ("png", "jpeg" or "webp") carrying the infotext, the AIGC label
    and the digital source type, each where it is given (see the module doc for where each goes).

    A label whose ReservedCode1 is empty gets ``encoded_digest`` of this file's pixels. With ``aigc`` and
    ``source_type`` both None no XMP is written, and a PNG is byte for byte what ``write_png`` (or a
    plain Pillow save, without infotext) makes. ``quality`` applies to JPEG and WebP. ValueError for an
    unknown format or metadata too long for a JPEG segment.
    """
    _check_format(fmt)
    if aigc is not None and not aigc.reserved_code1:
        aigc = replace(aigc, reserved_code1=encoded_digest(image, fmt, quality=quality))
    labelled = aigc is not None or source_type is not None
    xmp = build_xmp(aigc, source_type) if labelled else None
    buffer = io.BytesIO()
    if fmt == "png":
        if not labelled:
            if infotext is None:
                image.save(buffer, format="PNG")
            else:
                write_png(image, buffer, infotext)
            return buffer.getvalue()
        info = PngImagePlugin.PngInfo()
        if infotext is not None:
            info.add_text("parameters", infotext)  # as write_png: tEXt, or iTXt when not Latin-1
        if aigc is not None:
            info.add_text(_AIGC_KEY, label_json(aigc))
        info.add_itxt(_XMP_KEY, xmp)
        image.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()

    converted, options = exif_save_args(image, _PILLOW_FORMAT[fmt], infotext, quality=quality)
    if xmp is not None:
        packet = xmp.encode("utf-8")
        if fmt == "jpeg" and len(packet) > _JPEG_MAX_XMP:
            raise ValueError(
                f"the XMP label is too long for JPEG ({len(packet)} bytes, at most {_JPEG_MAX_XMP}); save as PNG"
                " or WebP, or shorten the producer and ids"
            )
        options["xmp"] = packet
    converted.save(buffer, format=_PILLOW_FORMAT[fmt], **options)
    return buffer.getvalue()


@dataclass
class FileLabels:
    """Everything an image file says about how it was made."""

    format: str  # "png" | "jpeg" | "webp" | another Pillow format name, lower case
    width: int
    height: int
    infotext: str | None  # A1111 parameters, from this studio or another tool
    aigc: AigcLabel | None
    aigc_where: list[str] = field(default_factory=list)  # where a label was found: "xmp", "png-text"
    aigc_error: str | None = None  # a label is present but malformed (or two disagree): why
    source_type: str | None = None  # IPTC digital source type
    integrity: str | None = None  # "match" | "mismatch" | "unchecked" (ReservedCode1 not sha256:...) | None
    digest: str | None = None  # image_digest of the decoded pixels


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        return decode_image(data, max_pixels)
    except ImageTooLarge as exc:
        raise ValueError(f"image refused without decoding: {exc}") from None
    except UnreadableImage as exc:
        raise ValueError(f"not a readable image (PNG, JPEG or WebP): {exc}") from None


def _xmp_packets(image: Image.Image) -> list[str | bytes]:
    packets = []
    if image.info.get("xmp"):
        packets.append(image.info["xmp"])
    # A PNG may keep XMP in tEXt or zTXt rather than iTXt; Pillow names only the iTXt one "xmp".
    text = image.info.get(_XMP_KEY)
    if isinstance(text, str) and text and not packets:
        packets.append(text)
    return packets


def read_image_labels(data: bytes, *, max_pixels: int = MAX_PIXELS) -> FileLabels:
    """Read the infotext, AIGC label and digital source type from an image file's bytes, and check the
    label's integrity digest against the decoded pixels.

    Labels come from XMP (any form, any prefix; ``aigc_where`` "xmp") and a PNG text chunk ``AIGC``
    ("png-text"); the infotext from PNG ``parameters`` or EXIF UserComment. A malformed label sets
    ``aigc_error`` instead of raising. ValueError, with the reason, for data that is not a readable image
    or whose header claims more than ``max_pixels`` (refused before any pixel is decoded).
    """
    return image_labels(_open(data, max_pixels))


def image_labels(image: Image.Image) -> FileLabels:
    """``read_image_labels`` for an image already decoded (by images/decode.py), so a caller that needs
    the pixels too decodes the file once."""
    fmt = (image.format or "unknown").lower()
    result = FileLabels(format=fmt, width=image.width, height=image.height, infotext=None, aigc=None)
    try:
        result.infotext = read_infotext(image)
    except Exception:  # a malformed EXIF block must not hide the rest of the labels
        result.infotext = None

    errors: list[str] = []
    found: list[tuple[str, AigcLabel]] = []
    for packet in _xmp_packets(image):
        try:
            xmp = parse_xmp(packet)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        result.source_type = xmp.source_type
        if xmp.aigc_error:
            errors.append(xmp.aigc_error)
        if xmp.aigc is not None:
            found.append(("xmp", xmp.aigc))
    chunk = image.info.get(_AIGC_KEY) if fmt == "png" else None
    if isinstance(chunk, str):
        try:
            found.append(("png-text", AigcLabel.from_json(chunk)))
        except LabelFormatError as exc:
            errors.append(f"PNG text AIGC: {exc}")

    if found:
        result.aigc = found[0][1]
        result.aigc_where = [where for where, _ in found]
        differing = [where for where, label in found if label != result.aigc]
        if differing:
            errors.append(f"the labels in {found[0][0]} and {differing[0]} differ; {found[0][0]}'s is reported")
    result.aigc_error = "; ".join(errors) or None

    result.digest = image_digest(image)
    if result.aigc is not None:
        if result.aigc.reserved_code1.startswith("sha256:"):
            result.integrity = "match" if result.aigc.reserved_code1 == result.digest else "mismatch"
        else:
            result.integrity = "unchecked"
    return result
