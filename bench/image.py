"""Image generation speed: the studio against the raw diffusers pipeline, in one run.

    .venv/bin/python bench/image.py [--steps 20] [--size 64] [--runs 3]
    AIGC_BENCH_MODEL=/path/to/model.safetensors .venv/bin/python bench/image.py --size 512

Measures, with the same model, prompt, sampler (Euler a), steps, size and seeds:
  (a) the raw diffusers pipeline call, in this process
  (b) the studio's DiffusersEngine.generate, in this process
  (c) POST /sdapi/v1/txt2img to `aigc serve`, over HTTP (includes PNG + base64 of the answer)
  (c') the same request to a server running in this process, interleaved with (a) and (b), which
       leaves out what a second process costs (its own threads and caches) and shows the studio's share
and, for the studio, the time to the first denoising step of a cold request (model not loaded yet)
against a warm one. The model is a tiny SD 1.x built from the real diffusers classes unless
AIGC_BENCH_MODEL points at a real one. Prints one Markdown table with ratios to (a).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_models
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT, NEGATIVE = "a lighthouse on a cliff at dusk, oil painting", "blurry, text"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="width and height (tiny model: 64)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import torch
    from diffusers import DiffusionPipeline, EulerAncestralDiscreteScheduler

    from aigc_studio.contracts import ImageRequest
    from aigc_studio.engines.diffusers_engine import DiffusersEngine

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="aigc-bench-image-"))
    model = os.environ.get("AIGC_BENCH_MODEL")
    if model:
        model_path, label = Path(model), Path(model).name
    else:
        from tests.tiny_models import build_tiny_sd

        tiny = build_tiny_sd(work / "tiny")
        model_path, label = tiny.folder, "tiny SD 1.x (diffusers folder, built from the real classes)"
    request = ImageRequest(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        steps=args.steps,
        sampler_name="Euler a",
        cfg_scale=7,
        width=args.size,
        height=args.size,
        seed=1,
        subseed=1,
    )
    rows: list[tuple[str, float, float]] = []  # name, total s, s/step

    # (c) first: the studio server over HTTP, alone on the machine (this process has run no model yet).
    home = work / "home"
    # echo (a test engine, shown only with AIGC_TEST_MODELS) keeps the text model out of the measurement.
    env = {**os.environ, "AIGC_HOME": str(home), "AIGC_MODEL": "echo", "AIGC_TEST_MODELS": "1"}
    subprocess.run(
        [sys.executable, "-m", "aigc_studio", "models", "add", str(model_path), "--name", "bench"],
        env=env,
        check=True,
        capture_output=True,
    )
    port = 18700
    server = subprocess.Popen(
        [sys.executable, "-m", "aigc_studio", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.1)
        body = {
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "steps": args.steps,
            "sampler_name": "Euler a",
            "cfg_scale": 7,
            "width": args.size,
            "height": args.size,
            "override_settings": {"sd_model_checkpoint": "bench"},
        }

        def http_once(seed: int, watch_steps: bool = False) -> tuple[float, float]:
            """Total time, and (watch_steps) the time until /progress first shows a step. The watcher
            polls the server, so totals are measured without it."""
            seen: list[float] = []
            done = threading.Event()

            def watch():
                while not done.is_set():
                    if (
                        httpx.get(base + "/sdapi/v1/progress?skip_current_image=true").json()["state"]["sampling_step"]
                        >= 1
                    ):
                        seen.append(time.perf_counter())
                        return
                    time.sleep(0.005)

            watcher = threading.Thread(target=watch if watch_steps else lambda: None)
            t0 = time.perf_counter()
            watcher.start()
            r = httpx.post(base + "/sdapi/v1/txt2img", json={**body, "seed": seed}, timeout=600)
            total = time.perf_counter() - t0
            done.set()
            watcher.join()
            r.raise_for_status()
            return total, (seen[0] - t0) if seen else float("nan")

        http_cold_total, http_cold_first = http_once(1, watch_steps=True)  # the server loads the model here
        http_warm_first = median([http_once(100 + i, watch_steps=True)[1] for i in range(args.runs)])
        http = [http_once(200 + i) for i in range(args.runs)]
        http_row = ("(c) /sdapi/v1/txt2img over HTTP", median([h[0] for h in http]), float("nan"))
    finally:
        server.terminate()
        server.wait(30)

    # (b) cold: load + first step, then warm runs.
    started = time.perf_counter()
    first_step: list[float] = []
    engine = DiffusersEngine("bench", model_path, threads=threads)
    engine.generate(
        request.model_copy(update={"steps": 1}), "txt2img", on_step=lambda s: first_step.append(time.perf_counter())
    )
    cold_first_step = first_step[0] - started

    def studio_once(seed: int) -> tuple[float, float]:
        marks: list[float] = []
        t0 = time.perf_counter()
        engine.generate(
            request.model_copy(update={"seed": seed}), "txt2img", on_step=lambda s: marks.append(time.perf_counter())
        )
        total = time.perf_counter() - t0
        return total, (marks[-1] - marks[0]) / (len(marks) - 1), marks[0] - t0

    warm = [studio_once(100 + i) for i in range(args.runs)]
    warm_first_step = median([w[2] for w in warm])

    # (a) the raw pipeline, from the same weights (the studio's own pipeline shares them).
    pipe: DiffusionPipeline = engine.pipeline
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)  # the studio reports progress its own way; no tqdm here

    def raw_once(seed: int) -> tuple[float, float]:
        marks: list[float] = []

        def on_step(p, i, t, kw):
            marks.append(time.perf_counter())
            return kw

        t0 = time.perf_counter()
        pipe(
            PROMPT,
            negative_prompt=NEGATIVE,
            num_inference_steps=args.steps,
            guidance_scale=7,
            width=args.size,
            height=args.size,
            generator=torch.Generator("cpu").manual_seed(seed),
            callback_on_step_end=on_step,
        )
        return time.perf_counter() - t0, (marks[-1] - marks[0]) / (len(marks) - 1)

    # (c') the same HTTP API served from this process (uvicorn in a thread), so that it runs under the
    # same conditions as (a) and (b): what remains is the studio's own cost per request.
    import uvicorn

    from aigc_studio.api.app import create_app
    from aigc_studio.config import load_config
    from aigc_studio.studio import Studio

    os.environ["AIGC_HOME"] = str(work / "home-inproc")
    inproc = Studio(load_config(model="echo", test_models=1))
    inproc.registry.add(model_path, model_id="bench")
    inproc.registry.set_default_image_model("bench")
    server = uvicorn.Server(
        uvicorn.Config(create_app(inproc, load_default=False), host="127.0.0.1", port=0, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    inproc_url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/sdapi/v1/txt2img"
    inproc_body = {
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "steps": args.steps,
        "sampler_name": "Euler a",
        "cfg_scale": 7,
        "width": args.size,
        "height": args.size,
    }

    def inproc_once(seed: int) -> float:
        t0 = time.perf_counter()
        httpx.post(inproc_url, json={**inproc_body, "seed": seed}, timeout=600).raise_for_status()
        return time.perf_counter() - t0

    raw_once(99)  # warm-up
    inproc_once(99)
    # Interleave (a), (b) and (c') so that drifts in machine speed hit them alike.
    raw, studio, served = [], [], []
    for i in range(args.runs):
        raw.append(raw_once(200 + i))
        studio.append(studio_once(200 + i)[:2])
        served.append(inproc_once(200 + i))
    server.should_exit = True
    rows.append(("(a) raw diffusers pipeline call", median([r[0] for r in raw]), median([r[1] for r in raw])))
    rows.append(("(b) studio engine, in process", median([s[0] for s in studio]), median([s[1] for s in studio])))
    rows.append(("(c') /sdapi/v1/txt2img over HTTP, server in this process", median(served), float("nan")))
    engine.close()
    rows.insert(2, http_row)

    base_total, base_step = rows[0][1], rows[0][2]
    print(
        f"\n{label}; {args.size}x{args.size}, {args.steps} steps, Euler a, CFG 7, {threads} threads, "
        f"median of {args.runs}\n"
    )
    print("| variant | total s | s/step | total ÷ (a) | s/step ÷ (a) | overhead vs (a) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, total, step in rows:
        step_s = "–" if step != step else f"{step:.4f}"
        step_r = "–" if step != step else f"{step / base_step:.3f}"
        print(
            f"| {name} | {total:.3f} | {step_s} | {total / base_total:.3f} | {step_r} | "
            f"{(total - base_total) / base_total * 100:+.1f}% |"
        )
    print("\n| start of a request | cold (model not loaded) | warm | cold ÷ warm |")
    print("|---|---:|---:|---:|")
    print(
        f"| studio engine, to first step | {cold_first_step:.3f} s | {warm_first_step:.3f} s | "
        f"{cold_first_step / warm_first_step:.0f}× |"
    )
    print(
        f"| /sdapi/v1/txt2img, to first step | {http_cold_first:.3f} s | {http_warm_first:.3f} s | "
        f"{http_cold_first / http_warm_first:.0f}× |"
    )
    print(f"\n(cold HTTP request total: {http_cold_total:.2f} s)")


if __name__ == "__main__":
    main()
