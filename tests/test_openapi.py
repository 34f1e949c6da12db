"""The OpenAPI schema tells the truth.

schemathesis fuzzes every API operation (/v1, /sdapi/v1, /api, /health) of a live server, as a user would
run it from the repository root (``st run URL/openapi.json``, which reads schemathesis.toml and
tests/fuzz_hooks.py), with all its default checks, a bounded number of examples per operation and no
randomness; it must find nothing. The other tests pin each bug such a run found, and what the schema
says about errors, methods and limits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aigc_studio.api.app import create_app
from aigc_studio.config import load_config
from aigc_studio.studio import Studio

from .conftest import LiveServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``aigc serve`` with the test models: the echo text engine and the plain image engine."""
    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("openapi-home"))
    studio = Studio(load_config(model="echo", image_model="plain"))
    with LiveServer(create_app(studio)) as live:
        live.studio = studio
        yield live
    studio.close()


# The repository's schemathesis.toml (the hooks), and: a bounded, repeatable run that keeps nothing.
FUZZ_SETTINGS = """
[generation]
max-examples = 25
deterministic = true
database = "none"

[cache]
enabled = false
"""


def test_schemathesis_finds_nothing(server, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text((ROOT / "schemathesis.toml").read_text() + FUZZ_SETTINGS)
    st = Path(sys.executable).with_name("st")
    command = [str(st), "--config-file", str(config), "--no-color", "run", server.url + "/openapi.json"]
    # One worker: requests one at a time, so image jobs never pile up (and hypothesis is not thread-safe).
    command += ["--workers", "1", "--continue-on-failure", "--max-failures", "50"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    operations = sum(len(path) for path in httpx.get(server.url + "/openapi.json").json()["paths"].values())
    assert f"Tested: {operations}" in report, report[-3000:]
    # the fuzzer's generations all ran and none failed; the server still answers
    states = dict(server.studio.db.conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    assert states.get("done", 0) > 50 and set(states) <= {"done"}, states
    assert server.studio.jobs.pending() == []
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
