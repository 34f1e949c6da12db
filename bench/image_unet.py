"""One full-size UNet step under each image optimization, timed by CPU time on one thread.

    .venv/bin/python bench/image_unet.py                # SD 1.5 architecture, 512×512, 2 rounds (~6 min)

bench/image.py times whole images by the wall clock, which other work on the machine changes several times
over. This times one UNet forward of the full-size SD 1.5 architecture (random weights,
bench/results/sd15-random, built by bench/image.py) at 512×512 with batch 2 (a step with CFG), on one
torch thread, by that thread's CPU time (``time.thread_time``): other processes change it far less, as
one thread never waits for another. The variants take turns, round by round, on the same module:
plain, channels_last, fused QKV, both, token merging 0.3 and 0.5 (tomesd as A1111 applies it). Printed:
CPU seconds, median (min–max) over the rounds, and plain's ÷ the variant's (the speed-up).

    .venv/bin/python bench/image_unet.py --openvino     # PyTorch against OpenVINO, one thread each (~8 min)

``--openvino`` times, instead, the plain UNet against the engine's OpenVINO UNet (engines/sd_openvino.py,
through the same wrapper the engine calls, converted into bench/results/openvino once), each on one
thread, by the process's CPU time (OpenVINO computes on a worker thread of its own, not the caller's),
round by round interleaved; it prints the largest difference between the two predictions too.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))

VARIANTS = {  # name: (channels_last, fused QKV, token merging ratio)
    "plain": (False, False, 0.0),
    "channels_last": (True, False, 0.0),
    "fused QKV": (False, True, 0.0),
    "channels_last + fused QKV": (True, True, 0.0),
    "token merging 0.3": (False, False, 0.3),
    "token merging 0.5": (False, False, 0.5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=BENCH / "results" / "sd15-random")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--openvino", action="store_true", help="PyTorch against OpenVINO, one thread each")
    args = parser.parse_args()
    if args.openvino:
        return openvino_rows(args)
    import tomesd
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(1)
    unet = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet").eval()
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 64, 64, generator=generator)
    timestep = torch.tensor([500, 500])
    context = torch.randn(2, 77, 768, generator=generator)
    fused = False
    with torch.inference_mode():
        unet(latents, timestep, context)  # every weight page read once, outside the timing
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds):
        for name, (channels_last, fuse, ratio) in VARIANTS.items():
            unet.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            if fuse != fused:
                (unet.fuse_qkv_projections if fuse else unet.unfuse_qkv_projections)()
                fused = fuse
            tomesd.remove_patch(unet)
            if ratio:
                tomesd.apply_patch(unet, ratio=ratio, use_rand=False, sx=2, sy=2)
            with torch.inference_mode():
                unet(latents[:, :, :16, :16], timestep, context)  # oneDNN's primitives for this layout
                started = time.thread_time()
                unet(latents, timestep, context)
                times[name].append(time.thread_time() - started)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    tomesd.remove_patch(unet)
    print_table(times, "plain")


def print_table(times: dict[str, list[float]], baseline: str) -> None:
    """CPU seconds per variant, median (min–max), and the baseline's median ÷ the variant's."""
    plain = statistics.median(times[baseline])
    print("\n| UNet forward, 512×512, batch 2, 1 thread | CPU s | speed-up |")
    print("|---|---:|---:|")
    for name, values in times.items():
        middle = statistics.median(values)
        print(f"| {name} | {middle:.2f} ({min(values):.2f}–{max(values):.2f}) | {plain / middle:.2f} |")


def openvino_rows(args) -> None:
    from types import SimpleNamespace

    from diffusers import AutoencoderKL, UNet2DConditionModel

    from aigc_studio.engines.sd_openvino import OpenVINOModules

    torch.set_num_threads(1)
    unet = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(args.model, subfolder="vae").eval()
    modules = OpenVINOModules(SimpleNamespace(unet=unet, vae=vae), args.model, BENCH / "results" / "openvino", 1)
    started = time.perf_counter()
    modules.prepare()
    print(
        f"OpenVINO {modules.version}: ready in {time.perf_counter() - started:.1f} s ({modules.state})", file=sys.stderr
    )
    if not modules.ready:
        sys.exit("OpenVINO could not take the UNet (see the log line above)")
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 64, 64, generator=generator)
    timestep = torch.tensor(500.0)
    context = torch.randn(2, 77, 768, generator=generator)
    times: dict[str, list[float]] = {"PyTorch": [], "OpenVINO": []}
    outputs = {}
    with torch.inference_mode():
        for round_ in range(args.rounds + 1):  # round 0 reads every weight page and makes the kernels: untimed
            for name in times:
                with modules.unet(unet) if name == "OpenVINO" else contextlib.nullcontext():
                    began = time.process_time()
                    outputs[name] = unet(latents, timestep, context, return_dict=False)[0]
                    if round_:
                        times[name].append(time.process_time() - began)
            print(f"round {round_}/{args.rounds} done", file=sys.stderr)
    print_table(times, "PyTorch")
    difference = (outputs["PyTorch"] - outputs["OpenVINO"]).abs()
    size = outputs["PyTorch"].abs().mean()
    print(f"\nlargest difference of the predictions: {difference.max():.2e} (their mean size {size:.3f})")


if __name__ == "__main__":
    main()
