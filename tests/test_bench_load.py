"""bench/load.py drives a real ``aigc serve`` (SmolLM2 and the tiny SD model) with chat streams and image
jobs at once; a short run prints its table, counts no errors and keeps the server's memory in bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_load_bench_short_run(tmp_path):
    figures = tmp_path / "load.json"
    options = ["--chats", "2", "--images", "1", "--seconds", "4", "--max-tokens", "16", "--json", str(figures)]
    done = subprocess.run(
        [sys.executable, str(BENCH / "load.py"), *options], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("aigc serve under load: 2 chat streams") and "load average" in lines[0]
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| requests | clients | done | errors | TTFT p50 s | TTFT p95 s |")
    assert [row.split(" | ")[0] for row in table[1:]] == ["| chat streams", "| images"]
    assert "errors: 0" in lines
    assert any(line.startswith("server RSS: before ") and line.endswith(": ok") for line in lines)

    result = json.loads(figures.read_text())
    chats, images = result["rows"]
    assert result["errors"] == {} and chats["errors"] == images["errors"] == 0
    assert chats["done"] >= 2 and images["done"] >= 1  # every client finished at least one request
    assert 0 < chats["ttft_p50"] <= chats["ttft_p95"] <= chats["total_p95"]
    assert 0 < images["total_p50"] <= images["total_p95"] and images["ttft_p50"] is None
    rss = result["rss_mb"]
    assert 100 < rss["before"] <= rss["peak"] and rss["after"] <= rss["peak"]
    assert rss["growth"] == rss["after"] - rss["before"] <= result["max_growth_mb"]
