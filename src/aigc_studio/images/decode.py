"""Decoding image bytes that came from outside: the one place every route, the CLI and the label reader
turn untrusted bytes into pixels.

Guards, in order, each before the memory it protects is spent:

- an empty file, or one that is not PNG, JPEG or WebP (the formats the studio takes in; Pillow's other
  parsers are never reached, but by inspect, which reports any format Pillow reads), is refused from its
  first bytes;
- the size in the header is checked against the pixel limit (setting ``max_image_megapixels``) before a
  pixel is decoded, so a 100-byte file that claims 40000×40000 costs nothing;
- a PNG's chunks are walked first: a file cut short is refused, and so is image data that inflates to
  more than its header's size needs (a small file whose compressed data expands to gigabytes). The check
  inflates in 1 MiB pieces that are dropped at once, and stops one byte past what the size needs;
- then the pixels are decoded, once.

``set_pillow_limit`` sets Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) from the
same setting, for what decodes images without this module: the web UI's image boxes (Gradio opens
uploads with Pillow).
"""

from __future__ import annotations

import io
import re
import struct
import zlib

from PIL import Image, UnidentifiedImageError

__all__ = ["FORMATS", "ImageTooLarge", "UnreadableImage", "decode_image", "read_header", "set_pillow_limit"]

FORMATS = ("PNG", "JPEG", "WEBP")
_READABLE = "PNG, JPEG or WebP"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> samples per pixel
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes: first column, first row, column step, row step
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_PIECE = 1 << 20


class UnreadableImage(ValueError):
    """The bytes are not an image the studio reads; the message says why, and which formats are read."""


class ImageTooLarge(ValueError):
    """The header claims more pixels than the limit; nothing was decoded."""

    def __init__(self, width: int, height: int, max_pixels: int, pixels: int | None = None):
        self.width, self.height, self.max_pixels = width, height, max_pixels
        size = (
            f"{width}x{height} ({width * height / 1e6:.0f} megapixels)" if width else f"{pixels / 1e6:.0f} megapixels"
        )
        super().__init__(f"{size}; the limit is {_megapixels(max_pixels)} megapixels (setting max_image_megapixels)")


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:g}"


def set_pillow_limit(max_pixels: int) -> int:
    """Set Pillow's decompression-bomb limit to ``max_pixels`` (it warns past it and refuses past twice
    it) and return the previous value, for whoever set it to put back."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    return previous


def read_header(data: bytes, max_pixels: int, formats: tuple[str, ...] | None = FORMATS) -> Image.Image:
    """The image as Pillow opens it from its header (nothing decoded yet), after every check that needs
    no pixels: UnreadableImage or ImageTooLarge. ``formats`` None lets every Pillow parser try (inspect
    reads any format for its size and pixels)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UnreadableImage(f"image data must be bytes, got {type(data).__name__}")
    if not data:
        raise UnreadableImage(f"it is empty (0 bytes); send a {_READABLE} image")
    data = bytes(data)
    try:
        # Pillow's own guard fires first for sizes past its limit (set_pillow_limit); its warning is left
        # to the process's filters (catch_warnings would change them under other threads): when it is
        # raised as an error, it is the same refusal.
        image = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        width, height = _claimed_size(data)
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageTooLarge(width, height, max_pixels, int(claimed[1]) if claimed else 0) from None
    except UnidentifiedImageError:
        raise UnreadableImage(f"not an image format (its first bytes are {data[:8]!r})") from None
    except Exception as exc:  # a parser may raise anything on crafted bytes
        raise UnreadableImage(f"its header cannot be read: {type(exc).__name__}: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(width, height, max_pixels)
    if image.format == "PNG":
        _check_png(data)
    return image


def decode_image(data: bytes, max_pixels: int, formats: tuple[str, ...] | None = FORMATS) -> Image.Image:
    """Decode untrusted image bytes (PNG, JPEG or WebP, or ``formats``) into a loaded Pillow image,
    refusing, before the pixels are decoded, anything over ``max_pixels`` (ImageTooLarge) and anything that
    is not a whole, readable image (UnreadableImage); both are ValueErrors whose message says what was
    wrong."""
    image = read_header(data, max_pixels, formats)
    try:
        image.load()
    except Exception as exc:  # truncated or corrupt data after a valid header, in any plugin
        raise UnreadableImage(f"its {image.format} data cannot be decoded: {type(exc).__name__}: {exc}") from None
    return image


def _claimed_size(data: bytes) -> tuple[int, int]:
    # Pillow refused the header before handing back a size; a PNG's IHDR says it plainly.
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return 0, 0


def _png_raw_size(width: int, height: int, bit_depth: int, colour: int, interlace: int) -> int:
    # Bytes the inflated image data holds: per row, a filter byte and the packed samples (each Adam7
    # pass is a small image of its own).
    bits = _PNG_CHANNELS.get(colour, 4) * bit_depth

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w and h else 0

    if not interlace:
        return rows(width, height)
    return sum(
        rows((width - x + dx - 1) // dx if width > x else 0, (height - y + dy - 1) // dy if height > y else 0)
        for x, y, dx, dy in _ADAM7
    )


def _check_png(data: bytes) -> None:
    """Walk the chunks (no pixel decoded): refuse a file cut short, and image data that inflates past what
    the header's size needs."""
    position, header, pieces = len(_PNG_SIGNATURE), None, []
    while True:
        if position + 8 > len(data):
            raise UnreadableImage("it is cut short: the PNG ends before its IEND chunk (a truncated file)")
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if end > len(data):
            raise UnreadableImage(
                f"it is cut short: its {kind.decode('latin-1')!r} chunk needs {length} bytes, the file holds "
                f"{max(len(data) - position - 12, 0)} (a truncated file)"
            )
        payload = memoryview(data)[position + 8 : position + 8 + length]
        if kind == b"IHDR" and length == 13:
            header = struct.unpack(">IIBBBBB", payload)
        elif kind == b"IDAT":
            pieces.append(payload)
        elif kind == b"IEND":
            break
        position = end
    if header is None:
        raise UnreadableImage("its PNG header chunk (IHDR) is missing or malformed")
    width, height, bit_depth, colour, _, _, interlace = header
    needed = _png_raw_size(width, height, bit_depth, colour, interlace)
    inflater, inflated = zlib.decompressobj(), 0
    try:
        for piece in pieces:
            chunk = piece
            while chunk and inflated <= needed:
                inflated += len(inflater.decompress(chunk, _INFLATE_PIECE))
                chunk = inflater.unconsumed_tail
            if inflated > needed:
                break
    except zlib.error as exc:
        raise UnreadableImage(f"its PNG image data is not valid compressed data: {exc}") from None
    if inflated > needed:
        raise UnreadableImage(
            f"its PNG image data inflates past the {needed} bytes that {width}x{height} needs "
            "(a decompression bomb); refused before decoding"
        )
