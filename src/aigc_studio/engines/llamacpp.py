"""llama.cpp engine for GGUF models, through llama-cpp-python.

The chat template comes from the GGUF metadata (``tokenizer.chat_template``), so every GGUF model
formats its prompt the way it was trained. Generation runs token by token on ``Llama.generate`` so the
engine knows exact token counts, can stop between any two tokens when cancelled, and holds back only
the text that might be the start of a stop string.
"""

from __future__ import annotations

import codecs
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..contracts import Message, TextChunk, TextRequest, Usage
from ..errors import ContextLengthExceeded, ModelLoadError
from .base import TextEngine

# Defaults for small local models; OpenAI's temperature 1.0 makes a 135M model ramble.
DEFAULTS = dict(temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1)

# Used when a GGUF file carries no chat template.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


class LlamaCppEngine(TextEngine):
    def __init__(self, model_id: str, path: str | Path, context_length: int = 0, threads: int = 0):
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama_cpp = llama_cpp
        threads = threads or os.cpu_count() or 1
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=context_length,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load GGUF model '{model_id}' from {path}: {exc}") from exc
        super().__init__(model_id, self.llm.n_ctx())
        model = self.llm._model
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=self.llm.metadata.get("tokenizer.chat_template") or CHATML,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )
        self._add_bos = model.add_bos_token() and bos != -1
        self._bos = bos

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.llm.metadata)

    def _prompt_tokens(self, messages: list[Message], raw: str | None = None) -> list[int]:
        if raw is not None:
            # A raw completion prompt is the user's text: special-token strings in it stay plain text.
            tokens = self.llm.tokenize(raw.encode("utf-8"), add_bos=False, special=False)
        else:
            prompt = self._formatter(messages=[m.model_dump() for m in messages]).prompt
            tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        # Templates usually write the BOS text themselves; add the token only when they do not.
        if self._add_bos and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    def count_prompt_tokens(self, messages: list[Message], prompt: str | None = None) -> int:
        return len(self._prompt_tokens(messages, prompt))

    def stream(self, request: TextRequest, cancel: threading.Event) -> Iterator[TextChunk]:
        opts = request.options
        prompt = self._prompt_tokens(request.messages, request.prompt)
        room = self.context_length - len(prompt)
        if room < (opts.max_tokens or 1):
            asked = len(prompt) + (opts.max_tokens or 0)
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{asked} tokens ({len(prompt)} in the messages, {opts.max_tokens or 0} in the completion). "
                "Please reduce the length of the messages or completion.",
                param="messages",
            )
        limit = min(opts.max_tokens or room, room)
        seeded = opts.seed not in (None, -1)
        seed = opts.seed if seeded else random.randrange(2**31)
        self.llm.set_seed(seed)
        if seeded:
            # Reusing the cached prompt prefix evaluates fewer tokens per batch, which changes the
            # logits in the last bits; a request that names its seed gets a fresh evaluation so that
            # the same request always gives the same text.
            self.llm.reset()
        sampling = {k: v for k, v in DEFAULTS.items()}
        for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty"):
            if getattr(opts, name) is not None:
                sampling[name] = getattr(opts, name)
        sampling["temp"] = sampling.pop("temperature")

        stops = opts.stop
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending, produced, finish = "", 0, "length"
        started = time.perf_counter()
        first_token_at: float | None = None
        tokens = self.llm.generate(
            prompt,
            frequency_penalty=opts.frequency_penalty or 0.0,
            presence_penalty=opts.presence_penalty or 0.0,
            **sampling,
        )
        try:
            for token in tokens:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                if cancel.is_set():
                    finish = "cancelled"
                    break
                if self._llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
                    finish = "stop"
                    break
                produced += 1
                pending += decoder.decode(self.llm._model.detokenize([token]))
                if stops:
                    hits = [i for i in (pending.find(s) for s in stops) if i >= 0]
                    if hits:
                        pending = pending[: min(hits)]
                        finish = "stop"
                        break
                    keep = _held_back(pending, stops)
                else:
                    keep = 0
                if len(pending) > keep:
                    yield TextChunk(pending[: len(pending) - keep])
                    pending = pending[len(pending) - keep :]
                if produced >= limit:
                    break
        finally:
            tokens.close()
        if finish != "stop" or not stops:
            pending += decoder.decode(b"", final=True)
        if pending:
            yield TextChunk(pending)
        ended = time.perf_counter()
        first_token_at = first_token_at or ended
        yield TextChunk(
            "",
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(len(prompt), produced),
            seed=seed,
            prompt_seconds=first_token_at - started,
            decode_seconds=ended - first_token_at,
        )

    def close(self) -> None:
        self.llm.close()
