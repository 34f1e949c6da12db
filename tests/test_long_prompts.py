"""Long prompts on llama.cpp (the real embedded SmolLM2): read ``prompt_batch`` tokens per step, with the
progress reported after each step, while the model's other answers go on between the steps."""

from __future__ import annotations

import threading
import time

import pytest

from aigc_studio.contracts import Message, TextOptions, TextRequest
from aigc_studio.engines.llamacpp import DEFAULT_BATCH, LlamaCppEngine

pytestmark = pytest.mark.timeout(300)

# About 500 tokens: long enough for many steps of 32 or 64, read in a few seconds on two cores.
LONG = "Summarize this text in one sentence: " + " ".join(
    f"{word} {i}" for i, word in enumerate(["river", "stone", "garden", "light", "window"] * 20)
)
SHORT = [Message(role="user", content="Write one sentence about the sea.")]


@pytest.fixture(scope="module")
def stepped(smollm_path):
    """Steps of 64 prompt tokens, two slots."""
    engine = LlamaCppEngine("smollm2-135m", smollm_path, batch=64, parallel=2)
    yield engine
    engine.close()


def chunks_of(engine, messages, **options):
    return list(engine.stream(TextRequest(messages, TextOptions(**options)), threading.Event()))


def test_the_default_step_is_128_and_the_setting_is_checked(tmp_path, monkeypatch):
    from aigc_studio.config import SettingError, load_config

    monkeypatch.setenv("AIGC_HOME", str(tmp_path))
    assert DEFAULT_BATCH == 128 == load_config().prompt_batch
    monkeypatch.setenv("AIGC_PROMPT_BATCH", "512")
    assert load_config().prompt_batch == 512
    with pytest.raises(SettingError, match=r"prompt_batch.*16"):
        load_config(prompt_batch=8)


def test_a_long_prompt_says_how_far_it_has_read_before_the_answer(stepped):
    chunks = chunks_of(stepped, [Message(role="user", content=LONG)], seed=1, max_tokens=4)
    total = chunks[-1].usage.prompt_tokens
    assert total > 400
    first_text = next(i for i, c in enumerate(chunks) if c.text)
    reported = [(i, c.prompt_progress) for i, c in enumerate(chunks) if c.prompt_progress is not None]
    # one report as reading starts and one after each step but the last, all before the answer's first text
    assert all(i < first_text for i, _ in reported)
    read = [step.read for _, step in reported]
    assert read == list(range(0, total, 64)), read
    assert {step.total for _, step in reported} == {total} and {step.cached for _, step in reported} == {0}
    assert [step.ms for _, step in reported] == sorted(step.ms for _, step in reported)
    assert not any(chunks[i].text for i, _ in reported)
    assert chunks[-1].finish_reason == "length" and chunks[-1].usage.completion_tokens == 4


def test_a_prompt_of_one_step_reports_nothing(stepped):
    assert stepped.count_prompt_tokens(SHORT) <= 64
    chunks = chunks_of(stepped, SHORT, seed=1, max_tokens=4)
    assert all(c.prompt_progress is None for c in chunks)


def test_a_request_that_asks_is_told_every_step_from_the_cache_to_the_last(stepped):
    """TextRequest.progress (the /v1 extra return_progress): as llama-server reports, the first step says
    what the slot's cache held, and the last one (all read) comes too, before the first token."""
    long = [Message(role="user", content=LONG)]

    def steps(messages, **options):
        request = TextRequest(messages, TextOptions(max_tokens=2, **options), progress=True)
        chunks = list(stepped.stream(request, threading.Event()))
        first_text = next(i for i, c in enumerate(chunks) if c.text)
        assert all(c.prompt_progress is None for c in chunks[first_text:])
        return [c.prompt_progress for c in chunks[:first_text] if c.prompt_progress], chunks[-1].usage

    reported, usage = steps(long, seed=6)  # seeded: read afresh
    total = usage.prompt_tokens
    assert [s.read for s in reported] == [*range(0, total, 64), total] and {s.cached for s in reported} == {0}
    # A short prompt: reported too, as it starts and when it is read.
    reported, usage = steps(SHORT, seed=7)
    assert [s.read for s in reported] == [0, usage.prompt_tokens]
    # Unseeded, the same long prompt again: what the cache held is read at once, and said.
    steps(long)
    reported, usage = steps(long)
    assert reported[0].cached == reported[0].read == usage.cached_tokens > 0 and reported[-1].read == total


def test_stopping_while_a_long_prompt_is_read_stops_at_the_next_step(stepped):
    cancel = threading.Event()
    seen = []
    started = time.perf_counter()
    request = TextRequest([Message(role="user", content=LONG)], TextOptions(seed=2, max_tokens=50))
    for chunk in stepped.stream(request, cancel):
        seen.append(chunk)
        if chunk.prompt_progress is not None and chunk.prompt_progress.read >= 128:
            cancel.set()
    stopped_after = time.perf_counter() - started
    assert not any(c.text for c in seen)  # no answer: it stopped before reading all of the prompt
    assert max(c.prompt_progress.read for c in seen if c.prompt_progress) < 300
    assert seen[-1].usage.completion_tokens == 0
    # the whole prompt alone takes longer than stopping does
    whole_started = time.perf_counter()
    chunks_of(stepped, [Message(role="user", content=LONG)], seed=3, max_tokens=1)
    assert stopped_after < (time.perf_counter() - whole_started) / 2


@pytest.mark.parametrize("batch", [32, 2048])
def test_a_streaming_answer_goes_on_while_another_prompt_is_read(smollm_path, batch):
    """A streams; B's long prompt arrives. In steps of 32, A gets a token between B's steps; in one step of
    2048 (llama-server's default), A waits for B's whole prompt."""
    engine = LlamaCppEngine("smollm2-135m", smollm_path, batch=batch, parallel=2)
    try:
        eos = engine.metadata["tokenizer.ggml.eos_token_id"]
        a_times: list[float] = []
        a_has_five = threading.Event()
        b: dict[str, float] = {}

        def run_a():
            request = TextRequest(SHORT, TextOptions(seed=4, max_tokens=400), logit_bias={eos: -100})
            stop = threading.Event()
            for chunk in engine.stream(request, stop):
                if chunk.text:
                    a_times.append(time.perf_counter())
                    if len(a_times) == 5:
                        a_has_five.set()
                if "first" in b and a_times and a_times[-1] > b["first"] + 0.5:
                    stop.set()  # A has shown what it does after B's prompt: enough
            a_has_five.set()

        thread = threading.Thread(target=run_a)
        thread.start()
        assert a_has_five.wait(60)
        b["sent"] = time.perf_counter()
        request = TextRequest([Message(role="user", content=LONG)], TextOptions(seed=5, max_tokens=2))
        for chunk in engine.stream(request, threading.Event()):
            if chunk.text and "first" not in b:
                b["first"] = time.perf_counter()
        thread.join(120)
        during = sum(1 for t in a_times if b["sent"] <= t < b["first"])
        if batch == 32:
            assert during >= 8, f"A gave {during} tokens while B's prompt was read"
        else:
            assert during <= 3, f"A gave {during} tokens while B's prompt was read in one step"
    finally:
        engine.close()
