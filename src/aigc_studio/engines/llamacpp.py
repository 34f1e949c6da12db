"""llama.cpp engine for GGUF models, through llama-cpp-python.

The chat template comes from the GGUF metadata (``tokenizer.chat_template``), so every GGUF model
formats its prompt the way it was trained. Generation runs token by token on ``Llama.generate`` so the
engine knows exact token counts, can stop between any two tokens when cancelled, and holds back only
the text that might be the start of a stop string.

A response format or tools turn into a llama.cpp grammar (``json_grammar``), so the answer is valid
JSON, matches the schema, or is a valid call of one of the tools; tools are offered in llama.cpp's
generic format (``generic_tools``).
"""

from __future__ import annotations

import codecs
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..contracts import Message, TextChunk, TextRequest, TokenLogprob, ToolCallDelta, Usage
from ..errors import InvalidRequest, ModelLoadError
from . import generic_tools
from .base import TextEngine
from .json_grammar import SchemaGrammar, schema_gbnf

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


def _released(waiting: list[tuple[int, TokenLogprob]], upto: int) -> list[TokenLogprob] | None:
    """Takes the tokens whose text starts before character ``upto`` off ``waiting``."""
    if not waiting:
        return None
    n = next((i for i, (start, _) in enumerate(waiting) if start >= upto), len(waiting))
    out = [entry for _, entry in waiting[:n]]
    del waiting[:n]
    return out


class LlamaCppEngine(TextEngine):
    supports_response_format = True
    supports_tools = True
    supports_logit_bias = True
    supports_logprobs = True

    def __init__(self, model_id: str, path: str | Path, context_length: int = 0, threads: int = 0):
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        from llama_cpp.llama_grammar import LlamaGrammar

        from .grammar_sampler import GrammarFirstLlama, SamplingExtras

        self._llama_cpp, self._llama_grammar, self._extras = llama_cpp, LlamaGrammar, SamplingExtras
        threads = threads or os.cpu_count() or 1
        try:
            self.llm = GrammarFirstLlama(
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
        self._native_tool_role = self._renders_tool_role()
        self._grammars: dict[str, str] = {}  # grammar text by request constraint, checked once each

    def _renders_tool_role(self) -> bool:
        """Whether the chat template shows a tool message's content (else results go in a user turn)."""
        probe = "tool-result-probe-7c1f"
        messages = [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "y"},
            {"role": "tool", "content": probe, "tool_call_id": "call_1"},
        ]
        try:
            return probe in self._formatter(messages=messages).prompt
        except Exception:  # a template may raise on any role it does not know
            return False

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.llm.metadata)

    def _prompt_tokens(
        self, messages: list[Message], raw: str | None = None, request: TextRequest | None = None
    ) -> list[int]:
        if raw is not None:
            # A raw completion prompt is the user's text: special-token strings in it stay plain text.
            tokens = self.llm.tokenize(raw.encode("utf-8"), add_bos=False, special=False)
        else:
            rendered = generic_tools.render(messages, request, self._native_tool_role)
            prompt = self._formatter(messages=rendered).prompt
            tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        # Templates usually write the BOS text themselves; add the token only when they do not.
        if self._add_bos and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    def count_prompt_tokens(
        self, messages: list[Message], prompt: str | None = None, request: TextRequest | None = None
    ) -> int:
        return len(self._prompt_tokens(messages, prompt, request))

    def check(self, request: TextRequest) -> None:
        """Build (and keep) the request's grammar now, so a schema the grammar cannot enforce is a 400
        before the request is queued."""
        super().check(request)
        vocabulary = self.llm.n_vocab()
        outside = sorted(t for t in request.logit_bias if not 0 <= t < vocabulary)
        if outside:
            raise InvalidRequest(
                f"logit_bias names token ids outside this model's vocabulary (0..{vocabulary - 1}): "
                + ", ".join(map(str, outside[:10])),
                param="logit_bias",
            )
        if request.logprobs is not None and request.calls_tools:
            raise InvalidRequest("log probabilities are not given for answers that may call tools", param="logprobs")
        fmt = request.response_format
        if request.prompt is not None and (request.calls_tools or (fmt is not None and fmt.type != "text")):
            raise InvalidRequest("a raw completion takes neither tools nor a response format", param="prompt")
        self._grammar(request)

    def _grammar(self, request: TextRequest) -> str | None:
        fmt = request.response_format
        constrained = fmt is not None and fmt.type != "text"
        if not constrained and not request.calls_tools:
            return None
        key = json.dumps(
            [
                fmt.model_dump(by_alias=True) if fmt else None,
                [t.model_dump() for t in request.tools] if request.calls_tools else None,
                request.tool_choice,
                request.parallel_tool_calls,
            ],
            sort_keys=True,
        )
        if key in self._grammars:
            return self._grammars[key]
        response_schema = None
        if fmt is not None and fmt.type == "json_object":
            response_schema = {"type": "object"}
        if request.calls_tools:
            grammar = SchemaGrammar()
            if fmt is not None and fmt.type == "json_schema":
                response_schema = grammar.add(fmt.schema_, "response_format.json_schema.schema", "response_format")
            gbnf = grammar.gbnf(generic_tools.answer_schema(request, grammar, response_schema), "tools")
        elif fmt is not None and fmt.type == "json_schema":
            gbnf = schema_gbnf(fmt.schema_, "response_format.json_schema.schema", "response_format")
        else:
            gbnf = schema_gbnf(response_schema or {"type": "object"}, "response_format", "response_format")
        # llama.cpp's own parser has the last word (a pattern may hold an escape GBNF lacks); it
        # answers NULL instead of a sampler for a grammar it cannot read.
        sampler = self._llama_cpp.llama_sampler_init_grammar(self.llm._model.vocab, gbnf.encode(), b"root")
        if not sampler:
            param = "tools" if request.calls_tools else "response_format"
            raise InvalidRequest(
                f"the JSON Schema of {param} cannot be turned into a llama.cpp grammar: a pattern uses a regular "
                "expression feature that grammars lack (supported: literals, ., [...] classes, \\d \\w \\s, "
                "groups, |, ?, *, +, {m,n})",
                param=param,
            )
        self._llama_cpp.llama_sampler_free(sampler)
        if len(self._grammars) > 32:
            self._grammars.clear()
        self._grammars[key] = gbnf
        return gbnf

    def stream(self, request: TextRequest, cancel: threading.Event) -> Iterator[TextChunk]:
        opts = request.options
        prompt = self._prompt_tokens(request.messages, request.prompt, request)
        limit = self.completion_room(len(prompt), opts.max_tokens)
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
        used = {**sampling, "presence_penalty": opts.presence_penalty or 0.0}
        used["frequency_penalty"] = opts.frequency_penalty or 0.0
        sampling["temp"] = sampling.pop("temperature")
        gbnf = None if request.prompt is not None else self._grammar(request)
        grammar = self._llama_grammar.from_string(gbnf) if gbnf else None
        calls = generic_tools.GenericOutput() if request.prompt is None and request.calls_tools else None

        stops = opts.stop
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending, produced, finish = "", 0, "length"
        emitted = 0  # characters handed out so far
        # (where its text starts, the token) for each token whose text is not handed out yet
        waiting: list[tuple[int, TokenLogprob]] = []
        extras = None
        if request.logit_bias or request.logprobs is not None:
            extras = self._extras(request.logit_bias, request.logprobs)
        started = time.perf_counter()
        first_token_at: float | None = None
        tokens = self.llm.generate(
            prompt,
            frequency_penalty=opts.frequency_penalty or 0.0,
            presence_penalty=opts.presence_penalty or 0.0,
            grammar=grammar,
            logits_processor=extras,
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
                piece = self.llm._model.detokenize([token])
                if request.logprobs is not None:
                    waiting.append((emitted + len(pending), self._logprob(token, piece)))
                pending += decoder.decode(piece)
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
                    text = pending[: len(pending) - keep]
                    emitted += len(text)
                    yield from self._pieces(text, calls, _released(waiting, emitted))
                    pending = pending[len(pending) - keep :]
                if produced >= limit:
                    break
        finally:
            tokens.close()
        if finish != "stop" or not stops:
            pending += decoder.decode(b"", final=True)
        if pending:
            # The tokens of a stop string start past the text kept, and are left out with it.
            yield from self._pieces(pending, calls, _released(waiting, emitted + len(pending)))
        ended = time.perf_counter()
        first_token_at = first_token_at or ended
        if calls is not None and calls.called and finish == "stop":
            finish = "tool_calls"
        yield TextChunk(
            "",
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(len(prompt), produced),
            seed=seed,
            prompt_seconds=first_token_at - started,
            decode_seconds=ended - first_token_at,
            tool_calls=list(calls.calls) if calls is not None and calls.called else None,
            sampling=used,
        )

    def _logprob(self, token: int, piece: bytes) -> TokenLogprob:
        logprob, best = self.llm._sampler.last_logprobs

        def entry(token_id: int, value: float, raw: bytes) -> TokenLogprob:
            return TokenLogprob(raw.decode("utf-8", errors="replace"), value, list(raw))

        top = [entry(i, v, self.llm._model.detokenize([i])) for i, v in best]
        return TokenLogprob(piece.decode("utf-8", errors="replace"), logprob, list(piece), top)

    @staticmethod
    def _pieces(
        text: str, calls: generic_tools.GenericOutput | None, logprobs: list[TokenLogprob] | None = None
    ) -> Iterator[TextChunk]:
        """Generated text as chunks: as it is (with its tokens' log probabilities, when asked), or read
        through the tool-call format."""
        if calls is None:
            yield TextChunk(text, logprobs=logprobs)
            return
        for piece in calls.feed(text):
            if isinstance(piece, ToolCallDelta):
                yield TextChunk("", tool_call=piece)
            else:
                yield TextChunk(piece)

    def close(self) -> None:
        self.llm.close()
