"""Grammar-constrained (and logit-biased) sampling the fast way, as llama.cpp's own server samples.

llama-cpp-python puts the grammar into the sampler chain ahead of top-k, so every step checks all
~50k vocabulary tokens against the grammar; inside a JSON string (where almost any token is allowed)
that costs several times the model's own time per token. llama.cpp's ``common_sampler`` instead samples
first and asks the grammar only about the chosen token, and runs the full grammar pass only when that
token is refused. The answer obeys the grammar either way; this is the same rule, with the same cost
as llama.cpp's server.

OpenAI's ``logit_bias`` is added to the logits here too, before the chain samples (llama-cpp-python's
own hook for that runs Python over every logit of every step, and its code says it is "probably broken"),
and OpenAI's ``logprobs`` are read off the same logits.
"""

from __future__ import annotations

import ctypes
import math

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaSampler, LlamaTokenDataArray


class SamplingExtras:
    """What the studio's sampler adds, handed to ``generate`` as its ``logits_processor``: OpenAI's
    ``logit_bias`` (token id -> bias) and ``logprobs`` (None: off; n: also the n most likely tokens)."""

    def __init__(self, bias: dict[int, float], logprobs: int | None):
        self.bias, self.logprobs = bias, logprobs


class GrammarFirstSampler:
    """Stands in for llama-cpp-python's ``LlamaSampler`` (it has the same ``sample``) when a grammar or a
    logit bias is set."""

    def __init__(self, llama: llama_cpp.Llama, chain: LlamaSampler, gbnf: str | None, extras: SamplingExtras | None):
        self._chain = chain  # penalties, top-k ... dist: everything but the grammar
        self._grammar = None
        if gbnf is not None:
            self._grammar = llama_cpp.llama_sampler_init_grammar(llama._model.vocab, gbnf.encode(), b"root")
            if not self._grammar:
                raise ValueError("llama.cpp could not parse the grammar")
        bias = extras.bias if extras is not None else {}
        self._bias_ids = np.array(list(bias), dtype=np.intc)
        self._bias_values = np.array(list(bias.values()), dtype=np.single)
        self._logprobs = extras.logprobs if extras is not None else None
        # (log probability of the last sampled token, [(token id, log probability)] of the most likely)
        self.last_logprobs: tuple[float, list[tuple[int, float]]] | None = None
        self._n_vocab = llama.n_vocab()
        self._all = LlamaTokenDataArray(n_vocab=self._n_vocab)
        self._one = np.recarray((1,), dtype=self._all.candidates_data.dtype)
        self._one_array = llama_cpp.llama_token_data_array(
            data=self._one.ctypes.data_as(llama_cpp.llama_token_data_p), size=1, selected=-1, sorted=False
        )

    def _allowed(self, token: int) -> bool:
        if self._grammar is None:
            return True
        self._one.id[0], self._one.logit[0], self._one.p[0] = token, 0.0, 0.0
        self._one_array.size, self._one_array.selected = 1, -1
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._one_array))
        return not math.isinf(self._one.logit[0])

    def _pick(self, logits: np.ndarray, grammar_first: bool) -> int:
        self._all.copy_logits(logits)
        if len(self._bias_ids):
            self._all.candidates_data.logit[self._bias_ids] += self._bias_values
        candidates = ctypes.byref(self._all.candidates)
        if grammar_first:
            llama_cpp.llama_sampler_apply(self._grammar, candidates)
        llama_cpp.llama_sampler_apply(self._chain.sampler, candidates)
        return int(self._all.candidates_data.id[self._all.candidates.selected])

    def sample(self, ctx, idx: int = -1) -> int:
        pointer = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        token = self._pick(logits, grammar_first=False)
        if not self._allowed(token):
            token = self._pick(logits, grammar_first=True)
        llama_cpp.llama_sampler_accept(self._chain.sampler, token)
        if self._grammar is not None:
            llama_cpp.llama_sampler_accept(self._grammar, token)
        if self._logprobs is not None:
            self.last_logprobs = self._log_probabilities(logits, token)
        return token

    def _log_probabilities(self, logits: np.ndarray, token: int) -> tuple[float, list[tuple[int, float]]]:
        z = logits.astype(np.float64)
        if len(self._bias_ids):
            z[self._bias_ids] += self._bias_values
        top = z.max()
        z -= top + np.log(np.exp(z - top).sum())
        n = self._logprobs or 0
        best = np.argpartition(-z, n)[:n] if n else np.array([], dtype=np.intc)
        best = best[np.argsort(-z[best])]
        return float(z[token]), [(int(i), float(z[i])) for i in best]

    def close(self) -> None:
        if getattr(self, "_grammar", None):
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None
        if getattr(self, "_chain", None) is not None:
            self._chain.close()

    def __del__(self) -> None:
        self.close()


class GrammarFirstLlama(llama_cpp.Llama):
    """``llama_cpp.Llama`` whose ``generate(..., grammar=..., logits_processor=SamplingExtras(...))``
    samples with ``GrammarFirstSampler``."""

    def _init_sampler(self, *args, grammar=None, logits_processor=None, **kwargs):
        extras = logits_processor if isinstance(logits_processor, SamplingExtras) else None
        chain = super()._init_sampler(
            *args, grammar=None, logits_processor=None if extras is not None else logits_processor, **kwargs
        )
        if grammar is None and extras is None:
            return chain
        return GrammarFirstSampler(self, chain, grammar._grammar if grammar is not None else None, extras)
