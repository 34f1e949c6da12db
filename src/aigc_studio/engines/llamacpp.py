"""llama.cpp engine for GGUF models: llama.cpp's own server loop, running in this process.

The engine is llama.cpp's C++ server (``xllamacpp``: prebuilt wheels of llama.cpp's ``server-context``,
called in process). What that gives, measured against llama.cpp's own ``llama-server`` in bench/text.py:

- **Continuous batching.** The model has ``parallel`` slots, each with its own part of the KV cache
  (``context`` tokens per slot). Concurrent requests decode together, one batch per step; a new request
  joins at the next step, and a cancelled one leaves at once (the stream callback says so).
- **Long prompts in steps.** A prompt is evaluated ``batch`` tokens per step (llama.cpp's batch size,
  128 here where llama-server takes 2048), and the other slots' answers each get a token between the
  steps: a 1,500-token prompt no longer holds every other stream still for the ~10 s it takes on two
  cores. Evaluating it takes as long either way on a CPU. A prompt longer than one step reports its
  progress (``TextChunk.prompt_progress``) after each step.
- **A prompt cache per slot.** A request goes to the slot whose cached tokens share the longest prefix
  with its prompt (an OpenAI client resends the whole chat each turn), and only the rest is evaluated.
  A request that names its seed is evaluated afresh, so the same request always gives the same text
  (how many tokens a batch evaluates changes the logits in their last bits).
- **llama.cpp's sampler chain, detokenizer and stop strings** in C++, nothing per token in Python but the
  chunk handed on.

The studio keeps what makes answers right: the GGUF's chat template is rendered here (``ChatTemplate``),
prompts are tokenized exactly (raw completion prompts with special-token text kept as plain text),
context room is checked before a request is queued, and tools and response formats become the
studio's grammars (``json_grammar``, ``generic_tools``).

The server also answers HTTP on a random loopback port with a random key of this process: the studio
uses it only to tokenize, and nothing else can call it without the key.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import random
import re
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

from ..contracts import Message, TextChunk, TextRequest, TokenLogprob, ToolCallDelta, Usage
from ..errors import InvalidRequest, ModelLoadError, StudioError
from . import generic_tools
from .base import TextEngine, context_exceeded, llama_progress
from .chat_template import ChatTemplate
from .gguf_meta import gguf_metadata, trained_context
from .json_grammar import SchemaGrammar, schema_grammar

# Defaults for small local models; OpenAI's temperature 1.0 makes a 135M model ramble.
DEFAULTS = dict(temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1)
# Context per slot when the `context` setting is 0: the model's trained length, up to this. Every slot
# holds its own KV cache, so memory grows with parallel × context; a user who needs more sets `context`.
DEFAULT_SLOT_CONTEXT = 4096
DEFAULT_PARALLEL = 4
# Prompt tokens evaluated per step (llama.cpp's n_batch and n_ubatch). On two cores a step of 128 takes
# 0.6-0.9 s of SmolLM2, and a 1,500-token prompt takes as long in steps of 128 as in one batch; the other
# slots' streams pause for one step at most (bench/long_prompt.py; README, "Long prompts in steps").
DEFAULT_BATCH = 128
_DONE = object()


class _Progress:
    """What a slot's stream has said so far (written by its callback, read once it has ended)."""

    def __init__(self) -> None:
        self.finish = "length"
        self.usage: dict | None = None
        self.timings: dict | None = None
        self.first_token_at: float | None = None
        self.streamed = 0  # chunks with text: one per token, but for text held back (a stop string's start)
        self.error: BaseException | None = None


log = logging.getLogger("aigc_studio.engines.llamacpp")


def llama_build() -> str:
    """Which llama.cpp runs: xllamacpp's version, the CPU instruction sets its kernels were built for
    (AVX2 from the PyPI wheel; AVX-512 as well from ``setup.sh --native`` on a CPU that has it) and the
    compiler that built them (the wheel's is GCC 10; a native build's, this machine's own)."""
    import xllamacpp

    cpu = " ".join(dict.fromkeys(re.findall(r"(\w+) = 1", xllamacpp.get_system_info())))
    compiler = (getattr(xllamacpp, "BUILD_INFO", None) or {}).get("compiler")
    built = f"; compiler: {compiler}" if compiler else ""
    return f"xllamacpp {xllamacpp.__version__} (CPU: {cpu or 'no SIMD'}{built})"


class _Loopback:
    """JSON calls to the engine's own llama.cpp server (tokenizing, its properties) over keep-alive
    HTTP, one connection per thread. Plain http.client: a new prompt is tokenized before its first
    token, and httpx took about a millisecond more per call (2.0 against 1.0 ms)."""

    def __init__(self, address: str, key: str):
        self._host = address.removeprefix("http://")
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._local = threading.local()
        # Weak: a connection goes with its thread (the API's thread pool retires idle threads).
        self._opened: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self._host, timeout=60)
            with self._lock:
                self._opened.add(conn)
        return conn

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        payload = None if body is None else json.dumps(body)
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, payload, self._headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                # The server closes a connection left idle (llama.cpp: after 5 s): once more on a new one.
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        if response.status != 200:
            raise RuntimeError(f"llama.cpp's {path} answered {response.status}: {data[:200]!r}")
        return json.loads(data)

    def close(self) -> None:
        with self._lock:
            for conn in list(self._opened):
                conn.close()


class LlamaCppEngine(TextEngine):
    supports_response_format = True
    supports_tools = True
    supports_logit_bias = True
    supports_logprobs = True

    def __init__(
        self,
        model_id: str,
        path: str | Path,
        context_length: int = 0,
        threads: int = 0,
        parallel: int = DEFAULT_PARALLEL,
        batch: int = DEFAULT_BATCH,
    ):
        import xllamacpp

        try:
            self.metadata: dict = gguf_metadata(path)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load GGUF model '{model_id}' from {path}: {exc}") from exc
        trained = trained_context(self.metadata)
        slot_context = context_length or min(trained or DEFAULT_SLOT_CONTEXT, DEFAULT_SLOT_CONTEXT)
        self.parallel = max(1, parallel)
        threads = threads or os.cpu_count() or 1
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = self.parallel
        params.n_ctx = slot_context * self.parallel
        params.kv_unified = False  # each slot owns its context: one long request cannot starve the others
        params.cont_batching = True
        params.cache_prompt = True
        self.batch = max(1, batch)
        params.n_batch = self.batch
        params.n_ubatch = min(self.batch, 512)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.n_threads_http = 2
        params.use_jinja = False  # the studio renders the template itself
        params.ui = False
        params.endpoint_slots = False
        params.endpoint_metrics = False
        params.verbosity = -1  # llama.cpp's per-request log lines would flood the studio's log
        self._key = secrets.token_urlsafe(24)
        params.api_keys = [self._key]
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # the binding raises RuntimeError or ValueError with llama.cpp's reason
            raise ModelLoadError(f"cannot load GGUF model '{model_id}' from {path}: {exc}") from exc
        # One token through the server's loop: the loop is surely running from here on. Stopping a
        # server whose loop has not started yet waits for it forever (its stop is lost).
        self._server.handle_completions({"prompt": [0], "n_predict": 1, "cache_prompt": False})
        super().__init__(model_id, slot_context)
        self.trained_context = trained
        self._tokens: OrderedDict[tuple[str, bool, bool], list[int]] = OrderedDict()
        self._tokens_lock = threading.Lock()
        self._http = _Loopback(self._server.listening_address, self._key)
        props = self._http.call("GET", "/props")
        self._template = ChatTemplate(
            self.metadata.get("tokenizer.chat_template"),
            bos_token=props.get("bos_token") or "",
            eos_token=props.get("eos_token") or "",
        )
        bos = self.metadata.get("tokenizer.ggml.bos_token_id")
        self._bos = bos if isinstance(bos, int) else None
        self._add_bos = self._bos is not None and self._tokenize("a", special=False, add_bos=True)[:1] == [self._bos]
        self._vocabulary = int(self.metadata.get(f"{self.metadata.get('general.architecture')}.vocab_size") or 0)
        self._native_tool_role = self._renders_tool_role()
        self._grammars: dict[str, str] = {}  # grammar text by request constraint, checked once each
        log.info(
            "model '%s' runs on llama.cpp from %s: %d slots of %d tokens, prompts in steps of %d, %d threads",
            model_id,
            llama_build(),
            self.parallel,
            slot_context,
            self.batch,
            threads,
        )

    # -- prompts ------------------------------------------------------------------------------------

    def _tokenize(self, text: str, special: bool, add_bos: bool = False) -> list[int]:
        # A request's prompt is tokenized twice, when the chat service counts it and when it runs: the
        # second time comes from here, without another round trip.
        key = (text, special, add_bos)
        with self._tokens_lock:
            if key in self._tokens:
                self._tokens.move_to_end(key)
                return list(self._tokens[key])
        tokens = self._http.call(
            "POST", "/tokenize", {"content": text, "add_special": add_bos, "parse_special": special}
        )["tokens"]
        with self._tokens_lock:
            self._tokens[key] = tokens
            while len(self._tokens) > 16:
                self._tokens.popitem(last=False)
        return list(tokens)

    def _renders_tool_role(self) -> bool:
        """Whether the chat template shows a tool message's content (else results go in a user turn)."""
        probe = "tool-result-probe-7c1f"
        messages = [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "y"},
            {"role": "tool", "content": probe, "tool_call_id": "call_1"},
        ]
        try:
            return probe in self._template.render(messages)
        except Exception:  # a template may raise on any role it does not know
            return False

    def _prompt_tokens(
        self, messages: list[Message], raw: str | None = None, request: TextRequest | None = None
    ) -> list[int]:
        if raw is not None:
            # A raw completion prompt is the user's text: special-token strings in it stay plain text.
            tokens = self._tokenize(raw, special=False)
        else:
            rendered = generic_tools.render(messages, request, self._native_tool_role)
            try:
                prompt = self._template.render(rendered)
            except Exception as exc:  # the template's own raise_exception, or a bad template
                raise InvalidRequest(f"model '{self.model_id}' chat template refused the messages: {exc}") from exc
            tokens = self._tokenize(prompt, special=True)
        # Templates usually write the BOS text themselves; add the token only when they do not.
        if self._add_bos and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    def count_prompt_tokens(
        self, messages: list[Message], prompt: str | None = None, request: TextRequest | None = None
    ) -> int:
        return len(self._prompt_tokens(messages, prompt, request))

    # -- checks and grammars ------------------------------------------------------------------------

    def check(self, request: TextRequest) -> None:
        """Build (and keep) the request's grammar now, so a schema the grammar cannot enforce is a 400
        before the request is queued."""
        super().check(request)
        vocabulary = self._vocabulary
        outside = sorted(t for t in request.logit_bias if not 0 <= t < vocabulary) if vocabulary else []
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
            gbnf = grammar.grammar(generic_tools.answer_schema(request, grammar, response_schema), "tools")
        elif fmt is not None and fmt.type == "json_schema":
            gbnf = schema_grammar(fmt.schema_, "response_format.json_schema.schema", "response_format")
        else:
            gbnf = schema_grammar(response_schema or {"type": "object"}, "response_format", "response_format")
        # llama.cpp's own parser has the last word (a pattern may hold an escape GBNF lacks): one token
        # sampled under the grammar shows whether llama.cpp can read it.
        probe = self._server.handle_completions(
            {"prompt": [self._bos or 0], "n_predict": 1, "grammar": gbnf, "cache_prompt": False}
        )
        if "error" in probe:
            param = "tools" if request.calls_tools else "response_format"
            raise InvalidRequest(
                f"the JSON Schema of {param} cannot be turned into a llama.cpp grammar: a pattern uses a regular "
                "expression feature that grammars lack (supported: literals, ., [...] classes, \\d \\w \\s, "
                "groups, |, ?, *, +, {m,n})",
                param=param,
            )
        if len(self._grammars) > 32:
            self._grammars.clear()
        self._grammars[key] = gbnf
        return gbnf

    # -- generation ---------------------------------------------------------------------------------

    def stream(self, request: TextRequest, cancel: threading.Event) -> Iterator[TextChunk]:
        """``run`` on a thread of its own, its chunks yielded here; a consumer that stops reading
        stops the slot."""
        chunks: queue.SimpleQueue = queue.SimpleQueue()

        def produce() -> None:
            try:
                self.run(request, cancel, chunks.put)
            except BaseException as exc:  # handed to the consumer, which raises it on its own thread
                chunks.put(exc)
            finally:
                chunks.put(_DONE)

        thread = threading.Thread(target=produce, name=f"decode-{self.model_id}", daemon=True)
        thread.start()
        try:
            while (chunk := chunks.get()) is not _DONE:
                if isinstance(chunk, BaseException):
                    raise chunk
                yield chunk
        finally:
            if thread.is_alive():
                cancel.set()
                thread.join()

    def run(self, request: TextRequest, cancel: threading.Event, emit: Callable[[TextChunk], None]) -> None:
        """llama.cpp's server loop decodes; its stream callback runs on this thread and hands each piece
        to ``emit`` at once: no thread between the loop and the consumer."""
        opts = request.options
        prompt = self._prompt_tokens(request.messages, request.prompt, request)
        limit = self.completion_room(len(prompt), opts.max_tokens)
        seeded = opts.seed not in (None, -1)
        seed = opts.seed if seeded else random.randrange(2**31)
        sampling = dict(DEFAULTS)
        for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty"):
            if getattr(opts, name) is not None:
                sampling[name] = getattr(opts, name)
        used = {**sampling, "presence_penalty": opts.presence_penalty or 0.0}
        used["frequency_penalty"] = opts.frequency_penalty or 0.0
        body: dict = {
            "prompt": prompt,
            "n_predict": limit,
            "stream": True,
            "seed": seed,
            # A seeded request is evaluated afresh: the same request then always gives the same text.
            "cache_prompt": not seeded,
            # A prompt of more than one step says how far it has got after each (any prompt, every step
            # to the last, when the request asks, as llama-server's return_progress).
            "return_progress": request.progress or len(prompt) > self.batch,
            "stop": list(opts.stop or []),
            "presence_penalty": opts.presence_penalty or 0.0,
            "frequency_penalty": opts.frequency_penalty or 0.0,
            **sampling,
        }
        gbnf = None if request.prompt is not None else self._grammar(request)
        if gbnf:
            body["grammar"] = gbnf
        if request.logit_bias:
            body["logit_bias"] = [[token, bias] for token, bias in request.logit_bias.items()]
        if request.logprobs is not None:
            body["n_probs"] = max(1, request.logprobs)
        calls = generic_tools.GenericOutput() if request.prompt is None and request.calls_tools else None

        started = time.perf_counter()
        progress = _Progress()

        def on_chunk(chunk: dict) -> bool:
            """One chunk of the slot's stream; True stops the slot."""
            try:
                if "error" in chunk:
                    progress.error = self._error(chunk["error"], len(prompt), opts.max_tokens)
                    return True
                if "prompt_progress" in chunk:
                    step = llama_progress(chunk["prompt_progress"], request.progress)
                    if step is not None:
                        emit(TextChunk("", prompt_progress=step))
                    return cancel.is_set()
                choice = chunk["choices"][0]
                text = choice.get("text") or ""
                if text:
                    if progress.first_token_at is None:
                        progress.first_token_at = time.perf_counter()
                    progress.streamed += 1
                    for piece in self._pieces(text, calls, self._logprobs(choice, request.logprobs)):
                        emit(piece)
                if choice.get("finish_reason"):
                    progress.finish = choice["finish_reason"]
                    progress.usage, progress.timings = chunk.get("usage"), chunk.get("timings")
            except BaseException as exc:  # raised on this thread once the slot has stopped
                progress.error = exc
                return True
            return cancel.is_set()

        answer = self._server.handle_completions(body, on_chunk)
        if progress.error is None and isinstance(answer, dict) and "error" in answer:
            progress.error = self._error(answer["error"], len(prompt), opts.max_tokens)
        if progress.error is not None:
            raise progress.error
        finish, usage, timings = progress.finish, progress.usage, progress.timings
        if cancel.is_set() and finish == "length" and usage is None:
            finish = "cancelled"
        ended = time.perf_counter()
        first_token_at = progress.first_token_at or ended
        prompt_seconds, decode_seconds = first_token_at - started, ended - first_token_at
        if timings:
            prompt_seconds = timings.get("prompt_ms", prompt_seconds * 1000) / 1000
            decode_seconds = timings.get("predicted_ms", decode_seconds * 1000) / 1000
        # A cancelled slot sends no usage: what was streamed is what it produced.
        produced = (usage or {}).get("completion_tokens", progress.streamed)
        cached = ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        if calls is not None and calls.called and finish == "stop":
            finish = "tool_calls"
        emit(
            TextChunk(
                "",
                finish_reason=finish,  # type: ignore[arg-type]
                usage=Usage(len(prompt), produced, cached),
                seed=seed,
                prompt_seconds=prompt_seconds,
                decode_seconds=decode_seconds,
                tool_calls=list(calls.calls) if calls is not None and calls.called else None,
                sampling=used,
            )
        )

    def _error(self, error: dict, prompt_tokens: int, max_tokens: int | None) -> StudioError:
        """The server's refusal as the studio's error: context full is the usual 400, the rest say what
        llama.cpp said."""
        if error.get("type") == "exceed_context_size_error":
            return context_exceeded(self.context_length, prompt_tokens, max_tokens)
        if error.get("code") == 400:
            return InvalidRequest(f"llama.cpp refused the request: {error.get('message')}")
        return ModelLoadError(f"llama.cpp failed on model '{self.model_id}': {error.get('message')}")

    @staticmethod
    def _logprobs(choice: dict, wanted: int | None) -> list[TokenLogprob] | None:
        if wanted is None or not choice.get("logprobs"):
            return None

        def entry(item: dict) -> TokenLogprob:
            raw = bytes(item.get("bytes") or item["token"].encode())
            return TokenLogprob(raw.decode("utf-8", errors="replace"), item["logprob"], list(raw))

        out = []
        for item in choice["logprobs"].get("content") or []:
            token = entry(item)
            token.top = [entry(t) for t in (item.get("top_logprobs") or [])[:wanted]]
            out.append(token)
        return out

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
        self._http.close()
        server, self._server = self._server, None
        del server  # the binding stops the server loop and frees the model when the object goes
