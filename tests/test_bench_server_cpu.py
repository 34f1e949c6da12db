"""bench/server_cpu.py splits a real ``aigc serve``'s CPU between llama.cpp's compute threads and the rest
while clients stream answers; a short run prints the table and its shares add up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_server_cpu_bench_short_run():
    options = ["--clients", "2", "--rounds", "1", "--max-tokens", "16"]
    done = subprocess.run(
        [sys.executable, str(BENCH / "server_cpu.py"), *options], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert re.match(r"2 clients × 1 answers, \d+ chunks in [\d.]+ s", lines[0]), lines[0]
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ") and "%" in line}
    shares = [float(re.search(r"([\d.]+)% \|$", row).group(1)) for row in rows.values()]
    assert len(rows) == 3 and any(name.startswith("| llama.cpp compute (") for name in rows)
    assert abs(shares[0] + shares[1] - 100) < 0.2 and shares[2] == 100
    assert int(lines[0].split(", ")[1].split()[0]) >= 2  # every answer streamed chunks
