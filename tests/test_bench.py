"""The benchmarks measure what they say they measure.

bench/text.py: the studio's prompt tokens are llama.cpp's own rendering of the chat template, the raw rows
(llama.cpp's server loop; ``Llama.generate`` where the bench extra is installed) evaluate exactly those
tokens, every variant gets every prompt in every round, and a short real run (no peer) records exact token counts for
each variant. bench/long_prompt.py: a short run, where small steps keep the other answer going.
bench/llama_server.py: where llama-server cannot be fetched, it says why. bench/image.py: a
short real run on the tiny model, raw pipeline and the studio engine's optimization rows in their own
processes, with the same scheduler class and config, the asked number of steps, a speed-up and a pixel
difference against the raw pipeline for each.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from aigc_studio.contracts import Message, TextOptions, TextRequest
from aigc_studio.engines.llamacpp import DEFAULTS, LlamaCppEngine

from .remote_helpers import llama_cpp_server

BENCH = Path(__file__).resolve().parents[1] / "bench"
LEFT_OUT = "raw Llama.generate left out: llama-cpp-python is not installed (bash setup.sh --bench installs it)"


def load(name: str):
    """A bench script as a module (bench/ is a folder of scripts, not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_bench(script: str, options: list[str], results: Path) -> subprocess.CompletedProcess:
    """A short real run of bench/SCRIPT.py, its results in ``results``; it must end with exit 0."""
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), *options, "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def text_bench():
    return load("text")


@pytest.fixture(scope="module")
def studio_engine(smollm_path):
    engine = LlamaCppEngine("smollm2-135m", smollm_path, threads=1, parallel=1)
    yield engine
    engine.close()


def test_the_bench_prompts_tokenize_as_llama_cpp_renders_and_tokenizes_them(text_bench, smollm_path, studio_engine):
    """The studio's template rendering and tokenizing give exactly the tokens llama.cpp's own Jinja chat
    template and tokenizer give (a server of its own), so every row evaluates the same input."""
    with llama_cpp_server(smollm_path) as base:
        root = base.removesuffix("/v1")
        for text in text_bench.PROMPTS:
            messages = [Message(role="user", content=text)]
            body = {"messages": [m.model_dump(include={"role", "content"}) for m in messages]}
            theirs = httpx.post(root + "/apply-template", json=body, timeout=30).json()["prompt"]
            tokens = httpx.post(
                root + "/tokenize",
                json={"content": theirs, "add_special": False, "parse_special": True},
                timeout=30,
            ).json()["tokens"]
            assert tokens == studio_engine._prompt_tokens(messages)


def check_raw_variant(variant, text: str, studio_prompt_tokens: int) -> None:
    sample = variant.ask(text, 6)
    assert sample.prompt_tokens == studio_prompt_tokens
    # the model may end its answer early; it never goes past max_tokens
    assert 1 <= sample.completion_tokens <= 6
    assert sample.ttft > 0 and sample.decode >= 0


def studio_prompt_tokens(engine, text: str) -> int:
    request = TextRequest([Message(role="user", content=text)], TextOptions(max_tokens=6, **DEFAULTS))
    return list(engine.stream(request, threading.Event()))[-1].usage.prompt_tokens


def test_the_raw_server_loop_evaluates_the_studios_prompt_and_stops_at_max_tokens(
    text_bench, smollm_path, studio_engine
):
    text = text_bench.prompt(0, 0)
    loop = text_bench.RawServerLoop(smollm_path, dict(DEFAULTS))
    try:
        check_raw_variant(loop, text, studio_prompt_tokens(studio_engine, text))
    finally:
        loop.close()


def test_raw_llama_generate_evaluates_the_studios_prompt_and_stops_at_max_tokens(
    text_bench, smollm_path, studio_engine
):
    pytest.importorskip(
        "llama_cpp",
        reason="llama-cpp-python (the bench's raw Llama.generate row) is the bench extra: bash setup.sh --bench",
    )
    text = text_bench.prompt(0, 0)
    raw = text_bench.Raw(smollm_path, dict(DEFAULTS), studio_engine)
    try:
        check_raw_variant(raw, text, studio_prompt_tokens(studio_engine, text))
    finally:
        raw.close()


def test_every_round_asks_every_prompt_and_rounds_differ(text_bench):
    assert text_bench.batches(1) == [[0], [1], [2], [3]]
    assert text_bench.batches(4) == [[0, 1, 2, 3]]
    assert text_bench.batches(3) == [[0, 1, 2], [3, 0, 1]]
    assert text_bench.prompt(2, 0) != text_bench.prompt(2, 1)  # no variant answers from a cached prompt
    assert text_bench.prompt(2, 1).endswith(text_bench.PROMPTS[2])


def test_text_bench_short_run_records_each_variant(tmp_path):
    options = ["--rounds", "1", "--tokens", "4", "--clients", "1,2", "--no-peer", "--idle-seconds", "1"]
    # a second `aigc serve`, as another virtual environment's build of llama.cpp would run (here the same one)
    options += ["--also-studio", f"again={sys.executable}"]
    done = run_bench("text", options, tmp_path)
    data = json.loads(next(tmp_path.glob("text-*.json")).read_text())
    variants = ("raw server loop", "studio engine", "studio server", "studio server (again)")
    if importlib.util.find_spec("llama_cpp"):  # the bench extra
        variants += ("raw Llama.generate",)
        assert "| studio server ÷ raw Llama.generate | 2 |" in done.stdout
    else:
        assert LEFT_OUT in data["notes"] and "| raw Llama.generate |" not in done.stdout
    assert set(data["summary"]) == {f"{v} @{c}" for v in variants for c in (1, 2)}
    assert set(data["scaling"]) == {f"{v} @2 ÷ @1 aggregate_tps" for v in variants}
    # one round: the four prompts once per variant, two at a time; the same tokens in for every variant
    rounds = [data["samples"][f"{v} @2"] for v in variants]
    assert all(len(r) == 1 and len(r[0]) == 4 for r in rounds)
    assert len({tuple(s["prompt_tokens"] for s in r[0]) for r in rounds}) == 1
    assert all(1 <= s["completion_tokens"] <= 4 for r in rounds for s in r[0])
    assert "llama-server left out (--no-peer)." in data["notes"]
    assert "| studio server ÷ raw server loop | 2 |" in done.stdout
    assert "| studio server (again) ÷ studio server | 2 |" in done.stdout
    assert f"studio server (again) runs {sys.executable}: llama.cpp from xllamacpp " in "\n".join(data["notes"])
    assert "| studio server | " in done.stdout.split("aggregate tok/s at the most clients")[1]


def test_long_prompt_bench_short_run_shows_the_stream_going_on_in_small_steps(tmp_path):
    options = ["--rounds", "1", "--prompt-words", "300", "--batches", "32,2048", "--no-peer"]
    done = run_bench("long_prompt", options, tmp_path)
    samples = json.loads(next(tmp_path.glob("long-prompt-*.json")).read_text())["samples"]
    small, large = samples["studio server, prompt_batch 32"], samples["studio server, prompt_batch 2048"]
    assert len(small) == len(large) == 1 and small[0]["valid"] and large[0]["valid"]
    assert small[0]["b_prompt_tokens"] == large[0]["b_prompt_tokens"] > 250
    # in steps of 32 the streaming answer went on while the long prompt was read; in one step it waited
    assert small[0]["a_tokens_while_b_read"] >= 4 > large[0]["a_tokens_while_b_read"]
    assert "| studio server, prompt_batch 32 | " in done.stdout.split("Ratios to studio server, prompt_batch 2048")[1]


def test_peer_fetch_says_why_it_cannot_run(tmp_path, monkeypatch):
    llama_server = load("llama_server")
    monkeypatch.setattr(llama_server.shutil, "which", lambda tool: None)
    with pytest.raises(llama_server.PeerUnavailable, match="needs apt-get and dpkg-deb"):
        llama_server.fetch_llama_server(tmp_path / "cache")
    assert not (tmp_path / "cache" / "root").exists()


def test_peer_fetch_uses_the_machines_debian_mirror(tmp_path):
    llama_server = load("llama_server")
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert llama_server.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert llama_server.debian_mirror(tmp_path) == "http://old.example/debian"
    (tmp_path / "sources.list").write_text("deb http://ppa.example/ubuntu jammy main\n")
    with pytest.raises(llama_server.PeerUnavailable, match="no Debian mirror"):
        llama_server.debian_mirror(tmp_path)


def test_image_bench_short_run_on_the_tiny_model(tmp_path):
    variants = "raw,engine,channels-last,fused-qkv,tome"
    options = ["--model", "tiny", "--steps", "3", "--runs", "1", "--size", "64", "--variants", variants, "--group", "4"]
    done = run_bench("image", options, tmp_path)
    data = json.loads(next(tmp_path.glob("image-tiny-*.json")).read_text())
    schedulers = data["schedulers"]
    kinds = variants.split(",")
    assert all(schedulers[kind] == schedulers["raw"] for kind in kinds)
    assert schedulers["raw"]["class"] == "A1111EulerAncestral"  # the studio's Euler a, in all
    for kind in kinds:
        (run,) = data["runs"][kind]
        assert run["size"] == [64, 64]
        assert len(run["marks"]) == 3  # one mark per denoising step
        assert data["rows"][kind]["peak_rss_gb"] > 0.1
    assert "same class and config" in done.stdout
    # Each variant's row, with a speed-up and a pixel difference against the raw pipeline of its group
    # (two groups: raw with three others, then raw with one).
    differences = data["pixel_difference_vs_raw"]
    labels = load("image").LABELS
    for kind in kinds[1:]:
        assert f"| {labels[kind]} |" in done.stdout
        assert data["ratios"][f"{kind} speed-up total"]["n"] == 1
    for kind in ("engine", "channels-last", "fused-qkv"):  # within the README's stated difference
        assert differences[kind]["max"] <= 2, (kind, differences[kind])
    assert differences["tome"]["mean"] > differences["engine"]["mean"]  # token merging changes the picture
