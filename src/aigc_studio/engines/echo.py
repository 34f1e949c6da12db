"""An engine that answers with the last user message, word by word.

Ships in the package so tests and demos of what is not about the model (history, HTTP, CLI) run in
milliseconds. One "token" is one whitespace-separated word. It cannot constrain its answer or call
tools (``supports_response_format`` and ``supports_tools`` stay off), so such requests are refused.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

from ..contracts import Message, PromptProgress, TextChunk, TextRequest, Usage
from .base import TextEngine

# Test-only: replies queued here are answered, one per request and in order, before echoing resumes, so a
# test can make echo answer with code (``queue_replies``). Users never reach it: echo itself is a test
# engine, hidden unless the test_models setting is on.
_CANNED: list[str] = []
_CANNED_LOCK = threading.Lock()


def queue_replies(*replies: str) -> None:
    """Test-only: the next requests to any echo engine are answered with ``replies``, one each, in order."""
    with _CANNED_LOCK:
        _CANNED.extend(replies)


def clear_replies() -> None:
    """Test-only: drop replies queued and not used."""
    with _CANNED_LOCK:
        _CANNED.clear()


class EchoEngine(TextEngine):
    def __init__(self, model_id: str = "echo", context_length: int = 2048, delay: float = 0.0, reverse: bool = False):
        super().__init__(model_id, context_length)
        self.delay = delay
        # A second answer style (the test model echo2), so two test models answer differently.
        self.reverse = reverse
        # With a number: a prompt of more words than this is "read" in steps of it, each after ``delay``,
        # reported as llama.cpp reports its steps (TextChunk.prompt_progress), for what shows them.
        self.prompt_step = 0

    def count_prompt_tokens(
        self, messages: list[Message], prompt: str | None = None, request: TextRequest | None = None
    ) -> int:
        if prompt is not None:
            return len(prompt.split())
        return sum(len(m.content.split()) + 2 for m in messages)

    def stream(self, request: TextRequest, cancel: threading.Event) -> Iterator[TextChunk]:
        opts = request.options
        prompt_tokens = self.count_prompt_tokens(request.messages, request.prompt)
        last_user = request.prompt or next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        with _CANNED_LOCK:
            if _CANNED:
                last_user = _CANNED.pop(0)
        words = re.findall(r"\S+\s*", last_user)
        if self.reverse:
            words = [w.strip() + " " for w in reversed(words)]
            words[-1:] = [w.strip() for w in words[-1:]]
        limit = min(opts.max_tokens or len(words), self.context_length - prompt_tokens)
        started = time.perf_counter()
        stepped = bool(self.prompt_step) and prompt_tokens > self.prompt_step
        if stepped or request.progress:
            # Without steps of its own, a request that asks is told as it starts and when it is done.
            for done in range(0, prompt_tokens, self.prompt_step if stepped else prompt_tokens):
                if cancel.is_set():
                    break
                ms = (time.perf_counter() - started) * 1000
                yield TextChunk("", prompt_progress=PromptProgress(done, prompt_tokens, 0, ms))
                if stepped:
                    time.sleep(self.delay)
            if request.progress and not cancel.is_set():
                ms = (time.perf_counter() - started) * 1000
                yield TextChunk("", prompt_progress=PromptProgress(prompt_tokens, prompt_tokens, 0, ms))
        text, produced, finish = "", 0, "stop"
        for word in words:
            if cancel.is_set():
                finish = "cancelled"
                break
            if produced >= limit:
                finish = "length"
                break
            hit = next((s for s in opts.stop if s in text + word), None)
            if hit:
                cut = (text + word).index(hit)
                piece = (text + word)[len(text) : cut]
                if piece:
                    yield TextChunk(piece)
                break
            if self.delay:
                time.sleep(self.delay)
            text += word
            produced += 1
            yield TextChunk(word)
        yield TextChunk(
            "",
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens, produced),
            seed=opts.seed if opts.seed not in (None, -1) else 0,
        )
