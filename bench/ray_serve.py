"""What Ray Serve costs a request: the same studio server with its engines in process and on Ray Serve.

    .venv/bin/python bench/ray_serve.py [--rounds 5] [--tokens 64] [--steps 8]

Needs the ray extra (``bash setup.sh --dev``). Two servers run as their own processes on loopback:
``in process`` (``aigc serve``) and ``Ray Serve`` (``aigc serve --ray``: a local cluster with all cores,
one replica per deployment), each with its own AIGC_HOME. Both serve the embedded SmolLM2-135M and a tiny
SD 1.x built from the real diffusers classes (tests/tiny_models.py), so that the per-request cost of the
handle, not the model, is what differs. Requests are interleaved (in process, then Ray, each round), one
at a time, from this process:

  text   a streamed /v1 chat completion through the openai client, ``--tokens`` completion tokens at most
         (seeded; an answer may stop earlier, and tokens/s divides by what came); time to first token,
         completion tokens/s from the first token to the last.
  image  /sdapi/v1/txt2img, 64×64, ``--steps`` Euler steps, wall time per image (labels included).

Reported: each variant's median (min–max) over rounds, and the per-round ratio Ray ÷ in process as
median (min–max). Writes every sample to bench/results/ray-serve-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH.parent))  # tests.tiny_models

from procs import studio_env  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]


def serve(home: Path, model_folder: Path, port: int, *flags: str) -> subprocess.Popen:
    """``aigc serve`` with ``flags`` in its own process and AIGC_HOME, the tiny image model added first;
    returns once /health answers."""
    import httpx

    env = studio_env(home)
    env.pop("AIGC_TEST_MODELS", None)
    aigc = [sys.executable, "-m", "aigc_studio"]
    subprocess.run([*aigc, "models", "add", str(model_folder), "--name", "tiny-sd15"], env=env, check=True)
    log = (home / "serve.log").open("w")
    server = subprocess.Popen([*aigc, "serve", "--port", str(port), *flags], env=env, stdout=log, stderr=log)
    deadline = time.time() + 300
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=60).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.time() > deadline or server.poll() is not None:
            server.kill()
            sys.exit(f"aigc serve {' '.join(flags)} did not become healthy; see {home / 'serve.log'}")
        time.sleep(0.2)


def chat(url: str, tokens: int, seed: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)
    started = time.perf_counter()
    first = last = None
    usage = None
    stream = client.chat.completions.create(
        model="smollm2-135m",
        messages=PROMPT,
        max_tokens=tokens,
        seed=seed,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
        if chunk.usage:
            usage = chunk.usage
    n = usage.completion_tokens
    return {
        "ttft_s": first - started,
        "tokens": n,
        "tok_s": (n - 1) / (last - first) if n > 1 and last > first else None,
    }


def image(url: str, steps: int, seed: int) -> dict:
    import httpx

    body = {"prompt": "a lighthouse", "steps": steps, "width": 64, "height": 64, "seed": seed, "sampler_name": "Euler"}
    started = time.perf_counter()
    r = httpx.post(url + "/sdapi/v1/txt2img", json=body, timeout=600)
    r.raise_for_status()
    return {"image_s": time.perf_counter() - started}


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--port", type=int, default=7870, help="the first server's port; the second takes the next")
    args = parser.parse_args()

    from tests.tiny_models import build_tiny_sd

    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    model = build_tiny_sd(work / "tiny", kind="sd15").folder
    started = time.perf_counter()
    servers = {
        "in process": (serve(work / "home-local", model, args.port), args.port),
        "Ray Serve": (serve(work / "home-ray", model, args.port + 1, "--ray"), args.port + 1),
    }
    ready = time.perf_counter() - started
    samples: dict[str, list[dict]] = {name: [] for name in servers}
    load = os.getloadavg()[0]
    try:
        for r in range(args.rounds + 1):  # round 0 warms both up (the first image loads the model); dropped
            for name, (_, port) in servers.items():
                url = f"http://127.0.0.1:{port}"
                sample = {**chat(url, args.tokens, seed=r), **image(url, args.steps, seed=r)}
                if r:
                    samples[name].append(sample)
            load = max(load, os.getloadavg()[0])
    finally:
        for server, _ in servers.values():
            server.send_signal(signal.SIGINT)
        for server, _ in servers.values():
            server.wait(60)

    print(f"{args.rounds} rounds, {args.tokens} tokens, {args.steps} steps at 64x64; load average up to {load:.1f}")
    print(f"both servers healthy {ready:.0f} s after the first started (the Ray one starts its cluster)\n")
    print("| | time to first token (s) | completion tokens/s | tiny SD image (s) |")
    print("|---|---|---|---|")
    for name, rows in samples.items():
        ttft = spread([s["ttft_s"] for s in rows])
        rate = spread([s["tok_s"] for s in rows if s["tok_s"]])
        img = spread([s["image_s"] for s in rows])
        print(f"| {name} | {ttft} | {rate} | {img} |")
    local, ray_rows = samples["in process"], samples["Ray Serve"]
    ratios = {
        key: [b[key] / a[key] for a, b in zip(local, ray_rows, strict=True) if a[key] and b[key]]
        for key in ("ttft_s", "tok_s", "image_s")
    }
    print(
        f"| Ray ÷ in process | {spread(ratios['ttft_s'], '{:.2f}')} | {spread(ratios['tok_s'], '{:.2f}')}"
        f" | {spread(ratios['image_s'], '{:.2f}')} |"
    )
    out = BENCH / "results" / f"ray-serve-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "load": load, "samples": samples}, indent=1))
    print(f"\nsamples: {out}")


if __name__ == "__main__":
    main()
