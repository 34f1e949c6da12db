"""The invisible watermark, measured: robustness, false positives, cost and image quality.

    python bench/labels.py --images 50 --rounds 3 [--json out.json]

Two methods on the same 512×512 images:

- ``dwtDctSvd-32`` (``--methods studio``): the studio's, ``aigc_studio.labels.watermark``: the method of
  invisible-watermark's ``dwtDctSvd`` written with PyWavelets, scipy and numpy (OpenCV is not installed),
  one Haar level on the U channel, 4×4 blocks, the largest singular value of each block's DCT quantised
  (step 36), bits and a balanced key in a 16×16-block tile that repeats, and a search over grid offsets
  and tile shifts when the grid does not read unanimously (a crop);
- ``rivagan-32@128`` (``--methods rivagan``, rejected): RivaGAN's ONNX networks on a 128×128 copy, the
  change scaled back up.

Natural images: photos shipped inside installed packages (gradio's sample pictures), cut into different
512×512 crops at several scales and mirrored, since nothing may be downloaded. Synthetic images (flat
colours, gradients, text, stripes) are the hard case, reported apart. Attacks: none, JPEG 90/75/50,
resize to 50% and back, a 10% crop (5% off every side, not undone), WebP 80. Each marked image carries a
different payload (``payload_for`` of a made-up id). "found" uses each method's own confidence and
threshold; false positives are "found" on unmarked images.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from dataclasses import dataclass
from math import comb
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aigc_studio.labels import watermark

SIDE = 512
ATTACKS = ["none", "jpeg90", "jpeg75", "jpeg50", "resize50", "crop10", "webp80"]
FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"


def photo_sources() -> list[Path]:
    """Photos that ship inside installed packages (no download): gradio's sample pictures."""
    import gradio

    root = Path(gradio.__file__).parent
    names = ["media_assets/images/cheetah.jpg", "media_assets/images/cheetah1.jpg", "media_assets/images/lion.jpg"]
    names += ["media_assets/images/groot.jpeg", "media_assets/images/tower.jpg", "test_data/cheetah2.jpg"]
    return [root / name for name in names if (root / name).is_file()]


def natural_images(count: int) -> list[tuple[str, Image.Image]]:
    """``count`` 512×512 views of the shipped photos: crops of several sizes and places, some mirrored."""
    photos = [(path.stem, Image.open(path).convert("RGB")) for path in photo_sources()]
    if not photos:
        raise SystemExit("no sample photos found (gradio's media_assets); the bench needs them")
    views = []
    fractions = [1.0, 0.8, 0.6, 0.9, 0.7, 0.5, 0.85, 0.65, 0.75, 0.55]
    places = [(0.5, 0.5), (0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.3, 0.7), (0.7, 0.3), (0.5, 0.0)]
    index = 0
    while len(views) < count:
        name, photo = photos[index % len(photos)]
        variant = index // len(photos)
        width, height = photo.size
        side = int(min(width, height) * fractions[variant % len(fractions)])
        fx, fy = places[variant % len(places)]
        left, top = int((width - side) * fx), int((height - side) * fy)
        view = photo.crop((left, top, left + side, top + side)).resize((SIDE, SIDE), Image.LANCZOS)
        if variant % 2:
            view = view.transpose(Image.FLIP_LEFT_RIGHT)
        views.append((f"{name}-{variant}", view))
        index += 1
    return views


def synthetic_images(count: int) -> list[tuple[str, Image.Image]]:
    """Flat colours, gradients, text and stripes: little texture to hide a mark in."""
    makers = []
    for colour in [(255, 255, 255), (0, 0, 0), (128, 128, 128), (200, 40, 40), (30, 90, 200)]:
        makers.append((f"flat-{colour[0]}-{colour[1]}-{colour[2]}", lambda c=colour: Image.new("RGB", (SIDE,) * 2, c)))
    ramp = np.linspace(0, 255, SIDE, dtype=np.float32)
    makers.append(
        ("gradient-h", lambda: Image.fromarray(np.repeat(ramp[None, :, None], SIDE, 0).repeat(3, 2).astype(np.uint8)))
    )
    makers.append(
        ("gradient-v", lambda: Image.fromarray(np.repeat(ramp[:, None, None], SIDE, 1).repeat(3, 2).astype(np.uint8)))
    )

    def text(dark: bool) -> Image.Image:
        image = Image.new("RGB", (SIDE,) * 2, (20, 20, 20) if dark else (250, 250, 245))
        draw = ImageDraw.Draw(image)
        font = ImageFont.truetype(FONT, 28) if Path(FONT).is_file() else ImageFont.load_default()
        for row in range(14):
            draw.text(
                (16, 12 + row * 36),
                f"Line {row}: 本文由人工智能生成 The quick brown fox",
                fill=(230,) * 3 if dark else (10,) * 3,
                font=font,
            )
        return image

    makers.append(("text-light", lambda: text(False)))
    makers.append(("text-dark", lambda: text(True)))
    stripes = (np.indices((SIDE, SIDE)).sum(0) // 16 % 2 * 255).astype(np.uint8)
    makers.append(("stripes", lambda: Image.fromarray(np.stack([stripes] * 3, -1))))
    return [(name, make()) for name, make in makers[:count]]


def attack(image: Image.Image, name: str) -> Image.Image:
    """The image after one everyday change."""
    if name == "none":
        return image
    if name.startswith(("jpeg", "webp")):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG" if name.startswith("jpeg") else "WEBP", quality=int(name[4:]))
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if name == "resize50":
        return image.resize((image.width // 2, image.height // 2), Image.BICUBIC).resize(image.size, Image.BICUBIC)
    if name == "crop10":
        dx, dy = image.width // 20, image.height // 20
        return image.crop((dx, dy, image.width - dx, image.height - dy))
    raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")


@dataclass
class Read:
    bits: np.ndarray  # 0/1 per bit
    confidence: float


class Studio:
    """The studio's method: ``aigc_studio.labels.watermark`` (DWT-DCT-SVD with a block key)."""

    name = watermark.METHOD
    threshold = watermark.THRESHOLD

    def embed(self, image: Image.Image, payload: int) -> Image.Image:
        return watermark.embed(image, payload)

    def read(self, image: Image.Image) -> Read:
        shares, _ = watermark.read_shares(image)
        return Read((shares > 0.5).astype(np.uint8), watermark.confidence_of(shares))


def rivagan_folder() -> Path:
    """Where RivaGAN's .onnx files are: setup.sh --dev puts invisible-watermark in .venv/share/rivagan (out
    of site-packages, where diffusers would import it and fail without OpenCV); else an installed copy."""
    import importlib.util

    private = Path(sys.prefix) / "share" / "rivagan" / "imwatermark"
    if (private / "rivagan_encoder.onnx").is_file():
        return private
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("RivaGAN's networks are missing: run `bash setup.sh --dev` (or pass --methods studio)")
    return Path(spec.submodule_search_locations[0])


class Rivagan:
    """RivaGAN's 32-bit ONNX networks (shipped in invisible-watermark) on a 128×128 copy of the image.

    The encoder's change to the copy is scaled up and added to the full image; the decoder reads a
    128×128 copy and gives one logit per bit. 128 is the largest size within the time budget here (the
    networks cost grows with the area: ~0.4 s each way at 256, seconds at 512).
    """

    name = "rivagan-32@128"
    side = 128
    cap = 8.0  # confidence: mean of |logit| capped here, over the cap
    threshold = 0.5

    def __init__(self) -> None:

        import onnxruntime

        folder = rivagan_folder()
        providers = ["CPUExecutionProvider"]
        self.encoder = onnxruntime.InferenceSession(str(folder / "rivagan_encoder.onnx"), providers=providers)
        self.decoder = onnxruntime.InferenceSession(str(folder / "rivagan_decoder.onnx"), providers=providers)

    @staticmethod
    def _frame(pixels: np.ndarray) -> np.ndarray:
        # invisible-watermark feeds OpenCV's BGR frames, [batch, 3, 1, H, W] in -1..1
        bgr = pixels[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
        return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None, :, None])

    def _small(self, image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB").resize((self.side,) * 2, Image.BICUBIC), dtype=np.float32)

    def embed(self, image: Image.Image, payload: int) -> Image.Image:
        rgb = image.convert("RGB")
        small = self._small(rgb)
        data = watermark.bits_of(payload).astype(np.float32)[None]
        out = self.encoder.run(None, {"frame": self._frame(small), "data": data})[0]
        change = (np.clip(out[0, :, 0].transpose(1, 2, 0)[:, :, ::-1], -1, 1) + 1) * 127.5 - small
        layers = [
            Image.fromarray(np.ascontiguousarray(change[:, :, c]), "F").resize(rgb.size, Image.BICUBIC)
            for c in range(3)
        ]
        full = np.stack([np.asarray(layer) for layer in layers], -1)
        return Image.fromarray(np.clip(np.asarray(rgb, dtype=np.float32) + full, 0, 255).round().astype(np.uint8))

    def read(self, image: Image.Image) -> Read:
        logits = self.decoder.run(None, {"frame": self._frame(self._small(image))})[0][0]
        return Read((logits > 0).astype(np.uint8), float(np.minimum(np.abs(logits), self.cap).mean() / self.cap))


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def measure(method, natural, synthetic, rounds: int) -> dict:
    """Every number the README's table shows, for one method."""
    by_attack = {name: {"accuracy": [], "found": [], "exact": [], "confidence": []} for name in ATTACKS}
    psnrs = []
    for index, (_, image) in enumerate(natural):
        payload = watermark.payload_for(f"bench-{index}")
        marked = method.embed(image, payload)
        psnrs.append(psnr(image, marked))
        truth = watermark.bits_of(payload)
        for name in ATTACKS:
            read = method.read(attack(marked, name))
            row = by_attack[name]
            row["accuracy"].append(float((read.bits == truth).mean()))
            row["found"].append(read.confidence >= method.threshold)
            row["exact"].append(bool((read.bits == truth).all()))
            row["confidence"].append(read.confidence)
    unmarked = {"natural": [], "synthetic": []}
    for group, images in (("natural", natural), ("synthetic", synthetic)):
        for _, image in images:
            unmarked[group].append(method.read(image).confidence)
    sample = natural[0][1]
    method.read(method.embed(sample, 1))  # warm-up: the first ONNX run allocates
    embed_ms, detect_ms, unmarked_ms = [], [], []
    for round_ in range(rounds):
        start = time.perf_counter()
        marked = method.embed(sample, watermark.payload_for(f"round-{round_}"))
        embed_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        method.read(marked)
        detect_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        method.read(sample)
        unmarked_ms.append((time.perf_counter() - start) * 1000)
    return {
        "method": method.name,
        "threshold": method.threshold,
        "attacks": {
            name: {
                "accuracy_mean": statistics.mean(row["accuracy"]),
                "accuracy_min": min(row["accuracy"]),
                "found_rate": statistics.mean(row["found"]),
                "exact_rate": statistics.mean(row["exact"]),
                "confidence_min": min(row["confidence"]),
            }
            for name, row in by_attack.items()
        },
        "false_positives": {
            group: {
                "images": len(values),
                "found": sum(v >= method.threshold for v in values),
                "confidence_max": max(values, default=0.0),
            }
            for group, values in unmarked.items()
        },
        "psnr_mean": statistics.mean(psnrs),
        "psnr_min": min(psnrs),
        "embed_ms": embed_ms,
        "detect_ms": detect_ms,
        "detect_unmarked_ms": unmarked_ms,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def report(result: dict) -> str:
    """One method's results as Markdown tables."""
    lines = [f"### {result['method']} (found: confidence >= {result['threshold']})", ""]
    lines.append("| attack | bit accuracy mean | min | found | all 32 bits right | lowest confidence |")
    lines.append("|---|---|---|---|---|---|")
    for name, row in result["attacks"].items():
        lines.append(
            f"| {name} | {row['accuracy_mean']:.1%} | {row['accuracy_min']:.1%} | {row['found_rate']:.0%} "
            f"| {row['exact_rate']:.0%} | {row['confidence_min']:.2f} |"
        )
    lines.append("")
    for group, row in result["false_positives"].items():
        lines.append(
            f"- unmarked {group}: {row['found']} of {row['images']} found "
            f"(highest confidence {row['confidence_max']:.2f})"
        )
    lines.append(f"- PSNR marked vs original: mean {result['psnr_mean']:.1f} dB, min {result['psnr_min']:.1f} dB")
    lines.append(
        f"- at 512×512, ms median (min-max) over {len(result['embed_ms'])} rounds: "
        f"embed {spread(result['embed_ms'])}, detect {spread(result['detect_ms'])}, "
        f"detect an unmarked image {spread(result['detect_unmarked_ms'])}"
    )
    return "\n".join(lines)


def theory() -> str:
    """The rates that need no measurement: random bits and payload collisions."""
    items = 100_000
    within = [sum(comb(32, i) for i in range(k + 1)) for k in range(3)]
    lines = ["### Theory (random bits, 32-bit payloads)", ""]
    lines.append("- a c-bit check code passes random bits with probability 2^-c: 8 bits 0.39%, 16 bits 0.0015%")
    for k, count in enumerate(within):
        lines.append(f"- a random read within {k} bit(s) of one of {items:,} items: {items * count / 2**32:.3%}")
    lines.append(f"- two of {items:,} items sharing a payload: expected pairs {items * (items - 1) / 2 / 2**32:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50, help="natural (photo) images, at least 1")
    parser.add_argument("--synthetic", type=int, default=10, help="synthetic images (0-10)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds per method")
    parser.add_argument("--methods", default="studio,rivagan", help="comma-separated: studio, rivagan")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.images < 1 or args.rounds < 1:
        parser.error(f"--images and --rounds must be at least 1, got {args.images} and {args.rounds}")
    known = {"studio": Studio, "rivagan": Rivagan}
    names = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(known)}")
    natural = natural_images(args.images)
    synthetic = synthetic_images(args.synthetic)
    print(f"{len(natural)} natural and {len(synthetic)} synthetic 512×512 images, {args.rounds} timing rounds")
    results = {}
    for name in names:
        results[name] = measure(known[name](), natural, synthetic, args.rounds)
        print()
        print(report(results[name]), flush=True)
    print()
    print(theory())
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
