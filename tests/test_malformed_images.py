"""Malformed images, sent to every route that takes one, on a live server: each is a 4xx naming what was
wrong, the server's memory does not jump while it refuses it, and it still answers after.

The routes: /sdapi/v1/img2img (init_images, mask), /sdapi/v1/png-info, /api/inspect (multipart and
JSON). All of them decode through images/decode.py. The server runs in this process (a real uvicorn on
loopback), so psutil reads its RSS here, sampled every few milliseconds while each request runs.
"""

from __future__ import annotations

import base64
import io
import struct
import threading
import time
import zlib

import httpx
import psutil
import pytest
from PIL import Image

from aigc_studio.images.decode import ImageTooLarge, UnreadableImage, decode_image, set_pillow_limit

from .conftest import studio_server

LIMIT = "the limit is 64 megapixels (setting max_image_megapixels)"
# What refusing one malformed image may add to the server's RSS at its peak (measured: under 10 MB, the
# request body's copies). Decoding any of them would take far more: 40000x40000 is 4.8 GB of RGB, and
# the bombs inflate to 256 MiB and 1.2 GB.
RSS_BOUND_MB = 32
TIMEOUT = 120  # seconds per request: the machine may be loaded; what is asserted is the answer


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _zeros_deflated(size: int, piece: int = 1 << 20) -> bytes:
    """A zlib stream of ``size`` zero bytes, built in milliseconds: one deflated 1 MiB of zeros ending in
    a full flush is repeated, and the checksum of n zeros is (n mod 65521) << 16 | 1."""

    def raw(n: int, final: bool) -> bytes:
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        return deflate.compress(bytes(n)) + deflate.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)

    count, rest = divmod(size, piece)
    return b"\x78\xda" + raw(piece, False) * count + raw(rest, True) + struct.pack(">I", (size % 65521) << 16 | 1)


def png(width: int, height: int, idat: bytes) -> bytes:
    """A PNG (8-bit RGB, not interlaced) with this header and these image data bytes, as given."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def good_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buf, "PNG")
    return buf.getvalue()


# name: (the file's bytes, or text for "bad base64"), status under /api (under /sdapi an unreadable image
# is A1111's 422), words in the message
CASES = {
    "truncated PNG": (good_png()[:70], 400, "is cut short"),
    "40000x40000 header": (png(40_000, 40_000, zlib.compress(b"")), 413, f"40000x40000 (1600 megapixels); {LIMIT}"),
    # 64x64 needs 12352 bytes; these inflate to 256 MiB: a ~260 KB file
    "zip bomb, small header": (
        png(64, 64, _zeros_deflated(256 << 20)),
        400,
        "inflates past the 12352 bytes that 64x64 needs (a decompression bomb)",
    ),
    # a real image of zeros, 20000x20000, all its data valid: 1.2 GB deflated into ~1.2 MB
    "zip bomb, huge image": (
        png(20_000, 20_000, _zeros_deflated(20_000 * (1 + 20_000 * 3))),
        413,
        f"20000x20000 (400 megapixels); {LIMIT}",
    ),
    # /api/inspect also reads text files; one that is neither is "not a file inspect can read"
    "not an image, named .png": (b"<html>this is a web page</html>", 400, "not a"),
    "empty": (b"", 400, "empty"),
    "bad base64": ("iVBORw0KGgo=not*base64", 400, "is not valid base64"),
}
ROUTES = ["img2img init_images", "img2img mask", "png-info", "inspect multipart", "inspect json"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("malformed-home")
    with studio_server(home, load_default=False, model="echo", image_model="plain") as live:
        yield live


_schemas: dict[str, dict] = {}


def schema(server) -> dict:
    """The server's OpenAPI schema, fetched once."""
    if server.url not in _schemas:
        _schemas[server.url] = httpx.get(server.url + "/openapi.json", timeout=TIMEOUT).json()
    return _schemas[server.url]


def send(server, route: str, payload: bytes | str) -> httpx.Response:
    """One request to ``route`` carrying ``payload`` where the image goes (text is sent as given)."""
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    good = base64.b64encode(good_png()).decode()
    small = {"width": 64, "height": 64, "steps": 1}
    if route == "img2img init_images":
        return httpx.post(server.url + "/sdapi/v1/img2img", json={"init_images": [text], **small}, timeout=TIMEOUT)
    if route == "img2img mask":
        return httpx.post(
            server.url + "/sdapi/v1/img2img", json={"init_images": [good], "mask": text, **small}, timeout=TIMEOUT
        )
    if route == "png-info":
        return httpx.post(server.url + "/sdapi/v1/png-info", json={"image": text}, timeout=TIMEOUT)
    if route == "inspect json":
        return httpx.post(server.url + "/api/inspect", json={"data": text, "filename": "x.png"}, timeout=TIMEOUT)
    raw = payload if isinstance(payload, bytes) else payload.encode()
    return httpx.post(server.url + "/api/inspect", files={"file": ("x.png", raw, "image/png")}, timeout=TIMEOUT)


class PeakRss:
    """The highest RSS of this process (the server's) while the block runs, sampled every 2 ms."""

    def __enter__(self) -> PeakRss:
        self.process = psutil.Process()
        self.before = self.peak = self.process.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def jump_mb(self) -> float:
        return (self.peak - self.before) / 2**20


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_image_is_a_4xx_naming_it_without_memory_and_the_server_still_answers(server, route, case):
    payload, status, words = CASES[case]
    if case == "empty" and route == "inspect json":
        words = "data: String should have at least 1 character, got ''"  # the declared minLength answers
    if case == "bad base64" and route == "inspect multipart":
        pytest.skip("a multipart upload carries bytes, not base64: 'not an image' is its case")
    if case == "empty" and route == "img2img mask":
        pytest.skip("an empty mask is no mask, as in A1111: plain img2img (tests/test_sdapi.py)")
    jobs = server.studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    with PeakRss() as rss:
        r = send(server, route, payload)
    sdapi = route.startswith(("img2img", "png-info"))
    expected = 422 if sdapi and status == 400 else status
    assert r.status_code == expected, r.text[:500]
    message = r.json()["detail"] if sdapi else r.json()["error"]["message"]
    assert words in message, message
    # the schema declares the status for this operation, with the body it has
    path = {"img2img": "/sdapi/v1/img2img", "png-info": "/sdapi/v1/png-info"}.get(route.split()[0], "/api/inspect")
    assert str(r.status_code) in schema(server)["paths"][path]["post"]["responses"]
    field = {"img2img init_images": "init_images", "img2img mask": "mask", "png-info": "image"}.get(route)
    if field:
        assert message.startswith(field), message
    assert rss.jump_mb < RSS_BOUND_MB, f"RSS rose {rss.jump_mb:.0f} MB refusing it"
    # nothing queued, and the server answers the next request, with a good image
    assert server.studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == jobs
    good = {"image": base64.b64encode(good_png()).decode()}
    ok = httpx.post(server.url + "/sdapi/v1/png-info", json=good, timeout=TIMEOUT)
    assert ok.status_code == 200 and ok.json()["info"] == ""


def test_an_empty_multipart_file_and_an_empty_json_image_say_empty(server):
    r = send(server, "inspect multipart", b"")
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("the file x.png is empty")
    r = send(server, "png-info", b"")
    assert r.status_code == 422 and r.json()["detail"].startswith("image is not a readable image")
    assert "it is empty (0 bytes)" in r.json()["detail"]


# -- the decoder itself: what it refuses, and that a valid image of every PNG layout passes ---------


@pytest.mark.parametrize(
    "mode, interlace",
    [
        *[(mode, False) for mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16")],
        *[(mode, True) for mode in ("RGB", "P", "1")],
    ],
)
def test_a_valid_png_of_any_layout_decodes(mode, interlace):
    # The inflate check computes each layout's size (bit depth, channels, Adam7 passes): too small a
    # figure would refuse real files.
    image = Image.new("RGB", (37, 23), "orange").convert(mode)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    # Pillow cannot write Adam7: the interlaced file is built here
    data = _adam7(image) if interlace else buf.getvalue()
    decoded = decode_image(data, 1_000_000)
    assert decoded.size == (37, 23)


# The PNG specification's seven passes: first column, first row, column step, row step.
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _adam7(image: Image.Image) -> bytes:
    # An Adam7 PNG of an 8-bit (or 1-bit) image: each pass's rows, filter byte 0, deflated together.
    bits = {"1": 1, "P": 8, "RGB": 8}[image.mode]
    colour = {"1": 0, "P": 3, "RGB": 2}[image.mode]
    channels = 3 if image.mode == "RGB" else 1
    width, height = image.size
    pixels = image.load()
    raw = bytearray()
    for x0, y0, dx, dy in ADAM7:
        xs = range(x0, width, dx)
        for y in range(y0, height, dy):
            if not xs:
                continue
            raw.append(0)
            if bits == 1:
                row = 0
                for x in xs:
                    row = (row << 1) | (1 if pixels[x, y] else 0)
                count = len(xs)
                row <<= (8 - count % 8) % 8
                raw += row.to_bytes((count + 7) // 8, "big")
            else:
                for x in xs:
                    value = pixels[x, y]
                    raw += bytes(value) if channels == 3 else bytes([value])
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 1)
    palette = b""
    if image.mode == "P":
        palette = _chunk(b"PLTE", bytes(image.getpalette()[: 3 * 256]))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + palette
        + _chunk(b"IDAT", zlib.compress(bytes(raw)))
        + _chunk(b"IEND", b"")
    )


def test_image_data_one_row_too_long_is_refused_and_exact_data_is_not():
    row = b"\x00" + b"\x80" * (8 * 3)
    assert decode_image(png(8, 8, zlib.compress(row * 8)), 100).size == (8, 8)
    with pytest.raises(UnreadableImage, match="inflates past the 200 bytes that 8x8 needs"):
        decode_image(png(8, 8, zlib.compress(row * 9)), 100)


def test_the_limit_and_pillows_own_guard_come_from_one_setting():
    with pytest.raises(ImageTooLarge, match=r"^2000x1000 \(2 megapixels\); the limit is 1 megapixels"):
        decode_image(png(2000, 1000, b""), 1_000_000)
    previous = set_pillow_limit(1_000_000)
    try:
        assert Image.MAX_IMAGE_PIXELS == 1_000_000
        with pytest.raises(Image.DecompressionBombError):  # what the web UI's Gradio boxes meet
            Image.open(io.BytesIO(png(2000, 1001, b"")))
    finally:
        set_pillow_limit(previous)


def test_a_studio_sets_pillows_limit_from_max_image_megapixels_and_puts_it_back(aigc_home):
    from aigc_studio.config import load_config
    from aigc_studio.studio import Studio

    before = Image.MAX_IMAGE_PIXELS
    studio = Studio(load_config(model="echo", image_model="plain", max_image_megapixels=3))
    assert Image.MAX_IMAGE_PIXELS == 3_000_000
    studio.close()
    assert before == Image.MAX_IMAGE_PIXELS
