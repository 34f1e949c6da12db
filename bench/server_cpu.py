"""Where `aigc serve`'s CPU goes while it streams answers: llama.cpp's compute threads or the studio's own
Python (HTTP, SSE, queues, history).

    .venv/bin/python bench/server_cpu.py                  # 4 clients, 3 answers each, 128 tokens: ~1 min
    .venv/bin/python bench/server_cpu.py --clients 1 --rounds 6

Starts `aigc serve` in a fresh AIGC_HOME on the embedded model, warms it with one answer, then reads
every thread's CPU time (/proc/PID/task/*/stat) before and after ``--clients`` concurrent streams of
``--rounds`` answers each. The process's own total (/proc/PID/stat) counts threads that ended too.
llama.cpp's compute threads are the ones that each took more than a quarter of the total; the rest is
the studio's Python and the libraries around it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from procs import free_port, studio_env, wait_ready  # noqa: E402


def _ticks(path: str) -> int:
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


def thread_ticks(pid: int) -> dict[str, int]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # it ended between the listing and the read
            out[tid] = _ticks(f"/proc/{pid}/task/{tid}/stat")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="aigc-server-cpu-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "aigc_studio", "serve", "--port", str(port), "--log-level", "warning"]
    with open(home / "serve.log", "wb") as log:
        server = subprocess.Popen(command, env=studio_env(home), stdout=log, stderr=log)
    try:
        wait_ready(server, url + "/health", "aigc serve", home / "serve.log")
        model = httpx.get(url + "/v1/models").json()["data"][0]["id"]
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        httpx.post(url + "/v1/chat/completions", json=body, timeout=300)

        chunks = [0] * args.clients

        def client(i: int) -> None:
            for r in range(args.rounds):
                question = f"Write story {i}.{r} about a lighthouse keeper and a storm."
                body = {"model": model, "stream": True, "max_tokens": args.max_tokens}
                body["messages"] = [{"role": "user", "content": question}]
                with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as answer:
                    chunks[i] += sum(1 for line in answer.iter_lines() if line.startswith("data: {"))

        before, process_before = thread_ticks(server.pid), _ticks(f"/proc/{server.pid}/stat")
        started = time.perf_counter()
        clients = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        wall = time.perf_counter() - started
        after, process_after = thread_ticks(server.pid), _ticks(f"/proc/{server.pid}/stat")
    finally:
        server.terminate()
        server.wait(timeout=60)

    total = process_after - process_before
    used = sorted(((after[t] - before.get(t, 0), t) for t in after), reverse=True)
    compute = [(ticks, tid) for ticks, tid in used if ticks > total / 4]
    compute_ticks = sum(ticks for ticks, _ in compute)
    hz = os.sysconf("SC_CLK_TCK")
    print(f"{args.clients} clients × {args.rounds} answers, {sum(chunks)} chunks in {wall:.1f} s")
    print("| threads | CPU s | share of the process |")
    print("|---|---:|---:|")
    print(f"| llama.cpp compute ({len(compute)}) | {compute_ticks / hz:.2f} | {100 * compute_ticks / total:.1f}% |")
    rest = total - compute_ticks
    print(f"| everything else (the studio's Python, HTTP) | {rest / hz:.2f} | {100 * rest / total:.1f}% |")
    print(f"| the whole process | {total / hz:.2f} | 100% |")


if __name__ == "__main__":
    main()
