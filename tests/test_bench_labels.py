"""bench/labels.py runs standalone and reports every row and number the README's watermark table shows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "labels.py"


def test_labels_bench_short_run_reports_both_methods(tmp_path):
    out = tmp_path / "labels.json"
    options = ["--images", "2", "--synthetic", "2", "--rounds", "1", "--json", str(out)]
    done = subprocess.run([sys.executable, str(BENCH), *options], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 natural and 2 synthetic 512×512 images, 1 timing rounds" in done.stdout
    assert "### dwtDctSvd-32 (found: confidence >= 0.2)" in done.stdout
    assert "### rivagan-32@128 (found: confidence >= 0.5)" in done.stdout
    assert "a random read within 1 bit(s) of one of 100,000 items: 0.077%" in done.stdout
    results = json.loads(out.read_text())
    assert set(results) == {"studio", "rivagan"}
    for result in results.values():
        assert list(result["attacks"]) == ["none", "jpeg90", "jpeg75", "jpeg50", "resize50", "crop10", "webp80"]
        assert result["false_positives"]["natural"]["images"] == 2
        assert result["false_positives"]["synthetic"]["images"] == 2
        assert len(result["embed_ms"]) == len(result["detect_ms"]) == 1
        assert 30 < result["psnr_mean"] < 60
    # with no attack the studio's method reads its own marks back, every bit
    assert results["studio"]["attacks"]["none"]["exact_rate"] == 1.0


def test_labels_bench_refuses_bad_arguments():
    done = subprocess.run([sys.executable, str(BENCH), "--images", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--images and --rounds must be at least 1, got 0 and 3" in done.stderr
