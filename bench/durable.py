"""What durability costs: files written whole, and batches saved as each one finishes.

    .venv/bin/python bench/durable.py                              # tiny SD 1.x, 64×64, 10 steps, n_iter 4
    .venv/bin/python bench/durable.py --model sd15 --size 512 --steps 4 --rounds 2      # full size

Two measurements, each interleaving its two variants round by round (so the machine's load falls on
both alike; compare the ratios):

  files    one file of ``--kb`` KiB (default 400, about a labeled 512×512 PNG) written with
           ``Path.write_bytes`` (before) and with ``storage.files.write_atomic`` (now: a hidden temporary
           name, fsync, rename, fsync of the folder), ``--files`` of each per round, in ``--folder``
           (default: a temporary folder under bench/results, the disk AIGC_HOME is usually on).
  batches  one request of ``--n-iter`` batches through the studio's ``DiffusersEngine.generate``: as one
           call (before) and as one call per batch with the seeds each batch has in the whole request
           (now: what ImageService does so that each batch is written and recorded as soon as it is
           made). The images of the two must be the same pixels; the bench checks it.

Reported: milliseconds per file and seconds per request, median (min–max) over the rounds, and the
ratio now ÷ before of each round. Writes the samples to bench/results/durable-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH.parent))  # tests.tiny_models
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from image import model_folder  # noqa: E402
from procs import fmt, spread  # noqa: E402

PROMPT, NEGATIVE = "a lighthouse on a cliff at dusk, oil painting", "blurry, text"


def bench_files(folder: Path, kb: int, count: int, rounds: int) -> dict[str, list[float]]:
    """Milliseconds per file, per round, for each way of writing."""
    from aigc_studio.storage.files import write_atomic

    data = os.urandom(kb * 1024)
    samples: dict[str, list[float]] = {"before": [], "now": []}
    for _ in range(rounds):
        for variant in ("before", "now"):
            started = time.perf_counter()
            for i in range(count):
                path = folder / f"{variant}-{i}.png"
                if variant == "before":
                    path.write_bytes(data)
                else:
                    write_atomic(path, data)
            samples[variant].append((time.perf_counter() - started) * 1000 / count)
    return samples


def bench_batches(model: Path, size: int, steps: int, n_iter: int, rounds: int, threads: int) -> dict:
    """Seconds per request for the whole request at once and for one call per batch; the pixel check."""
    import numpy as np
    import torch

    from aigc_studio.contracts import ImageRequest
    from aigc_studio.engines.diffusers_engine import DiffusersEngine

    torch.set_num_threads(threads)
    engine = DiffusersEngine("bench", model)
    request = ImageRequest(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        width=size,
        height=size,
        steps=steps,
        cfg_scale=7,
        sampler_name="Euler a",
        seed=1234,
        subseed=99,
        n_iter=n_iter,
    )
    engine.generate(request.model_copy(update={"n_iter": 1, "steps": 1}), "txt2img")  # warm-up
    samples: dict = {"before": [], "now": [], "max_pixel_difference": 0}
    for _ in range(rounds):
        started = time.perf_counter()
        whole = engine.generate(request, "txt2img").images
        samples["before"].append(time.perf_counter() - started)
        started = time.perf_counter()
        split = []
        for k in range(n_iter):
            batch = request.model_copy(update={"n_iter": 1, "seed": request.seed + k, "subseed": request.subseed + k})
            split += engine.generate(batch, "txt2img").images
        samples["now"].append(time.perf_counter() - started)
        for a, b in zip(whole, split, strict=True):
            difference = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max()
            samples["max_pixel_difference"] = max(samples["max_pixel_difference"], int(difference))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny, sd15 (full size, random weights) or a diffusers folder")
    parser.add_argument("--size", type=int, default=64, help="width and height")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--n-iter", type=int, default=4, help="batches in the request")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kb", type=int, default=400, help="size of each file written")
    parser.add_argument("--files", type=int, default=40, help="files of each kind per round")
    parser.add_argument("--folder", type=Path, help="where the files are written (default: under bench/results)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    args.results.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="durable-", dir=args.folder or args.results))
    try:
        files = bench_files(work, args.kb, args.files, args.rounds)
        model, label = model_folder(args.model, work)
        batches = bench_batches(model, args.size, args.steps, args.n_iter, args.rounds, args.threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    print(f"\n{platform.node()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{args.rounds} rounds; model {label}, {args.size}×{args.size}, {args.steps} steps, n_iter {args.n_iter}\n")
    file_ratio = [n / b for n, b in zip(files["now"], files["before"], strict=True)]
    batch_ratio = [n / b for n, b in zip(batches["now"], batches["before"], strict=True)]
    print("| measurement | before | now | now ÷ before |")
    print("|---|---:|---:|---:|")
    print(
        f"| one {args.kb} KiB file, ms (write_bytes; write_atomic) | {fmt(spread(files['before']), 2)} "
        f"| {fmt(spread(files['now']), 2)} | {fmt(spread(file_ratio), 2)} |"
    )
    print(
        f"| {args.n_iter} batches, s (one call; one call per batch) | {fmt(spread(batches['before']), 2)} "
        f"| {fmt(spread(batches['now']), 2)} | {fmt(spread(batch_ratio), 3)} |"
    )
    print(f"\nlargest pixel difference between the two ways of making the batches: {batches['max_pixel_difference']}")
    out = args.results / f"durable-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args) | {"folder": str(args.folder), "results": str(args.results)},
                "load": load,
                "files": files,
                "batches": batches,
            },
            indent=1,
        )
    )
    print(f"samples: {out}")
    if batches["max_pixel_difference"]:
        sys.exit("the batches made one call per batch differ from the whole request's: see above")


if __name__ == "__main__":
    main()
