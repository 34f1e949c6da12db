"""Hugging Face transformers engine for causal language models.

A model is a local folder (``config.json``, weights, tokenizer files), or a GGUF file that transformers
de-quantizes to float32 on load (``from_pretrained(folder, gguf_file=...)``; it needs the ``gguf``
package and an architecture transformers maps, such as llama). The chat template is the tokenizer's own
(ChatML when it has none), so counted prompt tokens are the tokens the model sees.

``model.generate`` runs on its own thread and hands text to a ``TextIteratorStreamer``; a stopping
criterion checked after every token ends it when the request is cancelled or a stop string appears.
Sampling is done by the engine's own logits processors in llama.cpp's order (penalties and logit bias,
then temperature, top-k, top-p, min-p), the last of which draws the token from a private
``torch.Generator``: the same seed gives the same text even while other threads use torch's global
random state. Greedy decoding (temperature 0) skips the draw.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..contracts import Message, TextChunk, TextRequest, Usage
from ..errors import InvalidRequest, ModelLoadError
from .base import TextEngine
from .chat_template import CHATML
from .llamacpp import DEFAULTS

# Config fields that hold a model's longest sequence, by model family.
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def resolve_device(device: str) -> str:
    """The torch device for a device setting: "auto" is CUDA when torch sees a GPU, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device is '{device}' but torch sees no CUDA GPU here; set device to auto or cpu")
    return device


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


class TransformersEngine(TextEngine):
    supports_logit_bias = True

    def __init__(
        self,
        model_id: str,
        path: str | Path,
        context_length: int = 0,
        threads: int = 0,
        device: str = "auto",
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        p = Path(path)
        folder, gguf_file = (p.parent, p.name) if p.is_file() else (p, None)
        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        # float32 on the CPU (half precision is slow there); the weights' own dtype on a GPU.
        dtype = torch.float32 if self.device == "cpu" else "auto"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
            self.model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=dtype)
        except Exception as exc:  # transformers raises OSError, ValueError, ImportError, NotImplementedError...
            what = f"GGUF file {p}" if gguf_file else f"folder {p}"
            raise ModelLoadError(f"transformers cannot load model '{model_id}' from the {what}: {exc}") from exc
        self.model.to(self.device).eval()
        trained = next(
            (int(v) for f in CONTEXT_FIELDS if isinstance(v := getattr(self.model.config, f, None), int) and v > 0),
            None,
        )
        if trained is None:
            limit = getattr(self.tokenizer, "model_max_length", 0) or 0
            trained = int(limit) if 0 < limit < 10_000_000 else 2048
        # The context setting may shorten what the model was trained for, never lengthen it.
        super().__init__(model_id, min(context_length, trained) if context_length else trained)
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self._template = self.tokenizer.chat_template or CHATML
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self._eos = [eos] if isinstance(eos, int) else list(eos or [])
        pad = self.model.generation_config.pad_token_id
        self._pad = pad if pad is not None else (self._eos[0] if self._eos else 0)

    @property
    def metadata(self) -> dict[str, str]:
        """What ``aigc models info`` shows: the architecture, where and in what precision it runs."""
        config = self.model.config
        return {
            "architecture": ", ".join(config.architectures or [type(self.model).__name__]),
            "model_type": str(config.model_type),
            "parameters": str(sum(p.numel() for p in self.model.parameters())),
            "vocab_size": str(self.vocab_size),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": self.device,
            "template": "the tokenizer's chat template" if self.tokenizer.chat_template else "ChatML (it has none)",
        }

    def _prompt_ids(self, messages: list[Message], raw: str | None = None) -> list[int]:
        if raw is not None:
            # A raw completion prompt is the user's text: special-token strings in it stay plain text.
            return self.tokenizer(raw, split_special_tokens=True)["input_ids"]
        from jinja2 import TemplateError

        rendered = [{"role": m.role, "content": m.content} for m in messages]
        try:
            prompt = self.tokenizer.apply_chat_template(
                rendered, chat_template=self._template, add_generation_prompt=True, tokenize=False
            )
        except TemplateError as exc:  # a template's raise_exception(...): roles out of order, say
            raise InvalidRequest(
                f"model '{self.model_id}''s chat template refuses these messages: {exc}", param="messages"
            ) from exc
        # The template writes the special tokens (BOS included) itself.
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def count_prompt_tokens(
        self, messages: list[Message], prompt: str | None = None, request: TextRequest | None = None
    ) -> int:
        return len(self._prompt_ids(messages, prompt))

    def check(self, request: TextRequest) -> None:
        super().check(request)
        outside = sorted(t for t in request.logit_bias if not 0 <= t < self.vocab_size)
        if outside:
            raise InvalidRequest(
                f"logit_bias names token ids outside this model's vocabulary (0..{self.vocab_size - 1}): "
                + ", ".join(map(str, outside[:10])),
                param="logit_bias",
            )

    def stream(self, request: TextRequest, cancel: threading.Event) -> Iterator[TextChunk]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        torch = self._torch
        opts = request.options
        prompt = self._prompt_ids(request.messages, request.prompt)
        limit = self.completion_room(len(prompt), opts.max_tokens)
        seed = opts.seed if opts.seed not in (None, -1) else random.randrange(2**31)
        sampling = dict(DEFAULTS)
        for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty"):
            if getattr(opts, name) is not None:
                sampling[name] = getattr(opts, name)
        sampling["presence_penalty"] = opts.presence_penalty or 0.0
        sampling["frequency_penalty"] = opts.frequency_penalty or 0.0
        processors = self._processors(request, sampling, len(prompt), seed)

        halt = threading.Event()  # set on cancel or a stop string: generation ends after the current token
        watch = _Watch(len(prompt), cancel, halt)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        input_ids = torch.tensor([prompt], dtype=torch.long, device=self.device)
        outcome: dict = {}

        def generate() -> None:
            try:
                with torch.inference_mode():
                    outcome["ids"] = self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        max_new_tokens=limit,
                        do_sample=False,  # the last processor has already drawn the token
                        temperature=None,
                        top_p=None,
                        top_k=None,
                        min_p=None,
                        repetition_penalty=None,
                        logits_processor=processors,
                        stopping_criteria=StoppingCriteriaList([watch]),
                        eos_token_id=self._eos or None,
                        pad_token_id=self._pad,
                        streamer=streamer,
                    )
            except BaseException as exc:
                outcome["error"] = exc
                streamer.end()  # the reader waits for the end of the stream; without it, it would hang

        thread = threading.Thread(target=generate, name=f"generate-{self.model_id}", daemon=True)
        started = time.perf_counter()
        thread.start()
        stops = opts.stop
        pending, finish = "", None
        text_stream, read_to_end = iter(streamer), False
        try:
            for text in text_stream:
                pending += text
                if stops:
                    hits = [i for i in (pending.find(s) for s in stops) if i >= 0]
                    if hits:
                        pending = pending[: min(hits)]
                        finish = "stop"
                        halt.set()
                        break
                    keep = _held_back(pending, stops)
                else:
                    keep = 0
                if len(pending) > keep:
                    yield TextChunk(pending[: len(pending) - keep])
                    pending = pending[len(pending) - keep :]
            else:
                read_to_end = True
        finally:
            # Also when the consumer stops reading (a client gone): end generation, wait for the thread.
            halt.set()
            if not read_to_end:
                # Read to the end-of-stream mark, which generate puts as it ends (or fails).
                for _ in text_stream:
                    pass
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        if pending:
            yield TextChunk(pending)
        ended = time.perf_counter()
        generated = outcome["ids"][0, len(prompt) :].tolist()
        ended_on_eos = bool(generated) and generated[-1] in self._eos
        if finish is None:
            if cancel.is_set():
                finish = "cancelled"
            elif ended_on_eos:
                finish = "stop"
            else:
                finish = "length"
        first_token_at = watch.first_token_at or ended
        yield TextChunk(
            "",
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(len(prompt), len(generated) - int(ended_on_eos)),
            seed=seed,
            prompt_seconds=first_token_at - started,
            decode_seconds=ended - first_token_at,
            sampling=sampling,
        )

    def _processors(self, request: TextRequest, sampling: dict, prompt_length: int, seed: int):
        """The logits processors, in llama.cpp's sampler order, ending with the draw (when sampling)."""
        from transformers import (
            LogitsProcessorList,
            MinPLogitsWarper,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        processors = LogitsProcessorList()
        if sampling["repeat_penalty"] != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(sampling["repeat_penalty"]))
        if sampling["presence_penalty"] or sampling["frequency_penalty"]:
            processors.append(
                _OpenAIPenalties(prompt_length, sampling["presence_penalty"], sampling["frequency_penalty"])
            )
        if request.logit_bias:
            processors.append(_LogitBias(request.logit_bias, self.vocab_size, self.device))
        if sampling["temperature"] > 0:
            processors.append(TemperatureLogitsWarper(sampling["temperature"]))
            if sampling["top_k"]:
                processors.append(TopKLogitsWarper(sampling["top_k"]))
            if sampling["top_p"] < 1.0:
                processors.append(TopPLogitsWarper(sampling["top_p"]))
            if sampling["min_p"]:
                processors.append(MinPLogitsWarper(sampling["min_p"]))
            generator = self._torch.Generator(device=self.device).manual_seed(seed)
            processors.append(_Draw(generator))
        return processors

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()


class _Watch:
    """Stopping criterion: ends generation once ``halt`` is set, and notes when the first token came."""

    def __init__(self, prompt_length: int, cancel: threading.Event, halt: threading.Event):
        self.prompt_length = prompt_length
        self.cancel, self.halt = cancel, halt
        self.first_token_at: float | None = None

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if self.first_token_at is None and input_ids.shape[-1] > self.prompt_length:
            self.first_token_at = time.perf_counter()
        stop = self.halt.is_set() or self.cancel.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _OpenAIPenalties:
    """OpenAI's presence and frequency penalties over the tokens generated so far (not the prompt)."""

    def __init__(self, prompt_length: int, presence: float, frequency: float):
        self.prompt_length, self.presence, self.frequency = prompt_length, presence, frequency

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self.prompt_length :]
        if generated.shape[-1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence


class _LogitBias:
    """OpenAI's logit_bias: a value added to a token's logit before sampling (-100 bans it, 100 forces it)."""

    def __init__(self, bias: dict[int, float], vocab_size: int, device: str):
        import torch

        self.bias = torch.zeros(vocab_size, device=device)
        for token, value in bias.items():
            self.bias[token] = value

    def __call__(self, input_ids, scores):
        return scores + self.bias[: scores.shape[-1]].to(scores.dtype)


class _Draw:
    """Samples the next token from the warped logits with a private generator, and leaves it as the only
    candidate, so generate's greedy pick takes it."""

    def __init__(self, generator):
        self.generator = generator

    def __call__(self, input_ids, scores):
        import torch

        probs = torch.softmax(scores.float(), dim=-1)
        token = torch.multinomial(probs, 1, generator=self.generator)
        return torch.full_like(scores, float("-inf")).scatter_(1, token, 0.0)
