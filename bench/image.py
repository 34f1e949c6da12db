"""Image generation speed: the studio against a pipeline diffusers builds itself, each in its own process.

    .venv/bin/python bench/image.py                       # tiny SD 1.x, 64×64, 20 steps, 5 runs (~2 min)
    .venv/bin/python bench/image.py --model sd15 --size 512 --steps 4 --runs 3      # full size (~16 min)
    .venv/bin/python bench/image.py --model sd15 --size 512 --steps 20 --runs 2 --group 3 \
        --variants raw,engine,channels-last,fused-qkv,tome               # the speed table (README "Speed")

Variants, with the same model folder, prompt, negative prompt, sampler (Euler a), CFG 7, steps, size and
seeds, each in a process of its own so that its peak memory is its own:

  raw            ``StableDiffusionPipeline.from_pretrained`` of the model folder, its scheduler replaced by
                 the class the studio runs for Euler a (A1111's: ``k_schedulers.A1111EulerAncestral``, an
                 ``EulerDiscreteScheduler`` with k-diffusion's ancestral step) made from the folder's
                 scheduler config, called with the prompt and a seeded ``torch.Generator``; images out as
                 PIL, as diffusers gives them.
  engine         the studio's ``DiffusersEngine.generate`` (prompt weighting, A1111's seeds and noise,
                 its own VAE decode) with its defaults (``engines/sd_speed.py``: torch threads at most
                 the physical cores, the VAE tiled above 1024² pixels).
  channels-last  the engine with the UNet's and VAE's weights channels_last (off by default).
  fused-qkv      the engine with fused QKV projections (off by default).
  tome           the engine's defaults plus token merging at ``--tome`` (default 0.5), opt-in.
  ngms           the engine's defaults plus A1111's Negative Guidance minimum sigma at ``--ngms`` (default
                 2): below that sigma every other UNet call runs the prompt alone (half the batch), opt-in.
  ngms-all       the same, skipping at every call below it (A1111's "NGMS all steps").
  compile        the engine's defaults plus ``torch.compile`` of the UNet, opt-in; its warm-up (1 step)
                 includes the compile, printed as "compile s".
  openvino       the engine's defaults plus OpenVINO for the UNet and the VAE's decoder (the setting
                 ``image_openvino``), opt-in; converted once into ``bench/results/openvino`` (its warm-up
                 includes the conversion or the read from that cache, and says which). With two threads
                 or more its UNet runs as two streams, one half of the guidance batch on each.
  openvino-1     the same with the UNet as one stream on all the threads (the engine before two streams).
  bf16           the engine's defaults inside ``torch.autocast("cpu", dtype=torch.bfloat16)``: measured,
                 not offered (see the README).
  studio API     ``POST /sdapi/v1/txt2img`` to ``aigc serve`` over HTTP: the whole request, including the
                 PNG files, history and the base64 answer. The server loads the default text model too
                 (SmolLM2), as a user's server does; its memory at start is printed beside its peak.

Each process loads the model once and answers a warm-up image (1 step); then the variants are interleaved
request by request (raw, studio engine, studio API, raw, ...). ``--group N`` runs the variants N at a
time (raw and N − 1 others, raw in every group) where memory holds no more full-size models at once
(each holds about 4-5 GB); ratios are taken against the raw run of the same group and round. While
one is measured the other processes are paused (SIGSTOP), so each runs alone on the machine: an idle
``aigc serve`` is not idle (Gradio's queue wakes every millisecond), and the bench prints each process's
CPU use while idle before pausing them.
The engine's and the raw pipeline's scheduler class and config are compared and printed.

Models (``--model``):
  tiny   a tiny SD 1.x built from the real diffusers classes (tests/tiny_models.py). Cheap, but it hides
         the real cost of a step: its UNet and VAE take milliseconds, so fixed costs per request dominate.
  sd15   the full-size SD 1.5 architecture (860M-parameter UNet, CLIP ViT-L text encoder, the VAE) with
         random weights, built from the reference configs the studio writes for single-file checkpoints
         (``sd_configs.reference_config_dir("sd15", ...)``), each component's ``from_config``, then
         ``save_pretrained``: about 4 GB, built once under bench/results/sd15-random (about a minute).
         Random weights cost the same per step as trained ones; the images are noise.
  PATH   any diffusers folder of an SD 1.x model.

Reported per variant: seconds per denoising step (from the step callbacks: time from the first step's
end to the last's, ÷ steps − 1), total seconds per image, the speed-up against the raw pipeline of the
same run (raw's time ÷ the variant's), the pixel difference from the raw pipeline's image of the same
seed (max and mean absolute difference of the 8-bit RGB values, over all images), time to the end of
the first step, time after the last step (VAE decode and what follows), the model's load time, and
peak RSS (VmHWM) of the process; median (min–max) over the runs. Writes every sample to
bench/results/image-<model>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH.parent))  # tests.tiny_models
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from procs import Child, cpu_seconds, fmt, free_port, spread, status_kb, studio_env, wait_ready  # noqa: E402

PROMPT, NEGATIVE = "a lighthouse on a cliff at dusk, oil painting", "blurry, text"
VARIANTS = (
    "raw",
    "engine",
    "channels-last",
    "fused-qkv",
    "tome",
    "ngms",
    "ngms-all",
    "compile",
    "openvino",
    "openvino-1",
    "bf16",
    "api",
)
DEFAULT_VARIANTS = ("raw", "engine", "api")
LABELS = {
    "raw": "raw diffusers pipeline",
    "channels-last": "studio engine + channels_last",
    "fused-qkv": "studio engine + fused QKV",
    "engine": "studio engine (defaults)",
    "tome": "studio engine + token merging",
    "ngms": "studio engine + NGMS",
    "ngms-all": "studio engine + NGMS all steps",
    "compile": "studio engine + torch.compile",
    "openvino": "studio engine + OpenVINO",
    "openvino-1": "studio engine + OpenVINO, one stream",
    "bf16": "studio engine + bf16 autocast",
    "api": "studio /sdapi/v1/txt2img (HTTP)",
}
ENGINE_KINDS = VARIANTS[1:-1]


# ---------------------------------------------------------------------------------------------------
# Models


def build_sd15_random(folder: Path) -> Path:
    """The full-size SD 1.5 architecture with random weights, as a diffusers folder; built once."""
    if (folder / "model_index.json").is_file():
        return folder
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from aigc_studio.images.sd_configs import reference_config_dir

    configs = reference_config_dir("sd15", RESULTS / "sd-configs")
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(configs / "tokenizer"),
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")),
        scheduler=PNDMScheduler.from_config(PNDMScheduler.load_config(configs / "scheduler")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    pipe.save_pretrained(staging)
    os.replace(staging, folder)
    return folder


def model_folder(choice: str, work: Path) -> tuple[Path, str]:
    if choice == "tiny":
        from tests.tiny_models import build_tiny_sd

        return build_tiny_sd(work / "tiny").folder, "tiny SD 1.x (tests/tiny_models.py)"
    if choice == "sd15":
        RESULTS.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        folder = build_sd15_random(RESULTS / "sd15-random")
        took = time.perf_counter() - started
        if took > 5:
            print(f"built {folder} in {took:.0f} s", file=sys.stderr)
        return folder, "SD 1.5 architecture, random weights (full size)"
    path = Path(choice)
    if not (path / "model_index.json").is_file():
        sys.exit(f"--model must be tiny, sd15 or a diffusers folder; {path} has no model_index.json")
    return path, path.name


# ---------------------------------------------------------------------------------------------------
# Worker processes: one model, one variant; requests and answers as JSON lines


def engine_speed(kind: str, threads: int):
    """The ``ImageSpeed`` a variant's engine loads with."""
    from aigc_studio.engines.sd_speed import ImageSpeed

    return {
        "channels-last": ImageSpeed(channels_last=True, threads=threads),
        "fused-qkv": ImageSpeed(fuse_qkv=True, threads=threads),
        "compile": ImageSpeed(compile=True, threads=threads),
        "openvino": ImageSpeed(openvino=True, openvino_cache=BENCH / "results" / "openvino", threads=threads),
        "openvino-1": ImageSpeed(
            openvino=True, openvino_cache=BENCH / "results" / "openvino", threads=threads, openvino_streams=1
        ),
    }.get(kind, ImageSpeed(threads=threads))


def worker(kind: str, model: Path, threads: int, tome: float, images: Path, ngms: float) -> None:
    """Serve ``{"seed", "steps", "size"}`` lines on stdin with timing lines on the original stdout; each
    image is written to ``images`` as ``<kind>-<seed>-<steps>.png`` for the pixel comparison."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a library prints goes to the log, not into the answers
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    if kind == "raw":
        from diffusers import StableDiffusionPipeline

        from aigc_studio.engines.samplers import SchedulerCache

        pipe = StableDiffusionPipeline.from_pretrained(model, local_files_only=True, safety_checker=None)
        # The scheduler the studio runs for Euler a, so that the two differ only in the code around it.
        pipe.scheduler = SchedulerCache(pipe.scheduler.config).get("Euler a")[0]
        pipe.set_progress_bar_config(disable=True)
    else:
        from aigc_studio.contracts import ImageRequest
        from aigc_studio.engines.diffusers_engine import DiffusersEngine

        engine = DiffusersEngine("bench", model, speed=engine_speed(kind, threads))
    load = time.perf_counter() - started

    def generate(seed: int, steps: int, size: int) -> dict:
        marks: list[float] = []
        t0 = time.perf_counter()
        if kind == "raw":

            def on_step_end(pipe, index, timestep, tensors):
                marks.append(time.perf_counter())
                return tensors

            image = pipe(
                PROMPT,
                negative_prompt=NEGATIVE,
                num_inference_steps=steps,
                guidance_scale=7,
                width=size,
                height=size,
                generator=torch.Generator("cpu").manual_seed(seed),
                callback_on_step_end=on_step_end,
            ).images[0]
        else:
            request = ImageRequest(
                prompt=PROMPT,
                negative_prompt=NEGATIVE,
                steps=steps,
                sampler_name="Euler a",
                cfg_scale=7,
                width=size,
                height=size,
                seed=seed,
                subseed=seed,
                token_merging_ratio=tome if kind == "tome" else 0,
                s_min_uncond=ngms if kind.startswith("ngms") else 0,
                s_min_uncond_all=kind == "ngms-all",
            )

            def on_step(info) -> None:
                if not info.phase:  # a compile announcement is not a step
                    marks.append(time.perf_counter())

            precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16")
            with precision:
                result = engine.generate(request, "txt2img", on_step=on_step)
            image = result.images[0]
        total = time.perf_counter() - t0
        image.save(images / f"{kind}-{seed}-{steps}.png")
        return {"total": total, "marks": [m - t0 for m in marks], "size": list(image.size)}

    first = True
    for line in sys.stdin:
        job = json.loads(line)
        answer = generate(job["seed"], job["steps"], job["size"])
        if first:  # the engine builds its scheduler on its first request
            used = pipe.scheduler if kind == "raw" else engine.pipeline.scheduler
            answer["scheduler"] = {
                "class": type(used).__name__,
                "config": {k: v for k, v in used.config.items() if not k.startswith("_")},  # diffusers bookkeeping
            }
            answer["load"] = load
            first = False
        answers.write(json.dumps(answer, default=str) + "\n")


class Process(Child):
    """A variant running in its own process."""

    def __init__(self, kind: str):
        self.kind = kind
        self.label = LABELS[kind]


class Worker(Process):
    def __init__(self, kind: str, model: Path, threads: int, log: Path, tome: float, images: Path, ngms: float):
        super().__init__(kind)
        self.log = log
        command = [sys.executable, __file__, "--worker", kind, "--model", str(model), "--threads", str(threads)]
        command += ["--tome", str(tome), "--ngms", str(ngms), "--images", str(images)]
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)

    def run(self, seed: int, steps: int, size: int) -> dict:
        self.proc.stdin.write(json.dumps({"seed": seed, "steps": steps, "size": size}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.label} worker died; see {self.log}")
        return json.loads(line)


class Api(Process):
    def __init__(self, model: Path, log: Path):
        super().__init__("api")
        self.home = home = Path(tempfile.mkdtemp(prefix="aigc-bench-image-home-"))
        env = studio_env(home)
        cli = [sys.executable, "-m", "aigc_studio"]
        for args in (["models", "add", str(model), "--name", "bench"], ["models", "default", "bench"]):
            subprocess.run([*cli, *args], env=env, check=True, capture_output=True)
        self.port = free_port()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [*cli, "serve", "--port", str(self.port), "--log-level", "warning"], env=env, stdout=out, stderr=out
            )
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_ready(self.proc, self.url + "/health", "aigc serve", log)
        except BaseException:
            self.close()
            raise
        self.rss_at_start = status_kb(self.pid, "VmRSS") / 1e6  # server and text model, no image model yet
        self.client = httpx.Client(timeout=3600)

    def run(self, seed: int, steps: int, size: int) -> dict:
        body = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "steps": steps, "sampler_name": "Euler a"}
        body |= {"cfg_scale": 7, "width": size, "height": size, "seed": seed}
        t0 = time.perf_counter()
        answer = self.client.post(self.url + "/sdapi/v1/txt2img", json=body)
        total = time.perf_counter() - t0
        if answer.status_code != 200:
            raise RuntimeError(f"/sdapi/v1/txt2img answered {answer.status_code}: {answer.text[:300]}")
        info = json.loads(answer.json()["info"])
        return {"total": total, "marks": [], "size": [info["width"], info["height"]]}

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.home, ignore_errors=True)  # its database, its images


# ---------------------------------------------------------------------------------------------------
# The run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny, sd15 (full size, random weights) or a diffusers folder")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="width and height")
    parser.add_argument("--runs", type=int, default=5, help="images per variant, interleaved")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"which of {','.join(VARIANTS)} to run")
    parser.add_argument("--group", type=int, default=0, help="processes alive at once, raw among them (0: all)")
    parser.add_argument("--tome", type=float, default=0.5, help="token merging ratio of the tome variant")
    parser.add_argument("--ngms", type=float, default=2.0, help="negative guidance minimum sigma of the ngms variants")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per process")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and the logs go")
    parser.add_argument("--worker", choices=("raw", *ENGINE_KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, Path(args.model), args.threads, args.tome, args.images, args.ngms)

    asked = args.variants.split(",")
    unknown = sorted(set(asked) - set(VARIANTS))
    if unknown:
        sys.exit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    kinds = [k for k in VARIANTS if k in asked]
    work = Path(tempfile.mkdtemp(prefix="aigc-bench-image-"))
    images = work / "images"
    images.mkdir()
    model, label = model_folder(args.model, work)
    logs = args.results / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    raw_runs: dict[str, list[dict]] = {}  # kind -> the raw pipeline's runs of its group, round by round
    first: dict[str, dict] = {}
    idle: dict[str, float] = {}
    peaks: dict[str, float] = {}
    api_start = None
    others = [k for k in kinds if k != "raw"]
    size = args.group - 1 if args.group > 1 and "raw" in kinds else args.group or len(kinds)
    groups = [others[i : i + size] for i in range(0, len(others), size)] or [[]]
    try:
        for number, group in enumerate(groups):
            group = (["raw"] if "raw" in kinds else []) + group
            measured = run_group(args, model, logs, images, group, number)
            for kind, (samples, warm, idle_share, (peak, anon), start) in measured.items():
                if kind == "raw":
                    for other in group[1:]:
                        raw_runs[other] = samples
                    if runs["raw"]:
                        continue  # the first group's raw pipeline is the raw row
                runs[kind], first[kind], idle[kind], peaks[kind] = samples, warm, idle_share, (peak, anon)
                api_start = start if start is not None else api_start
            if len(groups) > 1:
                print(f"group {number + 1}/{len(groups)} ({', '.join(group)}) done", file=sys.stderr)
        differences = pixel_differences(images, kinds, args.runs, args.steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, label, model, kinds, runs, raw_runs, first, idle, peaks, api_start, differences)


def run_group(args, model: Path, logs: Path, images: Path, group: list[str], number: int) -> dict:
    """Load ``group``'s processes one at a time, then run them interleaved, each alone; returns per kind
    (runs, warm-up, idle CPU share, peak RSS GB, API RSS at start or None)."""
    processes: list[Process] = []
    runs: dict[str, list[dict]] = {k: [] for k in group}
    first: dict[str, dict] = {}
    try:
        for kind in group:  # loaded one at a time, so that no load competes with another
            log = logs / f"image-{kind}.log"
            if kind == "api":
                process: Process = Api(model, log)
            else:
                process = Worker(kind, model, args.threads, log, args.tome, images, args.ngms)
            processes.append(process)
            started = time.perf_counter()
            first[kind] = process.run(0, 1, args.size)  # warm-up: loads the model (lazily, in the API)
            first[kind]["wall"] = time.perf_counter() - started
            process.pause()
        for process in processes:  # CPU each one uses when nothing is asked of it
            process.resume()
        before = {p.kind: cpu_seconds(p.pid) for p in processes}
        time.sleep(3)
        idle = {p.kind: (cpu_seconds(p.pid) - before[p.kind]) / 3 for p in processes}
        for process in processes:
            process.pause()
        for i in range(args.runs):
            for process in processes:
                process.resume()
                runs[process.kind].append(process.run(1000 + i, args.steps, args.size))
                process.pause()
            print(f"group {number + 1}: run {i + 1}/{args.runs} done", file=sys.stderr)
        # Peak RSS counts the weights file's pages that safetensors maps as well as the process's own
        # memory; RssAnon is the latter alone (channels_last and fused QKV copy weights into it).
        peaks = {p.kind: (p.peak_rss(), status_kb(p.pid, "RssAnon") / 1e6) for p in processes}
        starts = {p.kind: getattr(p, "rss_at_start", None) for p in processes}
    finally:
        for process in processes:
            process.close()
    return {k: (runs[k], first[k], idle[k], peaks[k], starts[k]) for k in group}


def pixel_differences(images: Path, kinds: list[str], runs: int, steps: int) -> dict[str, dict]:
    """Per variant: max and mean absolute difference (8-bit RGB) from the raw pipeline's image of the same
    seed. Every group's raw pipeline makes the same images (same seeds), so the last one written is used."""
    import numpy as np
    from PIL import Image

    differences = {}
    for kind in kinds:
        pairs = [
            (images / f"{kind}-{1000 + i}-{steps}.png", images / f"raw-{1000 + i}-{steps}.png") for i in range(runs)
        ]
        pairs = [(a, b) for a, b in pairs if a.is_file() and b.is_file()]
        if kind == "raw" or not pairs:
            continue
        diffs = [np.abs(np.asarray(Image.open(a), np.int16) - np.asarray(Image.open(b), np.int16)) for a, b in pairs]
        differences[kind] = {"max": int(max(d.max() for d in diffs)), "mean": float(np.mean([d.mean() for d in diffs]))}
    return differences


def report(args, label, model, kinds, runs, raw_runs, first, idle, peaks, api_start, differences) -> None:
    import diffusers
    import torch

    def step_time(r: dict) -> float:
        marks = r["marks"]
        return (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else float("nan")

    rows = {}
    for kind in kinds:
        rs = runs[kind]
        rows[kind] = {
            "total_s": spread([r["total"] for r in rs]),
            "step_s": spread([step_time(r) for r in rs]),
            "first_step_s": spread([r["marks"][0] if r["marks"] else float("nan") for r in rs]),
            "after_last_step_s": spread([r["total"] - r["marks"][-1] if r["marks"] else float("nan") for r in rs]),
            "load_s": first[kind].get("load"),
            "warmup_wall_s": first[kind]["wall"],
            "peak_rss_gb": peaks[kind][0],
            "anon_rss_gb": peaks[kind][1],
            "idle_cpu_share_of_one_core": idle[kind],
        }
    ratios = {}  # speed-ups: the raw pipeline's time ÷ the variant's, against raw's run of the same group and round
    for kind, raws in raw_runs.items():
        ratios[f"{kind} speed-up total"] = spread(
            [b["total"] / r["total"] for r, b in zip(runs[kind], raws, strict=True)]
        )
        ratios[f"{kind} speed-up step"] = spread(
            [step_time(b) / step_time(r) for r, b in zip(runs[kind], raws, strict=True)]
        )
    schedulers = {k: first[k]["scheduler"] for k in kinds if "scheduler" in first[k]}
    same_scheduler = len({json.dumps(s, sort_keys=True, default=str) for s in schedulers.values()}) <= 1

    name = args.model if args.model in ("tiny", "sd15") else "custom"
    out = args.results / time.strftime(f"image-{name}-%Y%m%d-%H%M%S.json")
    environment = {
        "model": label,
        "model_folder": str(model),
        "size": args.size,
        "steps": args.steps,
        "runs": args.runs,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }
    data = {
        "environment": environment,
        "rows": rows,
        "ratios": ratios,
        "pixel_difference_vs_raw": differences,
        "schedulers": schedulers,
        "runs": runs,
    }
    out.write_text(json.dumps(data, indent=1, default=str))

    print(
        f"\n{label}; {args.size}×{args.size}, {args.steps} steps, Euler a, CFG 7, {args.threads} threads per "
        f"process; median (min–max) of {args.runs}\n"
    )
    print(
        "| variant | s/step | total s | speed-up vs raw, total | speed-up, s/step | pixel diff vs raw, max / mean |"
        " to end of step 1, s | after last step, s | load s | peak RSS GB | anonymous RSS GB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        row = rows[kind]
        raw = kind == "raw"
        total_ratio = "1" if raw else fmt(ratios.get(f"{kind} speed-up total"), 3)
        step_ratio = "1" if raw else fmt(ratios.get(f"{kind} speed-up step"), 3)
        diff = differences.get(kind)
        diff_text = "0 / 0" if raw else f"{diff['max']} / {diff['mean']:.3f}" if diff else "–"
        load = f"{row['load_s']:.1f}" if row["load_s"] is not None else "–"
        print(
            f"| {LABELS[kind]} | {fmt(row['step_s'], 3)} | {fmt(row['total_s'], 3)} | {total_ratio} | {step_ratio} "
            f"| {diff_text} | {fmt(row['first_step_s'], 3)} | {fmt(row['after_last_step_s'], 3)} | {load} "
            f"| {row['peak_rss_gb']:.2f} | {row['anon_rss_gb']:.2f} |"
        )
    print()
    if schedulers:
        classes = ", ".join(f"{LABELS[k]}: {s['class']}" for k, s in schedulers.items())
        verdict = "same class and config" if same_scheduler else "DIFFERENT configs (see the JSON)"
        print(f"- schedulers: {classes}; {verdict}")
    print(
        "- CPU use while idle, % of one core: "
        + ", ".join(
            f"{LABELS[k]} {idle * 100:.1f}%" for k, idle in ((k, rows[k]["idle_cpu_share_of_one_core"]) for k in kinds)
        )
        + ". Idle processes were paused while another was measured."
    )
    if api_start is not None:
        print(
            f"- the API server held {api_start:.2f} GB before its first image (server, web UI, SmolLM2 loaded); "
            f"its first request (1 step, loading the model) took {first['api']['wall']:.1f} s"
        )
    if "compile" in kinds:
        took = f"- torch.compile: the warm-up image (1 step, compiling the UNet) took {first['compile']['wall']:.1f} s"
        if "engine" in first:
            took += f", the engine's without compiling {first['engine']['wall']:.1f} s"
        print(took)
    if "openvino" in kinds:
        print(
            f"- OpenVINO: the warm-up image (1 step, converting the UNet and VAE decoder or reading them from"
            f" bench/results/openvino) took {first['openvino']['wall']:.1f} s"
        )
    if args.group:
        print(f"- variants ran {args.group} processes at a time, each group with its own raw pipeline")
    print("- speed-up: the raw pipeline's time ÷ the variant's (above 1: faster); pixel diff: 8-bit RGB, same seeds")
    print(
        "- peak RSS includes the weights file's pages that safetensors maps (shared, reclaimable); anonymous RSS"
        " at the end is the process's own memory"
    )
    print(f"- every sample: {out}")


if __name__ == "__main__":
    main()
