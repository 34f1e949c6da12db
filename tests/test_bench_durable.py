"""bench/durable.py measures what durability costs: files written whole against plain writes, and a
request's batches made one call each (so each is saved as it finishes) against one call for all, whose
pixels must be the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_durable_bench_short_run_on_the_tiny_model(tmp_path):
    options = ["--steps", "2", "--n-iter", "2", "--rounds", "1", "--files", "3", "--kb", "8", "--threads", "1"]
    done = subprocess.run(
        [sys.executable, str(BENCH / "durable.py"), *options, "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    samples = json.loads(next(tmp_path.glob("durable-*.json")).read_text())
    assert len(samples["files"]["before"]) == len(samples["files"]["now"]) == 1
    assert len(samples["batches"]["before"]) == len(samples["batches"]["now"]) == 1
    assert samples["batches"]["max_pixel_difference"] == 0
    rows = [
        line
        for line in done.stdout.splitlines()
        if line.startswith("| one 8 KiB file") or line.startswith("| 2 batches")
    ]
    assert len(rows) == 2
    # The bench cleans up after itself: only its samples are left.
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.glob("durable-*.json")).name]
