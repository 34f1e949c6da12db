"""Image generation speed: the studio against a pipeline diffusers builds itself, each in its own process.

    .venv/bin/python bench/image.py                       # tiny SD 1.x, 64×64, 20 steps, 5 runs (~2 min)
    .venv/bin/python bench/image.py --model sd15 --size 512 --steps 4 --runs 3      # full size (~16 min)

Variants, with the same model folder, prompt, negative prompt, sampler (Euler a), CFG 7, steps, size and
seeds, each in a process of its own so that its peak memory is its own:

  raw            ``StableDiffusionPipeline.from_pretrained`` of the model folder, its scheduler replaced by
                 the class the studio runs for Euler a (A1111's: ``k_schedulers.A1111EulerAncestral``, an
                 ``EulerDiscreteScheduler`` with k-diffusion's ancestral step) made from the folder's
                 scheduler config, called with the prompt and a seeded ``torch.Generator``; images out as
                 PIL, as diffusers gives them.
  studio engine  the studio's ``DiffusersEngine.generate`` (prompt weighting, A1111's seeds and noise,
                 its own VAE decode).
  studio API     ``POST /sdapi/v1/txt2img`` to ``aigc serve`` over HTTP: the whole request, including the
                 PNG files, history and the base64 answer. The server loads the default text model too
                 (SmolLM2), as a user's server does; its memory at start is printed beside its peak.

Each process loads the model once and answers a warm-up image (1 step); then the variants are interleaved
request by request (raw, studio engine, studio API, raw, ...). While one is measured the other processes
are paused (SIGSTOP), so each runs alone on the machine: an idle ``aigc serve`` is not idle (Gradio's queue
wakes every millisecond), and the bench prints each process's CPU use while idle before pausing them.
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

Reported per variant: total seconds per image, seconds per denoising step (from the step callbacks:
time from the first step's end to the last's, ÷ steps − 1), time to the end of the first step, time
after the last step (VAE decode and what follows), the model's load time, and peak RSS (VmHWM) of the
process; median (min–max) over the runs, and the studio ÷ raw ratio of the same run. Writes every sample
to bench/results/image-<model>-<time>.json.
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

from procs import Child, cpu_seconds, fmt, free_port, spread, status_kb, wait_ready  # noqa: E402

PROMPT, NEGATIVE = "a lighthouse on a cliff at dusk, oil painting", "blurry, text"
VARIANTS = ("raw", "engine", "api")
LABELS = {"raw": "raw diffusers pipeline", "engine": "studio engine", "api": "studio /sdapi/v1/txt2img (HTTP)"}


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


def worker(kind: str, model: Path, threads: int) -> None:
    """Serve ``{"seed", "steps", "size"}`` lines on stdin with timing lines on the original stdout."""
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

        engine = DiffusersEngine("bench", model, threads=threads)
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
            )
            result = engine.generate(request, "txt2img", on_step=lambda info: marks.append(time.perf_counter()))
            image = result.images[0]
        total = time.perf_counter() - t0
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
    def __init__(self, kind: str, model: Path, threads: int, log: Path):
        super().__init__(kind)
        self.log = log
        command = [sys.executable, __file__, "--worker", kind, "--model", str(model), "--threads", str(threads)]
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
        env = {**os.environ, "AIGC_HOME": str(home), "PYTHONPATH": str(BENCH.parent / "src")}
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
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which of raw,engine,api to run")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per process")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and the logs go")
    parser.add_argument("--worker", choices=("raw", "engine"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, Path(args.model), args.threads)

    kinds = [k for k in VARIANTS if k in args.variants.split(",")]
    work = Path(tempfile.mkdtemp(prefix="aigc-bench-image-"))
    model, label = model_folder(args.model, work)
    logs = args.results / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[Process] = []
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    first: dict[str, dict] = {}
    try:
        for kind in kinds:  # loaded one at a time, so that no load competes with another
            log = logs / f"image-{kind}.log"
            process = Api(model, log) if kind == "api" else Worker(kind, model, args.threads, log)
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
            print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
        peaks = {p.kind: p.peak_rss() for p in processes}
        api_start = next((p.rss_at_start for p in processes if isinstance(p, Api)), None)
    finally:
        for process in processes:
            process.close()
        shutil.rmtree(work, ignore_errors=True)
    report(args, label, model, kinds, runs, first, idle, peaks, api_start)


def report(args, label, model, kinds, runs, first, idle, peaks, api_start) -> None:
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
            "peak_rss_gb": peaks[kind],
            "idle_cpu_share_of_one_core": idle[kind],
        }
    ratios = {}
    if "raw" in kinds:
        for kind in kinds[1:] if kinds[0] == "raw" else kinds:
            if kind == "raw":
                continue
            ratios[f"{kind} ÷ raw total"] = spread(
                [r["total"] / b["total"] for r, b in zip(runs[kind], runs["raw"], strict=True)]
            )
            ratios[f"{kind} ÷ raw step"] = spread(
                [step_time(r) / step_time(b) for r, b in zip(runs[kind], runs["raw"], strict=True)]
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
    data = {"environment": environment, "rows": rows, "ratios": ratios, "schedulers": schedulers, "runs": runs}
    out.write_text(json.dumps(data, indent=1, default=str))

    print(
        f"\n{label}; {args.size}×{args.size}, {args.steps} steps, Euler a, CFG 7, {args.threads} threads per "
        f"process; median (min–max) of {args.runs}\n"
    )
    print(
        "| variant | total s | s/step | to end of step 1, s | after last step, s | ÷ raw, total | ÷ raw, s/step |"
        " load s | peak RSS GB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        row = rows[kind]
        total_ratio = fmt(ratios.get(f"{kind} ÷ raw total"), 3) if kind != "raw" else "1"
        step_ratio = fmt(ratios.get(f"{kind} ÷ raw step"), 3) if kind != "raw" or row["step_s"] is None else "1"
        load = f"{row['load_s']:.1f}" if row["load_s"] is not None else "–"
        print(
            f"| {LABELS[kind]} | {fmt(row['total_s'], 3)} | {fmt(row['step_s'], 3)} | {fmt(row['first_step_s'], 3)} "
            f"| {fmt(row['after_last_step_s'], 3)} | {total_ratio} | {step_ratio} | {load} | {row['peak_rss_gb']:.2f} |"
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
    print(f"- every sample: {out}")


if __name__ == "__main__":
    main()
