"""C2PA cost per image: milliseconds to sign and to verify, and bytes added, at 512×512 PNG, JPEG and WebP.

    .venv/bin/python bench/credentials.py              # 10 runs per format (~10 s)
    .venv/bin/python bench/credentials.py --runs 30

The picture is a 512×512 gradient with noise (detail like a generation's, so PNG and JPEG sizes are
realistic), encoded once per format. Each run signs it with the studio-made CA (``Credentials.sign``,
c2pa.created, no ingredient) and reads it back with the CA as trust anchor (``read_credentials``).
The CA is made in a temporary folder before timing. Prints median (min–max) per format.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from aigc_studio.labels.aigc import SOURCE_CREATED
from aigc_studio.labels.credentials import Credentials, read_credentials


def picture(size: int = 512) -> Image.Image:
    """A gradient with noise: detail like a generated image's."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))], -1)
    pixels += np.random.default_rng(0).normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def summary(samples: list[float]) -> str:
    return f"{statistics.median(samples):7.1f} ({min(samples):.1f}–{max(samples):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        credentials = Credentials(Path(folder) / "c2pa")
        credentials.ensure()
        anchors = credentials.trust_anchors()
        print(f"{'format':6} {'file bytes':>10} {'added':>8}  {'sign ms':>22}  {'verify ms':>22}")
        for fmt, pil_format in (("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")):
            out = io.BytesIO()
            picture().save(out, pil_format, **({} if fmt == "png" else {"quality": 90}))
            data = out.getvalue()
            sign_ms, verify_ms, added = [], [], 0
            for run in range(args.runs):
                started = time.perf_counter()
                signed = credentials.sign(data, fmt, title="bench", source_type=SOURCE_CREATED, produce_id=str(run))
                sign_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                state = read_credentials(signed, fmt, anchors)
                verify_ms.append((time.perf_counter() - started) * 1000)
                if state.state != "trusted":
                    print(f"{fmt}: expected trusted, got {state.state}: {state.reason}", file=sys.stderr)
                    return 1
                added = len(signed) - len(data)
            print(f"{fmt:6} {len(data):>10} {added:>8}  {summary(sign_ms):>22}  {summary(verify_ms):>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
