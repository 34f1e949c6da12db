"""Continuous batching and the prompt cache, on the real embedded SmolLM2 through llama.cpp's server loop.

Every request here goes through the studio's job queue (``EngineWorker``), which runs as many jobs at
once as the engine has slots; the engine decodes them in one batch. Each answer is compared with the
answer the same request gets alone: greedy decoding (temperature 0) and a fixed seed make it exact, so
any cross-talk between slots, or a slot picking up another's tokens, shows as a different text.
"""

from __future__ import annotations

import threading
import time

import pytest

from aigc_studio.contracts import Message, TextOptions, TextRequest
from aigc_studio.engines.llamacpp import LlamaCppEngine
from aigc_studio.engines.worker import EngineWorker
from aigc_studio.errors import ContextLengthExceeded

pytestmark = pytest.mark.slow

PROMPTS = [
    "Write three sentences about lighthouses.",
    "List five fruits, one per line.",
    "Explain how bread rises, briefly.",
    "Describe the moon in two sentences.",
]


def request(text: str, max_tokens: int = 40, **options) -> TextRequest:
    return TextRequest(
        [Message(role="user", content=text)], TextOptions(max_tokens=max_tokens, **{"temperature": 0, **options})
    )


@pytest.fixture(scope="module")
def worker(smollm_path):
    engine = LlamaCppEngine("smollm2-135m", smollm_path, parallel=4)
    worker = EngineWorker(engine)
    yield worker
    worker.close()


class Run:
    """One job read on its own thread: its text, its final chunk and when its text came."""

    def __init__(self, worker: EngineWorker, req: TextRequest, cancel_after: int | None = None):
        self.job = worker.submit(req)
        self.pieces: list[str] = []
        self.times: list[float] = []
        self.final = None
        self.cancel_after = cancel_after
        self.thread = threading.Thread(target=self._read)
        self.thread.start()

    def _read(self) -> None:
        for chunk in self.job:
            if chunk.finish_reason:
                self.final = chunk
            elif chunk.text:
                self.pieces.append(chunk.text)
                self.times.append(time.perf_counter())
                if self.cancel_after is not None and len(self.pieces) >= self.cancel_after:
                    self.job.cancel()

    def wait(self) -> Run:
        self.thread.join(120)
        assert not self.thread.is_alive(), "a job did not end"
        return self

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def alone(worker: EngineWorker, req: TextRequest) -> str:
    return Run(worker, req).wait().text


def test_the_engine_has_slots_and_the_worker_runs_that_many_jobs_at_once(worker):
    assert worker.engine.parallel == 4
    requests = [request(p, 48) for p in PROMPTS]
    # The chat service counts a prompt's tokens before it queues the request, so the engine has them
    # when the job starts; do the same here. Otherwise each job first asks llama.cpp's HTTP thread for
    # its tokens, and on a busy 2-core machine that thread can wait seconds behind the decoding threads.
    for req in requests:
        worker.engine.count_prompt_tokens(req.messages, None, req)
    runs = [Run(worker, req) for req in requests]
    for run in runs:
        run.wait()
    # Decoded together: every answer's text began before any other answer ended (a queue that ran them
    # one after another would start each only after the one before it finished).
    first_starts = max(run.times[0] for run in runs)
    first_ends = min(run.times[-1] for run in runs)
    assert first_starts < first_ends
    assert all(run.final.finish_reason in ("length", "stop") for run in runs)


def test_batched_answers_are_exactly_the_answers_each_gets_alone(worker):
    solo = [alone(worker, request(p)) for p in PROMPTS]
    assert len(set(solo)) == len(PROMPTS)  # four different answers, so a swap would show
    runs = [Run(worker, request(p)) for p in PROMPTS]
    together = [run.wait().text for run in runs]
    assert together == solo


def test_a_request_joining_mid_batch_changes_no_answer(worker):
    long_solo = alone(worker, request(PROMPTS[0], 120))
    short_solo = alone(worker, request(PROMPTS[1], 30))
    first = Run(worker, request(PROMPTS[0], 120))
    while len(first.pieces) < 10:  # the first request is decoding when the second joins
        time.sleep(0.005)
        assert first.thread.is_alive()
    second = Run(worker, request(PROMPTS[1], 30))
    assert second.wait().text == short_solo
    assert first.wait().text == long_solo
    # The second joined the running batch: it ended before the first did.
    assert second.times[-1] < first.times[-1]


def test_a_request_cancelled_mid_batch_leaves_at_once_and_the_others_go_on(worker):
    kept_solo = alone(worker, request(PROMPTS[2], 60))
    cancelled = Run(worker, request(PROMPTS[3], 400), cancel_after=5)
    kept = Run(worker, request(PROMPTS[2], 60))
    cancelled.wait()
    assert cancelled.final.finish_reason == "cancelled"
    assert len(cancelled.pieces) < 20  # it stopped within a few tokens of being cancelled, not at 400
    assert kept.wait().text == kept_solo
    assert kept.final.finish_reason in ("length", "stop")


def test_a_seeded_sampled_answer_is_the_same_alone_and_beside_others(worker):
    seeded = request(PROMPTS[0], 40, temperature=0.9, seed=4321)
    solo = alone(worker, seeded)
    others = [Run(worker, request(p, 60, temperature=0.9)) for p in PROMPTS[1:]]
    again = Run(worker, seeded)
    assert again.wait().text == solo
    assert again.final.seed == 4321 and again.final.usage.cached_tokens == 0  # evaluated afresh
    for run in others:
        run.wait()


def test_a_conversation_resent_whole_reuses_its_cached_prefix(worker):
    history = [
        Message(role="user", content="Name a colour."),
        Message(role="assistant", content="Blue."),
        Message(role="user", content="Name another one."),
    ]
    first = Run(worker, TextRequest(history, TextOptions(max_tokens=8, temperature=0.7))).wait()
    prompt_tokens = first.final.usage.prompt_tokens
    longer = [*history, Message(role="assistant", content="Green."), Message(role="user", content="And one more.")]
    second = Run(worker, TextRequest(longer, TextOptions(max_tokens=8, temperature=0.7))).wait()
    # The earlier prompt is a prefix of this one, so its tokens come from the slot's cache.
    assert prompt_tokens - 2 <= second.final.usage.cached_tokens < second.final.usage.prompt_tokens


def test_each_slot_has_its_own_context_and_a_prompt_past_it_is_refused(smollm_path):
    engine = LlamaCppEngine("smollm2-135m", smollm_path, context_length=256, parallel=2)
    worker = EngineWorker(engine)
    try:
        assert engine.context_length == 256
        fits = Run(worker, request("Say hi.", 16))
        with pytest.raises(ContextLengthExceeded) as err:
            list(worker.submit(request("word " * 300, 16)))
        assert "maximum context length is 256 tokens" in err.value.message
        # The refused request harmed nothing: the other slot's answer is whole, and the model still answers.
        assert fits.wait().final.finish_reason in ("length", "stop")
        assert Run(worker, request("Say hi.", 16)).wait().text == fits.text
    finally:
        worker.close()
