"""bench/label_cost.py runs and reports what it says: a row per pipeline stage, the whole pipeline and
what it adds over the raw PNG write, with KB, and every sample saved."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_one_round_prints_every_stage_and_saves_the_samples(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH / "label_cost.py"), "--rounds", "1", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert "Labeling cost at 512×512, 1 round(s)" in done.stdout
    rows = [
        line for line in done.stdout.splitlines() if re.fullmatch(r"\| .+ \| [\d.]+ \| [+-]?[\d.]+( KB file)? \|", line)
    ]
    names = [row.split("|")[1].strip() for row in rows]
    assert names == [
        "raw PNG write (before labels)",
        "nsfw",
        "mark",
        "watermark",
        "metadata",
        "c2pa",
        "whole pipeline (label_image)",
        "added over the raw PNG write",
    ]
    c2pa_kb = float(rows[5].split("|")[3])
    assert 5 < c2pa_kb < 100  # a manifest with its thumbnail and certificate chain
    (saved,) = tmp_path.glob("label_cost-*.json")
    record = json.loads(saved.read_text())
    assert {name: len(values) for name, values in record["samples_ms"].items()} == dict.fromkeys(
        ["raw PNG", "pipeline", "nsfw", "mark", "watermark", "metadata", "c2pa"], 1
    )
    assert record["labels"]["visible"]["text"] == "AI生成" and record["labels"]["c2pa"] is True
