"""The text-engine contract: the one seam between the studio and a model runtime.

An engine turns a list of chat messages plus options into a stream of ``TextChunk``s. It knows nothing
of history, HTTP, labels or the UI. Capabilities are plain class attributes.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str


class TextOptions(BaseModel):
    """Sampling options, with OpenAI's names where OpenAI has one and llama.cpp's otherwise."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature; 0 is greedy.")
    top_p: float | None = Field(None, ge=0, le=1, description="Nucleus sampling: keep tokens up to this mass.")
    top_k: int | None = Field(None, ge=0, le=1000, description="Keep the k most likely tokens (0: all).")
    min_p: float | None = Field(None, ge=0, le=1, description="Drop tokens below min_p × the top probability.")
    repeat_penalty: float | None = Field(None, ge=0, le=10, description="Penalty for repeated tokens (1: off).")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="Penalty for tokens already present.")
    frequency_penalty: float | None = Field(
        None, ge=-2, le=2, description="Penalty proportional to how often a token appeared."
    )
    seed: int | None = Field(None, ge=-1, le=2**32 - 1, description="Random seed (-1 or unset: random).")
    max_tokens: int | None = Field(
        None, ge=1, le=1_000_000, description="Most tokens to generate (unset: until the context is full)."
    )
    stop: list[str] = Field(default_factory=list, max_length=8, description="Stop at any of these strings.")

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must not be empty")
        return value


@dataclass
class TextRequest:
    """Chat messages to answer, or (``prompt`` set) raw text to continue without a chat template."""

    messages: list[Message]
    options: TextOptions = field(default_factory=TextOptions)
    prompt: str | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TextChunk:
    """A piece of generated text. The last chunk of a stream has ``finish_reason`` and ``usage`` set."""

    text: str
    finish_reason: Literal["stop", "length", "cancelled"] | None = None
    usage: Usage | None = None
    seed: int | None = None
    # Seconds spent evaluating the prompt and generating, measured by the engine.
    prompt_seconds: float | None = None
    decode_seconds: float | None = None


class TextEngine(ABC):
    """A loaded text model. Subclasses set the capability flags and implement ``stream``."""

    can_stream = True
    supports_seed = True
    supports_stop = True

    def __init__(self, model_id: str, context_length: int):
        self.model_id = model_id
        self.context_length = context_length

    @abstractmethod
    def count_prompt_tokens(self, messages: list[Message], prompt: str | None = None) -> int:
        """Tokens the messages take once the chat template is applied (or that ``prompt`` takes)."""

    @abstractmethod
    def stream(self, request: TextRequest, cancel: threading.Event) -> Iterator[TextChunk]:
        """Generate for ``request``, yielding chunks; stop early once ``cancel`` is set.

        Not thread-safe: callers serialize calls per engine (see ``engines.worker``).
        """

    def close(self) -> None:
        """Free the model's memory."""
