"""The llama.cpp engine on the real embedded SmolLM2."""

from __future__ import annotations

import threading

import pytest

from aigc_studio.contracts import Message, TextOptions, TextRequest
from aigc_studio.engines.llamacpp import LlamaCppEngine, _held_back
from aigc_studio.engines.worker import EngineWorker
from aigc_studio.errors import ContextLengthExceeded

ASK = [Message(role="user", content="Write one sentence about the sea.")]


@pytest.fixture(scope="module")
def engine(smollm_path):
    eng = LlamaCppEngine("smollm2-135m", smollm_path)
    yield eng
    eng.close()


def generate(engine, messages=ASK, cancel_after: int | None = None, **options):
    cancel = threading.Event()
    pieces, final = [], None
    for chunk in engine.stream(TextRequest(messages, TextOptions(**options)), cancel):
        if chunk.finish_reason:
            final = chunk
        else:
            pieces.append(chunk.text)
            if cancel_after is not None and len(pieces) >= cancel_after:
                cancel.set()
    return "".join(pieces), final


def test_context_and_template_come_from_the_gguf(engine):
    assert engine.context_length == 8192
    assert "<|im_start|>" in engine.metadata["tokenizer.chat_template"]
    one = engine.count_prompt_tokens(ASK)
    two = engine.count_prompt_tokens([*ASK, Message(role="assistant", content="Waves."), *ASK])
    assert 5 < one < two


def test_same_seed_gives_the_same_text(engine):
    first, f1 = generate(engine, seed=1234, temperature=0.9, max_tokens=24)
    generate(engine, seed=99, temperature=0.9, max_tokens=24)  # different state in between
    second, f2 = generate(engine, seed=1234, temperature=0.9, max_tokens=24)
    assert first and first == second
    assert f1.seed == f2.seed == 1234


def test_max_tokens_ends_with_length(engine):
    text, final = generate(engine, seed=7, max_tokens=5)
    assert final.finish_reason == "length"
    assert final.usage.completion_tokens == 5
    assert final.usage.prompt_tokens == engine.count_prompt_tokens(ASK)
    assert text


def test_stop_string_cuts_the_text_where_it_appears(engine):
    full, _ = generate(engine, seed=5, temperature=0, max_tokens=40)
    words = full.split()
    assert len(words) >= 4, full
    stop = words[3]
    cut = full.index(stop)
    text, final = generate(engine, seed=5, temperature=0, max_tokens=40, stop=[stop])
    assert text == full[:cut]
    assert final.finish_reason == "stop"


def test_unset_seed_is_chosen_and_reported(engine):
    _, final = generate(engine, max_tokens=2)
    assert isinstance(final.seed, int) and final.seed >= 0


def test_cancel_stops_between_tokens(engine):
    _text, final = generate(engine, seed=3, max_tokens=500, cancel_after=3)
    assert final.finish_reason == "cancelled"
    assert final.usage.completion_tokens <= 4


def test_prompt_longer_than_context_is_refused_with_both_numbers(engine):
    long = [Message(role="user", content="word " * 9000)]
    with pytest.raises(ContextLengthExceeded) as err:
        generate(engine, long, max_tokens=10)
    assert "8192" in err.value.message and "in the messages" in err.value.message


def test_concurrent_jobs_do_not_mix(engine):
    worker = EngineWorker(engine)
    prompts = [f"Name a color number {i}." for i in range(4)]
    expected = [
        generate(engine, [Message(role="user", content=p)], seed=i, max_tokens=12)[0] for i, p in enumerate(prompts)
    ]
    jobs = [
        worker.submit(TextRequest([Message(role="user", content=p)], TextOptions(seed=i, max_tokens=12)))
        for i, p in enumerate(prompts)
    ]
    results = [None] * 4

    def read(i):
        results[i] = "".join(c.text for c in jobs[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    worker._jobs.put(None)  # stop the thread; the module fixture closes the engine
    assert results == expected


def test_held_back_suffix():
    assert _held_back("hello wor", ["world"]) == 3
    assert _held_back("hello", ["xyz"]) == 0
    assert _held_back("ab", ["b", "abc"]) == 2
