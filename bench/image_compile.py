"""What ``torch.compile`` of the UNet costs and gives, image by image, on the full-size SD 1.5 architecture.

    .venv/bin/python bench/image_compile.py                       # sd15, 4 steps: about 20 min on 2 cores
    .venv/bin/python bench/image_compile.py --model tiny --steps 4 --sizes 64x64,64x64,96x64

Three processes, one after another, each loading the model and answering the same list of images
(``--sizes``, width×height, in order; the same seed):

  eager         the engine as it runs uncompiled
  compile cold  the engine with ``compile`` on and an empty inductor cache (TORCHINDUCTOR_CACHE_DIR)
  compile warm  the same, a new process on the cache the cold one left: a server's restart

For each image: seconds in all, seconds per denoising step (from the step callbacks, first step's end
to last's), and whether it recompiled (dynamo's count of compiled frames went up). The first image of a
compiling process pays the compile; a size it has not seen may pay a recompile. Writes every sample to
bench/results/image_compile-<model>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT, NEGATIVE = "a lighthouse on a cliff at dusk, oil painting", "blurry, text"


def worker(model: str, compile_: bool, steps: int, sizes: list[tuple[int, int]]) -> None:
    """One process: load, then each image in turn; a JSON line per image on stdout."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import torch

    from aigc_studio.contracts import ImageRequest
    from aigc_studio.engines.diffusers_engine import DiffusersEngine
    from aigc_studio.engines.sd_speed import ImageSpeed

    started = time.perf_counter()
    engine = DiffusersEngine("bench", Path(model), speed=ImageSpeed(compile=compile_))
    answers.write(json.dumps({"load": time.perf_counter() - started, "threads": torch.get_num_threads()}) + "\n")

    def frames() -> int:
        try:
            from torch._dynamo.utils import counters

            return int(counters["stats"]["unique_graphs"])
        except Exception:
            return -1

    for width, height in sizes:
        marks: list[float] = []
        phases: list[str] = []

        def on_step(info, marks=marks, phases=phases) -> None:
            if info.phase:
                phases.append(info.phase)
            else:
                marks.append(time.perf_counter())

        before = frames()
        t0 = time.perf_counter()
        engine.generate(
            ImageRequest(
                prompt=PROMPT,
                negative_prompt=NEGATIVE,
                steps=steps,
                sampler_name="Euler a",
                cfg_scale=7,
                width=width,
                height=height,
                seed=1234,
                subseed=1234,
            ),
            "txt2img",
            on_step=on_step,
        )
        total = time.perf_counter() - t0
        step = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else None
        answers.write(
            json.dumps(
                {
                    "size": f"{width}x{height}",
                    "total": total,
                    "first_step_end": marks[0] - t0 if marks else None,
                    "step": step,
                    "new_graphs": frames() - before,
                    "announced": phases,
                }
            )
            + "\n"
        )


def run(model: Path, compile_: bool, steps: int, sizes: str, cache: Path, log: Path) -> list[dict]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    command = [sys.executable, __file__, "--worker", str(model), "--steps", str(steps), "--sizes", sizes]
    if compile_:
        command.append("--compile")
    with log.open("a") as err:
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=err, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", dest="choice", default="sd15", help="sd15 (default), tiny, or a diffusers folder")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sizes", default="512x512,512x512,512x768,512x768")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    if args.worker:
        worker(args.model, args.compile, args.steps, sizes)
        return

    from image import model_folder  # bench/image.py: the same models

    work = Path(tempfile.mkdtemp(prefix="aigc-compile-bench-"))
    model, label = model_folder(args.choice, work)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / "logs" / f"image_compile-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cache = work / "inductor-cache"
    rows = {}
    for name, compile_ in (("eager", False), ("compile cold", True), ("compile warm", True)):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows[name] = run(model, compile_, args.steps, args.sizes, cache, log)

    print(f"\n{label}, {args.steps} steps, Euler a, seed 1234; one process per row, one after another\n")
    print("| process | load s | " + " | ".join(f"image {i + 1}: {w}×{h}" for i, (w, h) in enumerate(sizes)) + " |")
    print("|---|---:|" + "---:|" * len(sizes))
    for name, answers in rows.items():
        head, images = answers[0], answers[1:]
        cells = []
        for image in images:
            step = f"{image['step']:.2f} s/step" if image["step"] else "-"
            again = ", compiled" if image["new_graphs"] > 0 else ""
            cells.append(f"{image['total']:.1f} s ({step}{again})")
        print(f"| {name} | {head['load']:.1f} | " + " | ".join(cells) + " |")
    eager = rows["eager"][1:]
    for name in ("compile cold", "compile warm"):
        ratios = [
            f"{e['step'] / c['step']:.2f}" if e["step"] and c["step"] else "-"
            for e, c in zip(eager, rows[name][1:], strict=True)
        ]
        print(f"\neager s/step ÷ {name} s/step, image by image: {', '.join(ratios)}")
    name = args.choice if args.choice in ("sd15", "tiny") else "model"
    out = RESULTS / f"image_compile-{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"model": label, "steps": args.steps, "sizes": args.sizes, "rows": rows}, indent=1))
    print(f"\nsamples: {out}")


if __name__ == "__main__":
    main()
