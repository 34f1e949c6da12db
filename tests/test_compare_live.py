"""Compare with real models: the embedded SmolLM2 in process beside the same model behind llama.cpp's
own server (xllamacpp's, in another process), registered as a remote model. The two
streams run at the same time, not one after the other: while both stream, both produce text."""

from __future__ import annotations

import time

import pytest

from aigc_studio.contracts import Message, TextOptions

from .conftest import make_studio
from .remote_helpers import llama_cpp_server

pytestmark = pytest.mark.timeout(300)

OPTIONS = TextOptions(max_tokens=64, temperature=0, seed=1)
PROMPT = "Write a short story about a lighthouse keeper."


@pytest.fixture(scope="module")
def llama_server(smollm_path):
    """The embedded model behind llama.cpp's OpenAI-compatible server, one thread (as in
    tests/test_remote.py), so that it and the in-process model each have a core of their own."""
    with llama_cpp_server(smollm_path) as base:
        yield base


def single_run(studio, model: str) -> tuple[float, str]:
    started = time.perf_counter()
    prepared = studio.chat.prepare(
        [Message(role="user", content=PROMPT)], model=model, options=OPTIONS, source="compare", store=False
    )
    result = studio.chat.complete(prepared)
    return time.perf_counter() - started, result.text


def test_a_remote_and_the_in_process_model_answer_at_the_same_time(tmp_path, llama_server):
    studio = make_studio(tmp_path / "home", model="smollm2-135m", threads=1)
    try:
        studio.models.add_remote("smol-remote", llama_server, "smol")
        for model in ("smollm2-135m", "smol-remote"):  # load and warm both
            single_run(studio, model)
        local_s, local_text = single_run(studio, "smollm2-135m")
        remote_s, remote_text = single_run(studio, "smol-remote")

        started = time.perf_counter()
        comparison = studio.compare.text(PROMPT, ["smollm2-135m", "smol-remote"], options=OPTIONS)
        events = []
        for event in comparison:
            events.append((time.perf_counter() - started, event))
        together_s = time.perf_counter() - started

        deltas = {pane: [t for t, e in events if e.type == "delta" and e.pane == pane] for pane in (0, 1)}
        done = {e.pane: (t, e) for t, e in events if e.type == "pane_done"}
        assert set(done) == {0, 1}, [e for _, e in events if e.type == "pane_error"]
        # both panes streamed, and each had text before the other had finished
        assert len(deltas[0]) > 10 and len(deltas[1]) > 10
        assert deltas[0][0] < done[1][0] and deltas[1][0] < done[0][0]
        # the same greedy answer as each model alone
        assert done[0][1].text == local_text and done[1][1].text == remote_text
        assert {e.stats["finish_reason"] for _, e in done.values()} == {"length"}
        assert all(e.stats["completion_tokens"] == 64 for _, e in done.values())
        # They ran at the same time, not one after the other: while both were streaming (from the later
        # first piece to the earlier finish), each pane produced text. (Wall time is no proof on 2 shared
        # cores: two CPU-bound models take about the sum of their times whether they overlap or not. Nor is
        # a share of the text: the in-process pane evaluates its seeded prompt afresh, 0.3-0.7 s on one
        # thread, while the server answers from its prompt cache at once.)
        start = max(deltas[0][0], deltas[1][0])
        end = min(done[0][0], done[1][0])
        both = {pane: sum(1 for t in deltas[pane] if start <= t <= end) for pane in (0, 1)}
        assert min(both.values()) >= 5, (
            f"pieces each pane produced while both streamed ({end - start:.2f} s): {both}; "
            f"first pieces at {deltas[0][0]:.2f} / {deltas[1][0]:.2f} s, done at {done[0][0]:.2f} / {done[1][0]:.2f} s"
        )
        print(f"\nalone: in-process {local_s:.2f} s, remote {remote_s:.2f} s; together {together_s:.2f} s")
    finally:
        studio.close()
