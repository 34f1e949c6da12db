"""Build the tiny Stable Diffusion models (every kind) for tests and benchmarks.

Usage: python scripts/build_tiny_models.py OUT_DIR [--seed N] [--kind sd15 --kind inpaint ...] [--sdxl]

For each kind it writes OUT_DIR/<name>/ (diffusers folder), OUT_DIR/<name>.safetensors (original
A1111 layout) and OUT_DIR/<name>-config/ (what loading the single file offline needs), and prints
the paths, their sizes and the build time. --sdxl adds OUT_DIR/tiny-sdxl/ (a diffusers folder only).
The same seed gives bit-identical files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs a hub; make any attempt fail fast
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_models

from tests.tiny_models import KINDS, build_tiny_sd, build_tiny_sdxl


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(size: int) -> str:
    return f"{size / 1024:.0f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.2f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the models into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed for every weight (default 0)")
    parser.add_argument(
        "--kind", action="append", choices=KINDS, help=f"kind to build, repeatable (default: all of {', '.join(KINDS)})"
    )
    parser.add_argument("--sdxl", action="store_true", help="also build a tiny SDXL (diffusers folder only)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    total = time.perf_counter()
    for kind in args.kind or KINDS:
        start = time.perf_counter()
        model = build_tiny_sd(args.out_dir, seed=args.seed, kind=kind)
        elapsed = time.perf_counter() - start
        print(f"{kind} ({model.pipeline_class.__name__}, seed {model.seed}): built in {elapsed:.1f} s")
        for label, path in (("folder", model.folder), ("single file", model.single_file), ("config", model.config_dir)):
            print(f"  {label:<12} {path}  {_human(_size(path))}")
    if args.sdxl:
        start = time.perf_counter()
        folder = build_tiny_sdxl(args.out_dir, seed=args.seed)
        print(f"sdxl (StableDiffusionXLPipeline, seed {args.seed}): built in {time.perf_counter() - start:.1f} s")
        print(f"  {'folder':<12} {folder}  {_human(_size(folder))}")
    print(f"all done in {time.perf_counter() - total:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
