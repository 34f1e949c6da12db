"""bench/sandbox.py measures what it says: every variant runs the same program and prints 1, and the
table has a row for each language and variant with the bare run as the baseline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_short_run_prints_a_row_per_language_and_variant(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH / "sandbox.py"), "--rounds", "2", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent / "src")},
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| Python") or line.startswith("| Node")]
    names = [row.split("|")[1].split(":")[1].strip() for row in rows]
    assert names == ["sandbox", "bare", "bwrap only"] * 2
    assert all(re.fullmatch(r"\| .+ \| [\d.]+ \([\d.]+–[\d.]+\) \| .+ \| .+ \|", row) for row in rows)
    assert [row.split("|")[3].strip() for row in rows if ": bare" in row] == ["–", "–"]
    (saved,) = tmp_path.glob("sandbox-*.json")
    samples = json.loads(saved.read_text())["samples_s"]
    assert {language: {v: len(s) for v, s in variants.items()} for language, variants in samples.items()} == {
        language: {"sandbox": 2, "bare": 2, "bwrap only": 2} for language in ("python", "javascript")
    }
