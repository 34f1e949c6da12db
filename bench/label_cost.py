"""What labeling costs per image: the studio's labeling pipeline against writing the raw PNG.

    .venv/bin/python bench/label_cost.py              # 10 rounds at 512×512 (~15 s on 2 cores)
    .venv/bin/python bench/label_cost.py --rounds 30 --size 1024

The picture is the built-in 'plain' engine's output for a fixed prompt and seed (noise tinted by the
prompt: a worst case for PNG size, so the KB added by labels are small beside it). Every round:

  raw PNG     ``write_png`` of the raw pixels with the infotext: what the studio wrote before labels.
  pipeline    ``Labeler.label_image`` with every label on (the defaults: NSFW check with action blur at
              80%, visible mark, watermark, TC260/IPTC metadata, C2PA signature) on the same pixels and
              infotext: the whole call, and each stage as the labeler times it (nsfw, mark, watermark,
              metadata = encoding the PNG with infotext and labels, c2pa = signing it).

The first pipeline call, which loads the NSFW model and makes the C2PA keys under a temporary
AIGC_HOME, is timed apart and not in the rounds. KB added per stage come from one image, encoded after
each stage in turn (the mark and watermark change the pixels, so the PNG's size; metadata and C2PA add
chunks). Reported: milliseconds, median (min–max) over the rounds, and KB. Writes every sample to
bench/results/label_cost-<time>.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

from procs import fmt, spread  # noqa: E402

STAGES = ("nsfw", "mark", "watermark", "metadata", "c2pa")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="Measured rounds (default 10).")
    parser.add_argument("--size", type=int, default=512, help="Image side in pixels (default 512).")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Folder for the JSON samples.")
    args = parser.parse_args()
    if args.rounds < 1 or args.size < 64 or args.size % 8:
        parser.error(f"--rounds must be ≥ 1 and --size a multiple of 8 ≥ 64, got {args.rounds} and {args.size}")
    os.environ["AIGC_HOME"] = tempfile.mkdtemp(prefix="label-cost-")  # keys and settings: defaults, thrown away

    from aigc_studio.config import load_config
    from aigc_studio.contracts import ImageRequest
    from aigc_studio.engines.plain import PlainEngine
    from aigc_studio.images.infotext import format_infotext, params_from_request, write_png
    from aigc_studio.services.labeling import Labeler

    request = ImageRequest(prompt="a lighthouse at dusk", seed=1234, steps=1, width=args.size, height=args.size)
    raw = PlainEngine().generate(request, "txt2img").images[0]
    infotext = format_infotext(request.prompt, "", params_from_request(request.model_dump()))
    labeler = Labeler(load_config())

    def raw_png() -> bytes:
        buffer = io.BytesIO()
        write_png(raw, buffer, infotext)
        return buffer.getvalue()

    started = time.perf_counter()
    first = labeler.label_image(raw, produce_id="img-first", infotext=infotext, mode="txt2img")
    first_ms = (time.perf_counter() - started) * 1000

    samples: dict[str, list[float]] = {"raw PNG": [], "pipeline": [], **{stage: [] for stage in STAGES}}
    for index in range(args.rounds):
        started = time.perf_counter()
        raw_png()
        samples["raw PNG"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        labeled = labeler.label_image(raw, produce_id=f"img-{index:08x}", infotext=infotext, mode="txt2img")
        samples["pipeline"].append((time.perf_counter() - started) * 1000)
        for stage in STAGES:
            samples[stage].append(labeled.timings[stage])
    added = [p - r for p, r in zip(samples["pipeline"], samples["raw PNG"], strict=True)]

    sizes = _sizes_by_stage(labeler, raw, infotext, raw_png())
    stats = {name: spread(values) for name, values in samples.items()}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Labeling cost at {args.size}×{args.size}, {args.rounds} round(s), {os.cpu_count()} CPU cores, load {load}:")
    print()
    print("| step | ms, median (min–max) | KB added |")
    print("|---|---|---|")
    print(f"| raw PNG write (before labels) | {fmt(stats['raw PNG'])} | {sizes['raw'] / 1024:.1f} KB file |")
    for stage in STAGES:
        print(f"| {stage} | {fmt(stats[stage])} | {sizes[stage] / 1024:+.1f} |")
    print(f"| whole pipeline (label_image) | {fmt(stats['pipeline'])} | {sizes['total'] / 1024:+.1f} |")
    print(f"| added over the raw PNG write | {fmt(spread(added))} | {sizes['total'] / 1024:+.1f} |")
    print()
    print(f"First image (loads the NSFW model, makes the C2PA keys): {first_ms:.0f} ms.")
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"label_cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record = {
        "size": args.size,
        "rounds": args.rounds,
        "samples_ms": samples,
        "added_ms": added,
        "first_ms": first_ms,
        "load_average": os.getloadavg(),
        "bytes_added": sizes,
        "labels": first.record,
    }
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False))
    print(f"Samples: {path}")


def _sizes_by_stage(labeler, raw, infotext: str, raw_file: bytes) -> dict[str, int]:
    """Bytes each stage adds to the file, the stages applied one after another to one image as the
    labeler applies them (NSFW allows this picture: it adds nothing)."""
    from aigc_studio.labels import watermark
    from aigc_studio.labels.visible import mark_image

    def png(image) -> int:
        return len(labeler.encode(image, _record(False, False), produce_id="img-size", infotext=infotext))

    marked, _ = mark_image(raw, language="zh", position="bottom-right", opacity=80)
    watermarked = watermark.embed(marked, watermark.payload_for("img-size"))
    with_mark, with_watermark = png(marked), png(watermarked)
    with_metadata = len(labeler.encode(watermarked, _record(True, False), produce_id="img-size", infotext=infotext))
    signed = len(labeler.encode(watermarked, _record(True, True), produce_id="img-size", infotext=infotext))
    return {
        "raw": len(raw_file),
        "nsfw": 0,
        "mark": with_mark - len(raw_file),
        "watermark": with_watermark - with_mark,
        "metadata": with_metadata - with_watermark,
        "c2pa": signed - with_metadata,
        "total": signed - len(raw_file),
    }


def _record(metadata: bool, c2pa: bool) -> dict:
    from aigc_studio.services.labeling import source_type_for

    return {"metadata": metadata, "c2pa": c2pa, "source_type": source_type_for("txt2img")}


if __name__ == "__main__":
    main()
