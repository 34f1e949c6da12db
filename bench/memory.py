"""Memory of ``aigc serve`` with the default text model and a Stable Diffusion model, per ``model_memory``.

    .venv/bin/python bench/memory.py                                   # full-size SD 1.5, 512², 1 step (~10 min)
    .venv/bin/python bench/memory.py --model tiny --size 64            # the tiny test model (~1 min)

One ``aigc serve`` per setting (``both``, ``one``), each with the embedded SmolLM2 as its default text
model and the image model (``--model``, as bench/image.py takes it: ``sd15`` is the full-size SD 1.5
architecture with random weights under bench/results/sd15-random) as its default image model. Each
server goes through the same phases: start (the default text model loads), a chat request
(``/v1/chat/completions``, 32 tokens, temperature 0), an image (``/sdapi/v1/txt2img``, ``--size``²,
``--steps`` steps, Euler a; the image model loads), then ``--rounds`` rounds of a chat request and an
image again. With ``one``, each of those reloads the model the other kind freed.

The servers run side by side, phase by phase interleaved: while one takes its turn the other is paused
(SIGSTOP), so each runs alone and both see the machine's load of the moment alike. Reported per setting:
the server's resident memory (``VmRSS``) after each phase, its peak (``VmHWM``), the time of each
request, and what a load of each model took, as the server measures it (``load_seconds`` of GET
/api/models): the first load, and with ``one`` each reload (median, min–max over the rounds); and the
``one`` server's time for a request over the ``both`` server's for the same request of the same round. The lines the
server logged about freeing a model are counted and the first ones printed. Every sample goes to
bench/results/memory-<model>-<time>.json.
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
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH.parent))  # tests.tiny_models

from image import model_folder  # noqa: E402
from procs import Child, fmt, free_port, spread, status_kb, studio_env, wait_ready  # noqa: E402

SETTINGS = ("both", "one")
CHAT = {
    "model": "smollm2-135m",
    "messages": [{"role": "user", "content": "Describe a lighthouse at dusk in two sentences."}],
    "max_tokens": 32,
    "temperature": 0,
}
IMAGE = {"prompt": "a lighthouse on a cliff at dusk, oil painting", "negative_prompt": "blurry, text"}
IMAGE |= {"sampler_name": "Euler a", "cfg_scale": 7, "seed": 1234}


class Server(Child):
    """``aigc serve`` in a fresh AIGC_HOME with ``model`` as its default image model."""

    def __init__(self, setting: str, model: Path, work: Path):
        self.setting = setting
        self.home = work / f"home-{setting}"
        self.log = work / f"serve-{setting}.log"
        env = studio_env(self.home)
        env["AIGC_MODEL_MEMORY"] = setting
        cli = [sys.executable, "-m", "aigc_studio"]
        for args in (["models", "add", str(model), "--name", "bench-sd"], ["models", "default", "bench-sd"]):
            subprocess.run([*cli, *args], env=env, check=True, capture_output=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        started = time.perf_counter()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([*cli, "serve", "--port", str(self.port)], env=env, stdout=out, stderr=out)
        try:
            wait_ready(self.proc, self.url + "/health", f"aigc serve ({setting})", self.log)
        except BaseException:
            self.close()
            raise
        self.ready_seconds = time.perf_counter() - started
        self.client = httpx.Client(timeout=3600)

    def rss_gb(self) -> float:
        return status_kb(self.pid, "VmRSS") / 1e6

    def models(self) -> dict:
        """What the server says of its models (GET /api/models): the ids loaded now, and each model's
        last load time in seconds (the server's own measure, from the start of the load to its end)."""
        models = [m for m in self.client.get(self.url + "/api/models").json()["models"] if m["load_seconds"]]
        return {
            "loaded": [m["id"] for m in models if m["loaded"]],
            "load_seconds": {m["id"]: m["load_seconds"] for m in models},
        }

    def chat(self) -> float:
        t0 = time.perf_counter()
        answer = self.client.post(self.url + "/v1/chat/completions", json=CHAT)
        took = time.perf_counter() - t0
        if answer.status_code != 200:
            raise RuntimeError(f"/v1/chat/completions answered {answer.status_code}: {answer.text[:300]}")
        return took

    def image(self, size: int, steps: int) -> float:
        t0 = time.perf_counter()
        answer = self.client.post(
            self.url + "/sdapi/v1/txt2img", json={**IMAGE, "width": size, "height": size, "steps": steps}
        )
        took = time.perf_counter() - t0
        if answer.status_code != 200:
            raise RuntimeError(f"/sdapi/v1/txt2img answered {answer.status_code}: {answer.text[:300]}")
        return took

    def freed_lines(self) -> list[str]:
        """What the server logged about freeing a model (its log file under AIGC_HOME/logs)."""
        log = self.home / "logs" / "server.log"
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
        return [line for line in lines if "model_memory=one: freed" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sd15", help="sd15 (full size, random weights), tiny or a diffusers folder")
    parser.add_argument("--size", type=int, default=512, help="image width and height")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps per image (memory does not depend on it)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of a chat request and an image after the first")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON of every sample goes")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aigc-bench-memory-"))
    servers: list[Server] = []
    try:
        model, label = model_folder(args.model, work)
        for setting in SETTINGS:
            servers.append(Server(setting, model, work))
            servers[-1].pause()
        samples = {}
        for server in servers:
            server.resume()
            samples[server.setting] = {"start": {"seconds": server.ready_seconds, "rss_gb": server.rss_gb()}}
            samples[server.setting]["start"] |= server.models()
            server.pause()
        phases = [("chat", "chat"), ("image", "image")]
        phases += [(f"{kind} again {r}", kind) for r in range(1, args.rounds + 1) for kind in ("chat", "image")]
        for phase, kind in phases:
            for server in servers:  # one at a time, the other paused
                server.resume()
                took = server.chat() if kind == "chat" else server.image(args.size, args.steps)
                samples[server.setting][phase] = {"seconds": took, "rss_gb": server.rss_gb(), **server.models()}
                server.pause()
                print(f"{server.setting:>4} {phase:<14} {took:7.2f} s  RSS {server.rss_gb():.2f} GB", file=sys.stderr)
        for server in servers:
            samples[server.setting]["peak_rss_gb"] = server.peak_rss()
            samples[server.setting]["freed"] = server.freed_lines()
        record = {
            "model": label,
            "size": args.size,
            "steps": args.steps,
            "rounds": args.rounds,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
            "samples": samples,
        }
        args.results.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (args.results / f"memory-{args.model if args.model in ('tiny', 'sd15') else 'folder'}-{stamp}.json").write_text(
            json.dumps(record, indent=2)
        )
        report(record)
    finally:
        for server in servers:
            server.close()
        shutil.rmtree(work, ignore_errors=True)


def report(record: dict) -> None:
    samples, rounds = record["samples"], record["rounds"]
    print(
        f"\n| {record['model']}, {record['size']}×{record['size']}, {record['steps']} step(s), {rounds} rounds "
        "| RSS after start, GB | after chat | after image | after chat again | after image again | peak RSS, GB "
        "| loaded after image | loaded after chat again |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for setting in SETTINGS:
        s = samples[setting]
        again = {
            kind: spread([s[f"{kind} again {r}"]["rss_gb"] for r in range(1, rounds + 1)]) for kind in ("chat", "image")
        }
        print(
            f"| model_memory={setting} | {s['start']['rss_gb']:.2f} | {s['chat']['rss_gb']:.2f} "
            f"| {s['image']['rss_gb']:.2f} | {fmt(again['chat'], 2)} | {fmt(again['image'], 2)} "
            f"| {s['peak_rss_gb']:.2f} | {', '.join(s['image']['loaded']) or '–'} "
            f"| {', '.join(s['chat again 1']['loaded']) or '–'} |"
        )
    text_id, image_id = "smollm2-135m", "bench-sd"

    def loads(s: dict, model: str, kind: str) -> str:
        first = s["start" if kind == "chat" else "image"]["load_seconds"][model]
        reloads = [s[f"{kind} again {r}"]["load_seconds"][model] for r in range(1, rounds + 1)]
        if all(value == first for value in reloads):
            return f"{first:.2f} (once)"
        return f"{first:.2f}; reloads {fmt(spread(reloads), 2)}"

    def ratio(kind: str) -> str:
        return fmt(
            spread(
                [
                    samples["one"][f"{kind} again {r}"]["seconds"] / samples["both"][f"{kind} again {r}"]["seconds"]
                    for r in range(1, rounds + 1)
                ]
            ),
            2,
        )

    print(
        "\n| seconds | start (to /health ok) | first chat | first image | chat again | image again "
        "| text model load: first; reloads | image model load: first; reloads |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for setting in SETTINGS:
        s = samples[setting]
        again = {
            kind: spread([s[f"{kind} again {r}"]["seconds"] for r in range(1, rounds + 1)])
            for kind in ("chat", "image")
        }
        print(
            f"| model_memory={setting} | {s['start']['seconds']:.1f} | {s['chat']['seconds']:.2f} "
            f"| {s['image']['seconds']:.1f} | {fmt(again['chat'], 2)} | {fmt(again['image'], 1)} "
            f"| {loads(s, text_id, 'chat')} | {loads(s, image_id, 'image')} |"
        )
    print(f"| one ÷ both, same round | – | – | – | {ratio('chat')} | {ratio('image')} | – | – |")
    print(f"\nLoad average at the end: {' '.join(f'{v:.1f}' for v in record['machine']['load'])}.")
    for setting in SETTINGS:
        freed = samples[setting]["freed"]
        print(f"model_memory={setting}: {len(freed)} model(s) freed" + (f", e.g. {freed[0].strip()}" if freed else ""))


if __name__ == "__main__":
    main()
