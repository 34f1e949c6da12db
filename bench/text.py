"""Text generation speed: the studio against the raw engine and a peer server, in one run.

    .venv/bin/python bench/text.py [--tokens 128] [--rounds 3]

Measures, on the embedded SmolLM2 with the same prompts and sampling options:
  (a) raw llama_cpp.Llama.create_chat_completion, streamed, in this process
  (b) the studio's engine in this process (through its worker queue)
  (c) the studio server (`aigc serve`) through the official openai client
  (d) `python -m llama_cpp.server` through the official openai client
at 1 client and at 4 concurrent clients, and prints one Markdown table with ratios to (a) and (d).
Completion tokens are counted the same way for every variant: by re-tokenizing the streamed text.
No request sets a seed: a seeded request makes the studio evaluate its prompt afresh (for exact
reproducibility) instead of reusing the cached prefix, which is not what a chat client usually asks.
Servers run one at a time, on loopback, so no two variants compete for the two cores. (d) runs with
--interrupt_requests False: by default it aborts a running stream when the next request arrives, which
would leave concurrent clients with empty answers.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aigc_studio.contracts import Message, TextOptions, TextRequest
from aigc_studio.engines.llamacpp import DEFAULTS, LlamaCppEngine
from aigc_studio.engines.worker import EngineWorker
from aigc_studio.models.registry import embedded_model_path

THREADS = os.cpu_count() or 1
TOPICS = [
    "lighthouses",
    "bread baking",
    "comets",
    "honeybees",
    "old maps",
    "rivers",
    "glass making",
    "chess openings",
    "volcanoes",
    "tea",
    "bridges",
    "owls",
]
CONTEXT = (
    "You are writing for a general audience blog. Keep a warm tone, use concrete examples, avoid lists, "
    "and write in full paragraphs. The readers are curious adults who like history and science. "
)


def prompt(i: int) -> list[dict]:
    # Distinct prompts, so no variant gets a prompt-cache hit that another does not.
    topic = TOPICS[i % len(TOPICS)]
    return [{"role": "user", "content": f"{CONTEXT * 3}Write a long article about {topic} (request {i})."}]


@dataclass
class Sample:
    ttft: float  # seconds from sending to the first text
    decode: float  # seconds from the first text to the last
    tokens: int
    prompt_tokens: int


def measure(stream, counter, n_prompt: int) -> Sample:
    start = time.perf_counter()
    first = last = None
    text = []
    for piece in stream:
        if piece:
            last = time.perf_counter()
            first = first or last
            text.append(piece)
    if first is None:
        raise RuntimeError("a request produced no text")
    return Sample(first - start, last - first, counter("".join(text)), n_prompt)


@dataclass
class Row:
    name: str
    clients: int
    samples: list[Sample]
    wall: float

    @property
    def prompt_tps(self) -> float:
        return statistics.mean(s.prompt_tokens / s.ttft for s in self.samples)

    @property
    def decode_tps(self) -> float:
        return statistics.mean((s.tokens - 1) / s.decode for s in self.samples)

    @property
    def aggregate_tps(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall

    @property
    def ttft_ms(self) -> float:
        return statistics.median(s.ttft for s in self.samples) * 1000


def run_clients(name: str, one_request, clients: int, rounds: int, offset: int) -> Row:
    """``rounds`` requests per client, ``clients`` at a time."""
    indices = list(range(offset, offset + clients * rounds))
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        samples = list(pool.map(one_request, indices))
    return Row(name, clients, samples, time.perf_counter() - start)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def openai_variant(name, base_url, counter, count_prompt, args, sampling, offset) -> list[Row]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)

    def one(i: int) -> Sample:
        stream = client.chat.completions.create(
            model="smollm2-135m",
            messages=prompt(i),
            stream=True,
            max_tokens=args.tokens,
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            extra_body={k: sampling[k] for k in ("top_k", "min_p", "repeat_penalty")},
        )
        return measure((c.choices[0].delta.content for c in stream if c.choices), counter, count_prompt(i))

    one(offset + 10_000)  # warm-up
    return [run_clients(name, one, c, args.rounds, offset + 100 * c) for c in (1, 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per request")
    parser.add_argument("--rounds", type=int, default=3, help="requests per client")
    args = parser.parse_args()

    import llama_cpp

    model = embedded_model_path()
    assert model, "embedded model missing: bash setup.sh"
    sampling = dict(DEFAULTS)
    vocab = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)

    def counter(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False))

    studio_engine = LlamaCppEngine("smollm2-135m", model, threads=THREADS)

    def count_prompt(i: int) -> int:
        return studio_engine.count_prompt_tokens([Message(**m) for m in prompt(i)])

    rows: list[Row] = []

    # (a) raw llama-cpp-python, serialized by a lock as any single-context server must
    raw = llama_cpp.Llama(str(model), n_ctx=8192, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
    lock = threading.Lock()

    def raw_one(i: int) -> Sample:
        def pieces():
            with lock:
                for c in raw.create_chat_completion(
                    messages=prompt(i),
                    stream=True,
                    max_tokens=args.tokens,
                    temperature=sampling["temperature"],
                    top_p=sampling["top_p"],
                    top_k=sampling["top_k"],
                    min_p=sampling["min_p"],
                    repeat_penalty=sampling["repeat_penalty"],
                ):
                    yield c["choices"][0]["delta"].get("content")

        return measure(pieces(), counter, count_prompt(i))

    raw_one(10_000)
    rows += [run_clients("(a) raw llama_cpp.Llama", raw_one, c, args.rounds, 100 * c) for c in (1, 4)]
    raw.close()

    # (b) the studio engine in process
    worker = EngineWorker(studio_engine)

    def engine_one(i: int) -> Sample:
        opts = TextOptions(max_tokens=args.tokens, **sampling)
        job = worker.submit(TextRequest([Message(**m) for m in prompt(i)], opts))
        return measure((c.text for c in job), counter, count_prompt(i))

    engine_one(10_000)
    rows += [run_clients("(b) studio engine, in process", engine_one, c, args.rounds, 100 * c) for c in (1, 4)]

    # (c) the studio server, (d) llama-cpp-python's server: each alone on the machine
    servers = [
        (
            "(c) studio server + openai client",
            [sys.executable, "-m", "aigc_studio", "serve", "--port", "{port}", "--log-level", "warning"],
            "/health",
        ),
        (
            "(d) llama_cpp.server + openai client",
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--n_ctx",
                "8192",
                "--n_threads",
                str(THREADS),
                "--n_threads_batch",
                str(THREADS),
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--interrupt_requests",
                "False",
            ],
            "/v1/models",
        ),
    ]
    for name, cmd, ready in servers:
        port = 18000 + len(rows)
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "AIGC_HOME": home}
            proc = subprocess.Popen(
                [c.format(port=port) for c in cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_ready(f"http://127.0.0.1:{port}{ready}", proc)
                rows += openai_variant(name, f"http://127.0.0.1:{port}/v1", counter, count_prompt, args, sampling, 0)
            finally:
                proc.terminate()
                proc.wait(30)

    base = {r.clients: r for r in rows if r.name.startswith("(a)")}
    peer = {r.clients: r for r in rows if r.name.startswith("(d)")}
    print(f"\nSmolLM2-135M Q4_1, {THREADS} threads, {args.tokens} max tokens, {args.rounds} requests per client\n")
    print(
        "| variant | clients | prompt tok/s | decode tok/s | aggregate tok/s | TTFT ms (median) "
        "| decode ÷ (a) | aggregate ÷ (a) | aggregate ÷ (d) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b, p = base[r.clients], peer[r.clients]
        # With several clients, the time to first token is mostly waiting in the queue.
        prompt_tps = f"{r.prompt_tps:.0f}" if r.clients == 1 else "–"
        print(
            f"| {r.name} | {r.clients} | {prompt_tps} | {r.decode_tps:.1f} | {r.aggregate_tps:.1f} | "
            f"{r.ttft_ms:.0f} | {r.decode_tps / b.decode_tps:.2f} | {r.aggregate_tps / b.aggregate_tps:.2f} | "
            f"{r.aggregate_tps / p.aggregate_tps:.2f} |"
        )


if __name__ == "__main__":
    main()
