"""The invisible watermark (labels/watermark.py): what the README claims for it, on a real photo.

It carries the item's payload through a PNG save, JPEG 75, WebP 80 and a resize to half and back, names
the item from ``known`` (also with one wrong bit, never with an ambiguous or far payload), does not find
marks in unmarked pictures (photos, flat colours, gradients), leaves tiny images alone and says why, and
finds it again after a crop by searching the grid.
"""

from __future__ import annotations

import io
from pathlib import Path

import gradio
import numpy as np
import pytest
from PIL import Image

from aigc_studio.labels import watermark

PHOTOS = Path(gradio.__file__).parent / "media_assets" / "images"


def photo(name: str = "cheetah.jpg", side: int = 512) -> Image.Image:
    return Image.open(PHOTOS / name).convert("RGB").resize((side, side), Image.LANCZOS)


def saved(image: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.fixture(scope="module")
def marked():
    payload = watermark.payload_for("img-42")
    return payload, watermark.embed(photo(), payload)


def test_payload_is_32_bits_from_the_id_and_stable():
    assert watermark.payload_for("img-42") == watermark.payload_for("img-42")
    assert watermark.payload_for("img-42") != watermark.payload_for("img-43")
    assert all(0 <= watermark.payload_for(f"id-{i}") < 2**32 for i in range(100))
    with pytest.raises(ValueError, match=r"payload must be 0\.\.4294967295, got 4294967296"):
        watermark.embed(photo(), 2**32)


def test_png_round_trip_reads_the_exact_payload_and_names_the_item(marked):
    payload, image = marked
    assert image.size == (512, 512) and image.mode == "RGB"
    reading = watermark.detect(saved(image, "PNG"), known={payload: "img-42", payload ^ 0xFFFF: "img-7"})
    assert reading.found is True
    assert reading.payload == payload
    assert reading.item == "img-42" and reading.bit_errors == 0
    assert reading.method == "dwtDctSvd-32"
    assert reading.confidence >= watermark.THRESHOLD


@pytest.mark.parametrize(
    "change",
    [
        lambda image: saved(image, "JPEG", quality=75),
        lambda image: saved(image, "WEBP", quality=80),
        lambda image: image.resize((256, 256), Image.BICUBIC).resize((512, 512), Image.BICUBIC),
    ],
    ids=["jpeg75", "webp80", "resize50"],
)
def test_everyday_changes_keep_the_payload(marked, change):
    payload, image = marked
    reading = watermark.detect(change(image), known={payload: "img-42"})
    assert (reading.found, reading.payload, reading.item) == (True, payload, "img-42")


def test_a_crop_is_found_by_searching_the_grid(marked):
    payload, image = marked
    cropped = image.crop((25, 27, 487, 487))  # 5% off the sides, the grid moved by an odd number of pixels
    reading = watermark.detect(cropped, known={payload: "img-42"})
    assert (reading.found, reading.payload, reading.item) == (True, payload, "img-42")
    # where the grid sits the bits are wrong: only the search finds the mark
    assert watermark.payload_of(watermark.read_votes(cropped)) != payload
    shares, where = watermark.read_shares(cropped)
    assert watermark.payload_of(shares) == payload
    assert where[:2] == ((8 - 27 % 8) % 8, (8 - 25 % 8) % 8)


def test_the_mark_is_invisible_enough(marked):
    _, image = marked
    difference = np.asarray(image, dtype=np.float64) - np.asarray(photo(), dtype=np.float64)
    psnr = 10 * np.log10(255**2 / np.mean(difference**2))
    assert psnr > 40, psnr


def test_known_matching_allows_one_wrong_bit_and_refuses_ambiguity():
    payload = 0b1011 << 28
    assert watermark.match(payload, {payload ^ 1: "img-1"}) == ("img-1", 1, "")
    item, errors, reason = watermark.match(payload, {payload ^ 0b11: "img-1"})
    assert (item, errors) == (None, None)
    assert reason == "the payload matches no known item within 1 bit(s)"
    item, errors, reason = watermark.match(payload, {payload ^ 1: "img-1", payload ^ 2: "img-2"})
    assert (item, errors) == (None, 1)
    assert reason == "the payload is equally near 2 items: img-1, img-2"
    # the exact one wins over a one-bit neighbour
    assert watermark.match(payload, {payload: "img-3", payload ^ 1: "img-1"}) == ("img-3", 0, "")


@pytest.mark.parametrize(
    "image",
    [
        photo("lion.jpg"),
        photo("cheetah1.jpg"),
        Image.new("RGB", (512, 512), (255, 255, 255)),
        Image.fromarray(np.tile(np.linspace(0, 255, 512, dtype=np.uint8)[None, :, None], (512, 1, 3))),
    ],
    ids=["lion", "cheetah1", "white", "gradient"],
)
def test_unmarked_images_are_not_found(image):
    reading = watermark.detect(image, known={watermark.payload_for("img-42"): "img-42"})
    assert reading.found is False
    assert reading.item is None
    assert reading.confidence < watermark.THRESHOLD


def test_tiny_images_are_left_unchanged_and_say_the_minimum():
    tiny = Image.new("RGB", (64, 100), (10, 200, 30))
    assert watermark.embed(tiny, 123) is tiny
    assert watermark.too_small(tiny) == "image is 64×100; the watermark needs at least 128 pixels on each side"
    reading = watermark.detect(tiny)
    assert (reading.found, reading.payload, reading.confidence) == (False, None, 0.0)
    assert reading.reason == "image is 64×100; the watermark needs at least 128 pixels on each side"


def test_other_modes_and_odd_sizes_come_back_rgb_of_the_same_size_and_read():
    rgba = photo(side=200).convert("RGBA")
    out = watermark.embed(rgba, 5)
    assert (out.mode, out.size) == ("RGB", (200, 200))
    odd = Image.open(PHOTOS / "tower.jpg").convert("RGB").resize((515, 389))
    marked = watermark.embed(odd, 0xDEADBEEF)
    assert marked.size == (515, 389)
    assert watermark.detect(saved(marked, "PNG")).payload == 0xDEADBEEF


def test_small_images_need_more_agreement_so_noise_is_not_a_mark():
    # 128×128 has 8 blocks per bit: random votes agree 0.27 on average, above the 512×512 threshold
    assert watermark.threshold_for(watermark.votes_per_bit((128, 128))) == 0.67
    assert watermark.threshold_for(watermark.votes_per_bit((512, 512))) == watermark.THRESHOLD == 0.2
    small = photo("lion.jpg", side=128)
    assert watermark.detect(small).found is False
    payload = watermark.payload_for("img-small")
    reading = watermark.detect(saved(watermark.embed(small, payload), "PNG"), known={payload: "img-small"})
    assert (reading.found, reading.item, reading.threshold) == (True, "img-small", 0.67)


def test_a_large_cropped_image_is_searched_in_a_window():
    big = photo("groot.jpeg", side=1024)
    payload = watermark.payload_for("img-big")
    cropped = watermark.embed(big, payload).crop((51, 37, 1024, 1024))
    reading = watermark.detect(saved(cropped, "JPEG", quality=90), known={payload: "img-big"})
    assert (reading.found, reading.item) == (True, "img-big")
