"""What labels inside image files cost: bytes added and time to write and read, at 512×512.

    .venv/bin/python bench/label_files.py             # 20 runs per row (~30 s on 2 cores)
    .venv/bin/python bench/label_files.py --runs 50

For PNG, JPEG (quality 90) and WebP (quality 90), one picture (a gradient blended with noise, so lossy
formats compress it as they would a photo) is encoded with ``labels/embed.py encode_image``:

  infotext only      the A1111 parameters alone (what the studio writes today, labels off);
  + AIGC + XMP       the same plus the TC260 label (ReservedCode1 given) and the IPTC source type;
  + digest           the same with ReservedCode1 left empty, so the writer computes the pixel digest
                     (for JPEG and WebP this encodes twice: the digest is of the pixels as decoded).

It prints the file sizes, the bytes the labels add, the median milliseconds to encode each way, and the
median milliseconds for ``read_image_labels`` (decode, metadata, digest) on the labelled file.
"""

from __future__ import annotations

import argparse
import statistics
import time

from PIL import Image

from aigc_studio.labels.aigc import SOURCE_CREATED, AigcLabel
from aigc_studio.labels.embed import encode_image, encoded_digest, read_image_labels

INFOTEXT = (
    "a cat sitting in a sunny garden, best quality\nNegative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: aigc-studio"
)


def _median_ms(runs: int, call, *args, **kwargs) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(*args, **kwargs)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per measurement (median reported)")
    args = parser.parse_args()

    noise = Image.effect_noise((512, 512), 40).convert("RGB")
    image = Image.blend(noise, Image.linear_gradient("L").resize((512, 512)).convert("RGB"), 0.5)
    print(
        f"{'format':6} {'infotext only':>14} {'+ labels':>10} {'added':>7} {'encode':>9} {'+ labels':>9}"
        f" {'+ digest':>9} {'read':>8}"
    )
    for fmt in ("png", "jpeg", "webp"):
        label = AigcLabel(
            "AIGC-Studio", "3f2a9c1e-7b4d-4e1a-9a55-0c2d8e6f1b23", reserved_code1=encoded_digest(image, fmt)
        )
        plain = encode_image(image, fmt, infotext=INFOTEXT, aigc=None, source_type=None)
        labelled = encode_image(image, fmt, infotext=INFOTEXT, aigc=label, source_type=SOURCE_CREATED)
        assert read_image_labels(labelled).integrity == "match"
        unlabelled_ms = _median_ms(args.runs, encode_image, image, fmt, infotext=INFOTEXT, aigc=None, source_type=None)
        labelled_ms = _median_ms(
            args.runs, encode_image, image, fmt, infotext=INFOTEXT, aigc=label, source_type=SOURCE_CREATED
        )
        bare = AigcLabel(label.content_producer, label.produce_id)
        digest_ms = _median_ms(
            args.runs, encode_image, image, fmt, infotext=INFOTEXT, aigc=bare, source_type=SOURCE_CREATED
        )
        read_ms = _median_ms(args.runs, read_image_labels, labelled)
        print(
            f"{fmt:6} {len(plain):>14,} {len(labelled):>10,} {len(labelled) - len(plain):>7,}"
            f" {unlabelled_ms:>7.1f}ms {labelled_ms:>7.1f}ms {digest_ms:>7.1f}ms {read_ms:>6.1f}ms"
        )


if __name__ == "__main__":
    main()
