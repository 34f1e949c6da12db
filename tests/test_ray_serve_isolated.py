"""Runs tests/test_ray_serve.py (``aigc serve --ray`` passing the single-process API tests) in a pytest
process of its own: Ray leaves gRPC threads behind in the process that ran it, and processes forked from
there afterwards misbehave (see conftest.py). Its output comes back when it fails or skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def test_the_ray_serve_tests_pass_in_a_process_of_their_own():
    pytest.importorskip(
        "ray.serve", reason="the ray extra is not installed (pip install -e '.[ray]'; setup.sh --dev installs it)"
    )
    env = {**os.environ, "RAY_TESTS_HERE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(HERE / "test_ray_serve.py")],
        cwd=HERE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, r.stdout[-12000:] + r.stderr[-4000:]
    assert " passed" in summary and "skipped" not in summary and "deselected" not in summary, r.stdout[-4000:]
