"""bench/memory.py measures two real ``aigc serve`` processes that differ only in ``model_memory``: with
``one`` the server holds only the kind of model last asked for, with ``both`` it holds both, and the
table reports each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_memory_bench_short_run_on_the_tiny_model(tmp_path):
    options = ["--model", "tiny", "--size", "64", "--steps", "2", "--rounds", "1", "--results", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(BENCH / "memory.py"), *options], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    samples = json.loads(next(tmp_path.glob("memory-tiny-*.json")).read_text())["samples"]
    both, one = samples["both"], samples["one"]
    assert sorted(both["image"]["loaded"]) == ["bench-sd", "smollm2-135m"]
    assert sorted(both["chat again 1"]["loaded"]) == ["bench-sd", "smollm2-135m"]
    assert one["image"]["loaded"] == ["bench-sd"]
    assert one["chat again 1"]["loaded"] == ["smollm2-135m"]
    assert one["image again 1"]["loaded"] == ["bench-sd"]
    # Freed: the text model for the first image, the image model for the chat, the text model again.
    assert len(one["freed"]) == 3 and both["freed"] == []
    for setting in (both, one):
        assert 0.1 < setting["start"]["rss_gb"] <= setting["peak_rss_gb"]
    # Each model's load as the server timed it: once with both, again at each switch with one.
    rows = {line.split(" |")[0]: line for line in done.stdout.splitlines() if line.startswith("| model_memory=")}
    assert "reloads" not in rows["| model_memory=both"] and "(once)" in rows["| model_memory=both"]
    assert rows["| model_memory=one"].count("reloads") == 2
