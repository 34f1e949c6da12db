"""A1111 prompts -> CLIP conditioning, of any length, as A1111 encodes them (``modules/sd_hijack_clip.py``).

- ``(word)``, ``[word]``, ``(word:1.5)`` and ``\\(`` are parsed as A1111's ``prompt_parser`` parses them;
  ``BREAK`` (capitals, outside brackets) ends the current chunk.
- The prompt's tokens are cut into chunks of 75; a chunk that fills up with a comma among its last 20
  tokens ends after that comma and the rest moves on (A1111's ``comma_padding_backtrack``). Each chunk is
  padded with the end token, wrapped in start and end tokens (77) — on SD 2.x and SDXL's second encoder
  everything after the first end token becomes the pad token, as A1111 does for OpenCLIP — and encoded
  on its own; the encodings are concatenated: ``(1, 77·k, dim)``.
- Weights: each token's hidden state is multiplied by its weight, then the whole is rescaled to the mean
  it had before (A1111's "Original" emphasis).
- Prompt and negative prompt are brought to the same number of chunks by appending the encoding of the
  empty prompt to the shorter (A1111's "pad prompt/negative prompt" option; diffusers needs equal lengths).
- SD 1.x/2.x: clip skip n takes the n-th last layer's hidden states through the final layer norm.
  SDXL: both encoders' penultimate layer, unnormalized, side by side; clip skip ignored (A1111's default);
  the pooled embedding is the second encoder's, from the first chunk; an empty negative prompt is zeros,
  as A1111 and diffusers make it for SDXL.
"""

from __future__ import annotations

import re

import torch

__all__ = ["CHUNK_TOKENS", "PromptEncoder", "parse_prompt_attention", "prompt_chunks"]

CHUNK_TOKENS = 75  # prompt tokens per chunk; with the start and end tokens, CLIP's 77
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default

_ATTENTION = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_BREAK_WEIGHT = -1.0  # how a BREAK marker travels among the runs, as in A1111


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split an A1111 prompt into ``(text, weight)`` runs, as A1111's ``prompt_parser`` does.

    ``(a)`` multiplies by 1.1, ``[a]`` divides by 1.1, ``(a:1.5)`` multiplies by 1.5, ``\\(`` is a literal
    bracket; unclosed brackets apply to the end. ``BREAK`` outside brackets becomes the run
    ``("BREAK", -1.0)``. Neighbouring runs of equal weight are merged.
    """
    runs: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            runs.append([token[1:], 1.0])
        elif token == "(":
            round_brackets.append(len(runs))
        elif token == "[":
            square_brackets.append(len(runs))
        elif weight is not None and round_brackets:
            multiply_from(round_brackets.pop(), float(weight))
        elif token == ")" and round_brackets:
            multiply_from(round_brackets.pop(), 1.1)
        elif token == "]" and square_brackets:
            multiply_from(square_brackets.pop(), 1 / 1.1)
        else:
            for index, part in enumerate(_BREAK.split(token)):
                if index > 0:
                    runs.append(["BREAK", _BREAK_WEIGHT])
                runs.append([part, 1.0])
    for start in round_brackets:
        multiply_from(start, 1.1)
    for start in square_brackets:
        multiply_from(start, 1 / 1.1)

    merged: list[list] = []
    for run in runs or [["", 1.0]]:
        if merged and merged[-1][1] == run[1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(text, weight) for text, weight in merged]


def prompt_chunks(runs: list[tuple[str, float]], tokenizer) -> list[tuple[list[int], list[float]]]:
    """Weighted runs -> chunks of 77 token ids and their weights, as A1111's ``tokenize_line`` makes them."""
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer.get_vocab().get(",</w>")
    token_ids = tokenizer([text for text, _ in runs], truncation=False, add_special_tokens=False, verbose=False)
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def next_chunk() -> None:
        nonlocal tokens, weights, last_comma
        padding = CHUNK_TOKENS - len(tokens)
        chunks.append(([start, *tokens, *[end] * padding, end], [1.0, *weights, *[1.0] * padding, 1.0]))
        tokens, weights, last_comma = [], [], -1

    for ids, (text, weight) in zip(token_ids["input_ids"], runs, strict=True):
        if text == "BREAK" and weight == _BREAK_WEIGHT:
            next_chunk()
            continue
        for token in ids:
            if token == comma:
                last_comma = len(tokens)
            elif len(tokens) == CHUNK_TOKENS and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
                # the chunk is full and a comma is near its end: end it there, carry the rest over
                cut = last_comma + 1
                carried = tokens[cut:], weights[cut:]
                tokens, weights = tokens[:cut], weights[:cut]
                next_chunk()
                tokens, weights = list(carried[0]), list(carried[1])
            if len(tokens) == CHUNK_TOKENS:
                next_chunk()
            tokens.append(token)
            weights.append(weight)
    if tokens or not chunks:
        next_chunk()
    pad = tokenizer.pad_token_id
    if pad is not None and pad != end:  # OpenCLIP: everything after the first end token is padding
        chunks = [(ids[: ids.index(end) + 1] + [pad] * (len(ids) - ids.index(end) - 1), w) for ids, w in chunks]
    return chunks


def _emphasize(hidden: torch.Tensor, weights: list[float]) -> torch.Tensor:
    # A1111's "Original" emphasis: scale each token's state by its weight, then restore the mean
    if all(weight == 1.0 for weight in weights):
        return hidden  # what the formula gives, without dividing by a mean that may be 0
    original_mean = hidden.mean()
    hidden = hidden * torch.tensor(weights, dtype=hidden.dtype, device=hidden.device)[None, :, None]
    new_mean = hidden.mean()
    # A final layer norm without bias leaves a mean of rounding noise (untrained test models): nothing to restore
    if new_mean.abs() <= 1e-6 * hidden.abs().mean():
        return hidden
    return hidden * (original_mean / new_mean)


class PromptEncoder:
    """A1111 prompt and negative prompt -> the pipeline's ``prompt_embeds`` arguments (see the module doc)."""

    def __init__(self, pipe, is_sdxl: bool):
        self._encoders = [(pipe.tokenizer, pipe.text_encoder)]
        if is_sdxl:
            self._encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
        self._is_sdxl = is_sdxl
        self._force_zeros = is_sdxl and getattr(pipe.config, "force_zeros_for_empty_prompt", True)

    def __call__(self, prompt: str, negative_prompt: str, clip_skip: int = 1) -> dict[str, torch.Tensor]:
        """Encode both prompts; the result goes to a diffusers SD or SDXL pipeline as keyword arguments."""
        positive, pooled = self.encode(prompt, clip_skip)
        if self._force_zeros and negative_prompt == "":
            negative, negative_pooled = torch.zeros_like(positive), torch.zeros_like(pooled)
        else:
            negative, negative_pooled = self.encode(negative_prompt, clip_skip)
        if positive.shape[1] != negative.shape[1]:
            empty = self.encode("", clip_skip)[0]
            positive, negative = (
                self._pad(z, max(positive.shape[1], negative.shape[1]), empty) for z in (positive, negative)
            )
        arguments = {"prompt_embeds": positive, "negative_prompt_embeds": negative}
        if self._is_sdxl:
            arguments |= {"pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": negative_pooled}
        return arguments

    def encode(self, prompt: str, clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One prompt -> ``(hidden states (1, 77·k, dim), pooled (1, dim) or None)``."""
        runs = parse_prompt_attention(prompt)
        per_encoder, pooled = [], None
        for index, (tokenizer, text_encoder) in enumerate(self._encoders):
            states = []
            for ids, weights in prompt_chunks(runs, tokenizer):
                output = text_encoder(
                    torch.tensor([ids], device=text_encoder.device), output_hidden_states=True, return_dict=True
                )
                if self._is_sdxl:
                    hidden = output.hidden_states[-2]  # as SDXL was trained: penultimate, not normalized
                    if index == 1 and pooled is None:
                        pooled = output.text_embeds
                elif clip_skip > 1:
                    final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
                    hidden = final_layer_norm(output.hidden_states[-clip_skip])
                else:
                    hidden = output.last_hidden_state
                states.append(_emphasize(hidden, weights))
            per_encoder.append(torch.cat(states, dim=1))
        if len({z.shape[1] for z in per_encoder}) > 1:
            raise ValueError("the two text encoders' tokenizers cut this prompt into different numbers of chunks")
        return torch.cat(per_encoder, dim=-1), pooled

    @staticmethod
    def _pad(hidden: torch.Tensor, length: int, empty: torch.Tensor) -> torch.Tensor:
        repeats = (length - hidden.shape[1]) // empty.shape[1]
        return torch.cat([hidden, *[empty] * repeats], dim=1) if repeats else hidden
