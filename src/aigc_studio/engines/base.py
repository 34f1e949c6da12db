"""The text-engine contract: the one seam between the studio and a model runtime.

The data types it speaks (``Message``, ``TextOptions``, ``TextRequest``, ``TextChunk``) live in
``aigc_studio.contracts``. An engine turns a list of chat messages plus options into a stream of
``TextChunk``s. It knows nothing of history, HTTP, labels or the UI. Capabilities are plain class
attributes.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator

from ..contracts import Message, TextChunk, TextRequest

__all__ = ["TextEngine"]


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

    def close(self) -> None:  # noqa: B027 - optional: an engine with nothing to free keeps it
        """Free the model's memory."""
