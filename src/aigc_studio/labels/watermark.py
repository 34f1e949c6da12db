"""The invisible watermark: 32 bits derived from the item's id, hidden in the image's colour.

Method, chosen by measurement (``bench/labels.py``; the table is in the README): DWT-DCT-SVD, the idea of
invisible-watermark's ``dwtDctSvd``, written here with PyWavelets, scipy and numpy (that package needs
OpenCV, which the studio does not install). The U (blue-difference) channel gets one Haar wavelet level;
its approximation band is cut into 4×4 blocks; in each block the largest singular value of the block's
DCT is quantised (step :data:`SCALE`) to an odd or even half-step, which carries one bit. Block ``k``
carries bit ``k mod 32`` of the payload XOR a fixed pseudo-random key bit, so every bit has many blocks
voting for it and the votes of an unmarked picture cancel out even where the picture is flat or a
gradient (without the key a flat picture reads as a unanimous all-zero mark).

The measured alternative, RivaGAN's 32-bit ONNX networks from the same package, was rejected: run on a
128×128 copy (the largest size that fits the time budget on 2 cores) it read all 32 bits back from only
64% of marked images even unchanged, and 6 of 50 unmarked photos looked as marked as marked ones; at full
size it is robust but takes seconds each way.

What it survives (measured at 512×512, README table): PNG, JPEG 90 and 75, WebP 80, resizing to half and
back; JPEG 50 costs bits (88% found); a crop (or any shift of the pixel grid) loses the mark, because the
blocks no longer line up.

Payload: all 32 bits come from the id (:func:`payload_for`); none are spent on a check code. ``found``
is the votes' agreement (``confidence``, 0 on noise, 1 when every block agrees) at or above
:data:`THRESHOLD` (0.2), chosen from false positives measured on unmarked images: at 512×512 none of 50
photos and 10 synthetic pictures reached it (the highest read 0.10), and random votes give 0.070 ± 0.009,
so the chance that random votes reach 0.2 is about 1e-28 (exact binomial sum). Smaller images have fewer
votes per bit and a raised threshold (:func:`threshold_for`). A check code would add little: ``c``
check bits pass random bits with probability ``2**-c`` (8 bits: 1 in 256, far weaker than the vote
test), and each check bit halves the id space that ``known`` matching relies on.

Matching (``known``): the read payload matches an item when at most :data:`MAX_BIT_ERRORS` (1) bits
differ and exactly one item is nearest. With ``n`` items of random 32-bit payloads, a read lands within
1 bit of some other item with probability about ``n * 33 / 2**32``: 0.08% for 100,000 items (2 bits would
be ``n * 529 / 2**32``, 1.2%); two items sharing a payload outright is expected once among ~77,000 items
(birthday bound), and a read equally near two items is reported as ambiguous (``item`` None), not guessed.

Images whose shorter side is under :data:`MIN_SIDE` (128) pixels are returned unchanged by :func:`embed`
and read as not found, with the reason in ``WatermarkReading.reason``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pywt
from PIL import Image
from scipy.fft import dctn, idctn
from scipy.stats import binom

BITS = 32
METHOD = "dwtDctSvd-32"
# The quantisation step of the largest singular value: 36 is invisible-watermark's default (PSNR ~42 dB).
SCALE = 36.0
BLOCK = 4
# 128 px gives 16×16 blocks, 8 votes per bit; fewer votes make noise look like a mark.
MIN_SIDE = 128
THRESHOLD = 0.2
# Where few blocks vote for each bit (small images), random votes agree more by chance; the threshold is
# then raised to the random-vote mean plus this many standard deviations (see threshold_for).
NOISE_SIGMAS = 10
MAX_BIT_ERRORS = 1

_PAYLOAD_KEY = b"aigc-studio/watermark/v1\0"
_KEY_SEED = 0x41494743  # "AIGC": the block key must be the same at embedding and reading, forever


def payload_for(produce_id: str) -> int:
    """The 32-bit payload for an item: the first 4 bytes of a SHA-256 over the id, big-endian."""
    digest = hashlib.sha256(_PAYLOAD_KEY + produce_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass
class WatermarkReading:
    found: bool  # confidence at or above THRESHOLD
    payload: int | None  # the 32 bits read (None when the image was too small to read)
    confidence: float  # 0..1: how unanimously the blocks vote for the bits read
    item: str | None  # the id from `known` whose payload matches, if exactly one does
    method: str
    bit_errors: int | None = None  # bits that differ from the matched item's payload
    reason: str = ""  # why nothing could be read, or why a found payload matched no item
    threshold: float = THRESHOLD  # the confidence this image's size needed (threshold_for)


def bits_of(payload: int) -> np.ndarray:
    """The payload's 32 bits as 0/1, most significant first."""
    return np.array([(payload >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=np.uint8)


def too_small(image: Image.Image) -> str:
    """Why the image cannot carry or be read for a mark (too small), or "" when it can."""
    if min(image.size) < MIN_SIDE:
        width, height = image.size
        return f"image is {width}×{height}; the watermark needs at least {MIN_SIDE} pixels on each side"
    return ""


def _yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The analogue YUV that OpenCV's COLOR_RGB2YUV uses, so the mark sits where dwtDctSvd puts it.
    y = 0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]
    return y, 0.492 * (rgb[:, :, 2] - y), 0.877 * (rgb[:, :, 0] - y)


def _blocks(band: np.ndarray) -> tuple[np.ndarray, int, int]:
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    cut = band[: rows * BLOCK, : cols * BLOCK]
    return cut.reshape(rows, BLOCK, cols, BLOCK).swapaxes(1, 2).reshape(-1, BLOCK, BLOCK), rows, cols


def _key(count: int) -> np.ndarray:
    return np.random.default_rng(_KEY_SEED).integers(0, 2, count, dtype=np.uint8)


def _approximation(u: np.ndarray):
    height, width = (side // 2 * 2 for side in u.shape)
    return pywt.dwt2(u[:height, :width], "haar"), height, width


def embed(image: Image.Image, payload: int) -> Image.Image:
    """The image (RGB, same size) with ``payload`` hidden in it; one under MIN_SIDE comes back unchanged.

    ``payload`` must be 0 <= payload < 2**32 (see :func:`payload_for`).
    """
    if not 0 <= payload < 2**BITS:
        raise ValueError(f"payload must be 0..{2**BITS - 1}, got {payload}")
    if too_small(image):
        return image
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    y, u, v = _yuv(rgb)
    (approximation, details), height, width = _approximation(u)
    blocks, rows, cols = _blocks(approximation)
    wanted = np.resize(bits_of(payload), len(blocks)) ^ _key(len(blocks))
    left, singular, right = np.linalg.svd(dctn(blocks, axes=(1, 2), norm="ortho"))
    # Move the largest singular value to the quarter (bit 0) or three quarters (bit 1) of its step.
    singular[:, 0] = (singular[:, 0] // SCALE + 0.25 + 0.5 * wanted) * SCALE
    changed = idctn(left @ (singular[:, :, None] * right), axes=(1, 2), norm="ortho")
    approximation = approximation.copy()
    approximation[: rows * BLOCK, : cols * BLOCK] = (
        changed.reshape(rows, cols, BLOCK, BLOCK).swapaxes(1, 2).reshape(rows * BLOCK, cols * BLOCK)
    )
    u = u.copy()
    u[:height, :width] = pywt.idwt2((approximation, details), "haar")
    red = y + v / 0.877
    blue = y + u / 0.492
    green = (y - 0.299 * red - 0.114 * blue) / 0.587
    out = np.stack([red, green, blue], axis=-1)
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8), "RGB")


def read_votes(image: Image.Image) -> np.ndarray:
    """For each of the 32 bits, the share of its blocks voting 1 (0..1); the image must not be too small."""
    _, u, _ = _yuv(np.asarray(image.convert("RGB"), dtype=np.float64))
    (approximation, _), _, _ = _approximation(u)
    blocks, _, _ = _blocks(approximation)
    singular = np.linalg.svd(dctn(blocks, axes=(1, 2), norm="ortho"), compute_uv=False)
    votes = (singular[:, 0] % SCALE > SCALE / 2).astype(np.uint8) ^ _key(len(blocks))
    owner = np.arange(len(blocks)) % BITS
    return np.bincount(owner, votes, BITS) / np.bincount(owner, minlength=BITS)


def votes_per_bit(size: tuple[int, int]) -> int:
    """How many blocks vote for each bit (the fewest, where they do not divide evenly) at this size."""
    width, height = size
    return (width // 2 // BLOCK) * (height // 2 // BLOCK) // BITS


@lru_cache(maxsize=64)
def threshold_for(votes: int) -> float:
    """The confidence that says "marked" when each bit has ``votes`` blocks voting for it.

    THRESHOLD, unless random votes (an unmarked image) would come within NOISE_SIGMAS standard
    deviations of it: with 128 votes (512×512) random confidence is 0.070 ± 0.009, so 0.2 stands; with
    8 votes (128×128) it is 0.27 ± 0.04 and the threshold becomes 0.67.
    """
    agreement = np.abs(2 * np.arange(votes + 1) / votes - 1)
    weights = binom.pmf(np.arange(votes + 1), votes, 0.5)
    mean = float((agreement * weights).sum())
    spread = float(np.sqrt(((agreement - mean) ** 2 * weights).sum() / BITS))
    return max(THRESHOLD, round(mean + NOISE_SIGMAS * spread, 3))


def confidence_of(shares: np.ndarray) -> float:
    """How unanimous the votes are, 0..1: the mean over bits of |2 × share − 1|."""
    return float(np.abs(2 * shares - 1).mean())


def payload_of(shares: np.ndarray) -> int:
    """The 32 bits the votes read (majority per bit), most significant first."""
    value = 0
    for share in shares:
        value = (value << 1) | int(share > 0.5)
    return value


def detect(image: Image.Image, known: Mapping[int, str] | None = None) -> WatermarkReading:
    """Read the watermark: whether a mark is there, its payload, and which ``known`` item it names.

    ``known`` maps payloads to item ids (the store's ``images.watermark`` to the image's id).
    """
    reason = too_small(image)
    if reason:
        return WatermarkReading(False, None, 0.0, None, METHOD, reason=reason)
    shares = read_votes(image)
    confidence = confidence_of(shares)
    threshold = threshold_for(votes_per_bit(image.size))
    found = confidence >= threshold
    reading = WatermarkReading(found, payload_of(shares), round(confidence, 4), None, METHOD, threshold=threshold)
    if reading.found and known:
        reading.item, reading.bit_errors, reading.reason = match(reading.payload, known)
    return reading


def match(payload: int, known: Mapping[int, str]) -> tuple[str | None, int | None, str]:
    """(item, bit errors, reason): the single nearest known payload within MAX_BIT_ERRORS bits."""
    if payload in known:
        return known[payload], 0, ""
    near = [(bin(payload ^ other).count("1"), item) for other, item in known.items()]
    near = [(errors, item) for errors, item in near if errors <= MAX_BIT_ERRORS]
    if not near:
        return None, None, f"the payload matches no known item within {MAX_BIT_ERRORS} bit(s)"
    best = min(errors for errors, _ in near)
    items = [item for errors, item in near if errors == best]
    if len(items) > 1:
        return None, best, f"the payload is equally near {len(items)} items: " + ", ".join(sorted(items))
    return items[0], best, ""
