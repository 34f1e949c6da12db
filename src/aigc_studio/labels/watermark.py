"""The invisible watermark: 32 bits derived from the item's id, hidden in the image's colour.

Method, chosen by measurement (``bench/labels.py``; the table is in the README): DWT-DCT-SVD, the idea of
invisible-watermark's ``dwtDctSvd``, written here with PyWavelets, scipy and numpy (that package needs
OpenCV, which the studio does not install). The U (blue-difference) channel gets one Haar wavelet level;
its approximation band is cut into 4×4 blocks; in each block the largest singular value of the block's
DCT is quantised (step :data:`SCALE`) to an odd or even half-step, which carries one bit. The blocks
form tiles of :data:`TILE`×TILE cells that repeat over the image; each cell carries one payload bit XOR
a fixed key bit, and each bit owns 8 cells of a tile, half with key 1. So every bit has many blocks
voting for it (128 at 512×512), a flat picture (all blocks alike) reads exactly undecided rather than a
unanimous all-zero mark, and a crop only moves the pattern: when the grid where it sits does not read
unanimously, :func:`search_votes` tries the 8×8 pixel offsets and 16×16 tile shifts a crop can leave.

The measured alternative, RivaGAN's 32-bit ONNX networks from the same package, was rejected: run on a
128×128 copy (the largest size that fits the time budget on 2 cores) it read all 32 bits back from only
64% of marked images even unchanged, and 6 of 50 unmarked photos looked as marked as marked ones; at full
size it is robust but takes seconds each way.

What it survives (measured at 512×512, README table): PNG, JPEG 90 and 75, WebP 80, resizing to half and
back, a 10% crop; JPEG 50 costs bits. Rotation, flips and other geometry lose it.

Payload: all 32 bits come from the id (:func:`payload_for`); none are spent on a check code. ``found``
is the votes' agreement (``confidence``, 0 on noise, 1 when every block agrees) at or above
:data:`THRESHOLD` (0.2), chosen from false positives measured on unmarked images: at 512×512 none of 50
photos and 10 synthetic pictures reached it (the highest read 0.10 where the grid sits, 0.12 at the best
of the search's 16,384 tries), and random votes give 0.070 ± 0.009 for one try, so the chance that
random votes reach 0.2 is about 1e-28 (exact binomial sum). A searched read must moreover reach
:data:`SURE` (0.4). Smaller images have fewer votes per bit and a raised threshold (:func:`threshold_for`).
A check code would add little: ``c`` check bits pass random bits with probability ``2**-c`` (8 bits:
1 in 256, far weaker than the vote test), and each check bit halves the id space that ``known`` matching relies on.

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
# Bits and key repeat in tiles of 16×16 blocks (128×128 pixels), so a crop only shifts the pattern.
TILE = 16
# A read less unanimous than this where the grid sits is tried at every pixel offset (8×8) and tile shift
# too: a crop moves the grid, and a grid one pixel off still reads up to ~0.25 of wrong bits, while an
# aligned mark after JPEG 75 reads 0.5 or more (measured).
SURE = 0.4
SEARCH_WINDOW = 512
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


@lru_cache(maxsize=1)
def _layout() -> tuple[np.ndarray, np.ndarray]:
    """(bit, key) for each cell of the TILE×TILE pattern of blocks that repeats over the image.

    Each bit owns TILE²/32 cells, half of them with key 1: a flat picture, whose blocks all vote alike,
    then reads exactly 0.5 for every bit (confidence 0) instead of a unanimous mark.
    """
    rng = np.random.default_rng(_KEY_SEED)
    bit = rng.permutation(np.arange(TILE * TILE) % BITS)
    key = np.zeros(TILE * TILE, dtype=np.uint8)
    per_bit = TILE * TILE // BITS
    for owner in range(BITS):
        cells = np.flatnonzero(bit == owner)
        key[cells] = rng.permutation(np.arange(per_bit) % 2)
    return bit, key


def _cells(rows: int, cols: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    r = (np.arange(rows)[:, None] + shift[0]) % TILE
    c = (np.arange(cols)[None, :] + shift[1]) % TILE
    return (r * TILE + c).ravel()


@lru_cache(maxsize=1)
def _shift_tables() -> tuple[np.ndarray, np.ndarray]:
    """For every cyclic shift of the tile: each seen cell's key, and its bit as a one-hot row."""
    bit, key = _layout()
    origin = np.array([_cells(TILE, TILE, (sy, sx)) for sy in range(TILE) for sx in range(TILE)])
    return key[origin], np.eye(BITS)[bit[origin]]


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
    bit, key = _layout()
    cells = _cells(rows, cols)
    wanted = bits_of(payload)[bit[cells]] ^ key[cells]
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


def _block_votes(u: np.ndarray) -> tuple[np.ndarray, int, int]:
    (approximation, _), _, _ = _approximation(u)
    blocks, rows, cols = _blocks(approximation)
    # The DCT of dwtDctSvd is orthonormal, so it leaves singular values as they are: read them directly.
    singular = np.linalg.svd(blocks, compute_uv=False)
    return (singular[:, 0] % SCALE > SCALE / 2).astype(np.uint8), rows, cols


def _u(image: Image.Image) -> np.ndarray:
    return _yuv(np.asarray(image.convert("RGB"), dtype=np.float64))[1]


def read_votes(image: Image.Image) -> np.ndarray:
    """For each of the 32 bits, the share of its blocks voting 1 (0..1), where the image's grid sits."""
    votes, rows, cols = _block_votes(_u(image))
    bit, key = _layout()
    cells = _cells(rows, cols)
    return np.bincount(bit[cells], votes ^ key[cells], BITS) / np.bincount(bit[cells], minlength=BITS)


def search_votes(image: Image.Image) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The most unanimous shares over every pixel offset (0-7 each way) and tile shift: for a cropped image.

    Returns the shares and (dy, dx, sy, sx): pixels skipped at the top and left (of the central
    SEARCH_WINDOW² window on larger images), tile rows and columns the pattern was shifted by. 64 reads
    of the blocks, so about 64 times :func:`read_votes` at 512×512.
    """
    u = _u(image)
    # The pattern repeats, so a window holds it all; it keeps the 64 reads to ~1 s on large images too.
    top, left = (max(0, (side - SEARCH_WINDOW) // 2) for side in u.shape)
    u = u[top : top + SEARCH_WINDOW, left : left + SEARCH_WINDOW]
    keys, owners = _shift_tables()
    best, where = None, (0, 0, 0, 0)
    best_confidence = -1.0
    step = 2 * BLOCK
    for dy in range(step):
        for dx in range(step):
            votes, rows, cols = _block_votes(u[dy:, dx:])
            seen = _cells(rows, cols)
            ones = np.bincount(seen, votes, TILE * TILE)
            count = np.bincount(seen, minlength=TILE * TILE).astype(np.float64)
            # per shift and seen cell: blocks reading 1 after the key
            flipped = np.where(keys == 1, count - ones, ones)
            shares = np.einsum("sc,scb->sb", flipped, owners) / np.einsum("c,scb->sb", count, owners)
            confidence = np.abs(2 * shares - 1).mean(axis=1)
            shift = int(confidence.argmax())
            if confidence[shift] > best_confidence:
                best_confidence = float(confidence[shift])
                best, where = shares[shift], (dy, dx, shift // TILE, shift % TILE)
    return best, where


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


def read_shares(image: Image.Image, search: bool = True) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The bits' shares where the grid sits or, when that is not unanimous (under SURE) and ``search``
    is on, where :func:`search_votes` finds them at least SURE; with where they were read."""
    shares = read_votes(image)
    if search and confidence_of(shares) < SURE:
        searched, where = search_votes(image)
        # Among 16,384 tries noise can beat a weak aligned mark (JPEG 50: measured), so a found offset
        # must be as sure as an aligned read would have to be to skip the search.
        if confidence_of(searched) >= SURE:
            return searched, where
    return shares, (0, 0, 0, 0)


def detect(image: Image.Image, known: Mapping[int, str] | None = None, *, search: bool = True) -> WatermarkReading:
    """Read the watermark: whether a mark is there, its payload, and which ``known`` item it names.

    ``known`` maps payloads to item ids (the store's ``images.watermark`` to the image's id). With
    ``search`` (default) an image whose grid does not read unanimously is also tried at every offset a
    crop could have left (about 1 s at 512×512 instead of 30 ms); unmarked images always take that path.
    """
    reason = too_small(image)
    if reason:
        return WatermarkReading(False, None, 0.0, None, METHOD, reason=reason)
    shares, _ = read_shares(image, search)
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
