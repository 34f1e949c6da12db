"""Load on one ``aigc serve``: N chat streams and M image jobs at once, for a fixed time.

    .venv/bin/python bench/load.py                                    # 4 chats, 1 image job, 60 s
    .venv/bin/python bench/load.py --chats 8 --images 2 --seconds 120
    .venv/bin/python bench/load.py --image-model ~/models/sd-turbo    # a real image model (diffusers folder)

It starts ``aigc serve`` on a free loopback port with a temporary AIGC_HOME (the embedded SmolLM2 as the
text model; the tiny Stable Diffusion model of tests/tiny_models.py, or ``--image-model``, as the image
model), warms it up with one chat and one image (so that loading the models is not counted as growth),
then runs ``--chats`` clients, each sending one streamed chat request after another through the
``openai`` client, and ``--images`` clients, each sending one ``/sdapi/v1/txt2img`` after another, until
``--seconds`` have passed; requests in flight then finish and are counted. It prints the requests done,
the errors (each distinct one once), p50/p95 time to first token and whole-request time for chats and
images, and the server's resident memory (psutil on its pid) before the load, after it, and its peak
during it. It exits non-zero when any request failed or the memory grew by more than ``--max-growth-mb``
from before to after. ``--json FILE`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH.parent))  # tests.tiny_models

from procs import Child, free_port, studio_env, wait_ready  # noqa: E402

TOPICS = ("lighthouses", "tea", "rivers", "owls", "bridges", "volcanoes", "maps", "bees")


@dataclass
class Results:
    """What the clients of one kind measured; appended to from their threads."""

    done: int = 0
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, total: float, ttft: float | None = None) -> None:
        with self.lock:
            self.done += 1
            self.total.append(total)
            if ttft is not None:
                self.ttft.append(ttft)

    def failed(self, error: str) -> None:
        with self.lock:
            self.errors[error] = self.errors.get(error, 0) + 1


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Server(Child):
    """``aigc serve`` on loopback in its own AIGC_HOME, with ``image_model`` as its default image model."""

    def __init__(self, home: Path, image_model: Path):
        self.log = home / "serve.log"
        env = studio_env(home)
        env = {k: v for k, v in env.items() if not k.startswith("AIGC_") or k in ("AIGC_HOME",)}
        cli = [sys.executable, "-m", "aigc_studio"]
        for args in (["models", "add", str(image_model), "--name", "bench-sd"], ["models", "default", "bench-sd"]):
            subprocess.run([*cli, *args], env=env, check=True, capture_output=True)
        self.url = f"http://127.0.0.1:{free_port()}"
        with open(self.log, "wb") as out:
            port = self.url.rsplit(":", 1)[1]
            self.proc = subprocess.Popen([*cli, "serve", "--port", port], env=env, stdout=out, stderr=out)
        try:
            wait_ready(self.proc, self.url + "/health", "aigc serve", self.log)
        except BaseException:
            self.close()
            raise
        self.process = psutil.Process(self.proc.pid)

    def rss_mb(self) -> float:
        return self.process.memory_info().rss / 2**20


def chat_client(server: Server, index: int, more: Callable[[int], bool], max_tokens: int, results: Results) -> None:
    """Streamed chat requests one after another while ``more(requests sent)`` says so."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="bench", max_retries=0, timeout=300)
    turn = 0
    while more(turn):
        topic = TOPICS[(index + turn) % len(TOPICS)]
        turn += 1
        started, first = time.perf_counter(), None
        try:
            stream = client.chat.completions.create(
                model="smollm2-135m",
                messages=[{"role": "user", "content": f"Tell me three short facts about {topic}."}],
                max_tokens=max_tokens,
                temperature=0.7,
                stream=True,
            )
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - started
            if first is None:
                raise RuntimeError("the answer had no text")
            results.ok(time.perf_counter() - started, first)
        except Exception as exc:  # every failure is counted and shown, never ends the client
            results.failed(f"chat: {type(exc).__name__}: {str(exc)[:300]}")


def image_client(
    server: Server, index: int, more: Callable[[int], bool], size: int, steps: int, results: Results
) -> None:
    """``/sdapi/v1/txt2img`` requests of one image one after another while ``more(requests sent)``."""
    turn = 0
    with httpx.Client(timeout=600) as http:
        while more(turn):
            body = {"prompt": f"a {TOPICS[(index + turn) % len(TOPICS)]} at dusk", "steps": steps}
            body |= {"width": size, "height": size, "seed": 1000 * index + turn, "sampler_name": "Euler a"}
            turn += 1
            started = time.perf_counter()
            try:
                response = http.post(server.url + "/sdapi/v1/txt2img", json=body)
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
                if len(response.json()["images"]) != 1:
                    raise RuntimeError(f"{len(response.json()['images'])} images instead of 1")
                results.ok(time.perf_counter() - started)
            except Exception as exc:
                results.failed(f"image: {type(exc).__name__}: {str(exc)[:300]}")


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=4, help="concurrent chat streams (default 4)")
    parser.add_argument("--images", type=int, default=1, help="concurrent image clients (default 1)")
    parser.add_argument("--seconds", type=float, default=60, help="how long new requests are sent (default 60)")
    parser.add_argument("--image-model", help="a diffusers folder or checkpoint (default: the tiny test model)")
    parser.add_argument("--size", type=int, default=64, help="image width and height (default 64)")
    parser.add_argument("--steps", type=int, default=2, help="image steps (default 2)")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each chat (default 64)")
    parser.add_argument(
        "--max-growth-mb",
        type=float,
        default=256,
        help="most the server's RSS may grow from before the load to after it, in MiB (default 256)",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    if args.chats < 0 or args.images < 0 or args.chats + args.images == 0 or args.seconds <= 0:
        parser.error("give at least one chat or image client and a positive --seconds")

    with tempfile.TemporaryDirectory(prefix="aigc-load-") as work:
        work = Path(work)
        if args.image_model:
            image_model, image_name = Path(args.image_model).expanduser(), Path(args.image_model).name
        else:
            from tests.tiny_models import build_tiny_sd

            image_model, image_name = build_tiny_sd(work / "tiny").folder, "tiny SD (tests/tiny_models.py)"
        home = work / "home"
        home.mkdir()
        server = Server(home, image_model)
        try:
            # Warm-up: both models loaded, so that "before" holds them and growth is the load's own.
            warm_chat, warm_image = Results(), Results()
            warm = time.perf_counter()
            chat_client(server, 0, lambda turn: turn < 1, args.max_tokens, warm_chat)
            if args.images:
                image_client(server, 0, lambda turn: turn < 1, args.size, args.steps, warm_image)
            for warmed in (warm_chat, warm_image):
                if warmed.errors:
                    sys.exit(f"the warm-up failed: {next(iter(warmed.errors))}; see {server.log}")
            warm_seconds = time.perf_counter() - warm

            chats, images = Results(), Results()
            load_before = os.getloadavg()
            rss_before = server.rss_mb()
            peak = rss_before
            sampling = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not sampling.wait(0.1):
                    peak = max(peak, server.rss_mb())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            until = time.perf_counter() + args.seconds

            def more(turn: int) -> bool:
                return time.perf_counter() < until

            clients = [
                threading.Thread(target=chat_client, args=(server, i, more, args.max_tokens, chats))
                for i in range(args.chats)
            ] + [
                threading.Thread(target=image_client, args=(server, i, more, args.size, args.steps, images))
                for i in range(args.images)
            ]
            started = time.perf_counter()
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            wall = time.perf_counter() - started
            sampling.set()
            sampler.join()
            rss_after = server.rss_mb()
            peak = max(peak, rss_after)
            load_after = os.getloadavg()
        finally:
            server.close()

    growth = rss_after - rss_before
    errors = {**chats.errors, **images.errors}
    rows = []
    for kind, results, clients in (("chat streams", chats, args.chats), ("images", images, args.images)):
        if clients:
            rows.append(
                {
                    "kind": kind,
                    "clients": clients,
                    "done": results.done,
                    "errors": sum(results.errors.values()),
                    "ttft_p50": percentile(results.ttft, 50),
                    "ttft_p95": percentile(results.ttft, 95),
                    "total_p50": percentile(results.total, 50),
                    "total_p95": percentile(results.total, 95),
                    "total_min": min(results.total, default=None),
                    "total_max": max(results.total, default=None),
                }
            )
    print(
        f"aigc serve under load: {args.chats} chat streams (smollm2-135m, max_tokens {args.max_tokens}) + "
        f"{args.images} image clients ({image_name}, {args.size}x{args.size}, {args.steps} steps) for "
        f"{args.seconds:g} s; {wall:.1f} s with the requests in flight; warm-up {warm_seconds:.1f} s; "
        f"machine load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs)"
    )
    print()
    print(
        "| requests | clients | done | errors | TTFT p50 s | TTFT p95 s | whole p50 s | whole p95 s | whole min–max s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        spread = f"{seconds(row['total_min'])}–{seconds(row['total_max'])}"
        print(
            f"| {row['kind']} | {row['clients']} | {row['done']} | {row['errors']} | {seconds(row['ttft_p50'])} | "
            f"{seconds(row['ttft_p95'])} | {seconds(row['total_p50'])} | {seconds(row['total_p95'])} | {spread} |"
        )
    print()
    verdict = "ok" if growth <= args.max_growth_mb else "EXCEEDED"
    print(
        f"server RSS: before {rss_before:.0f} MiB, after {rss_after:.0f} MiB, peak {peak:.0f} MiB; growth "
        f"{growth:+.0f} MiB, bound {args.max_growth_mb:g} MiB: {verdict}"
    )
    if errors:
        print(f"errors: {sum(errors.values())}, {len(errors)} distinct:")
        for error, count in errors.items():
            print(f"  {count} × {error}")
    else:
        print("errors: 0")
    if args.json:
        figures = {
            "chats": args.chats,
            "images": args.images,
            "seconds": args.seconds,
            "wall_seconds": wall,
            "load_average": {"before": load_before[0], "after": load_after[0], "cpus": os.cpu_count()},
            "rows": rows,
            "rss_mb": {"before": rss_before, "after": rss_after, "peak": peak, "growth": growth},
            "max_growth_mb": args.max_growth_mb,
            "errors": errors,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    if errors or growth > args.max_growth_mb:
        sys.exit(1)


if __name__ == "__main__":
    main()
