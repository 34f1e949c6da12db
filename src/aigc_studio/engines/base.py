"""The text-engine contract: the one seam between the studio and a model runtime.

The data types it speaks (``Message``, ``TextOptions``, ``TextRequest``, ``TextChunk``) live in
``aigc_studio.contracts``. An engine turns a list of chat messages plus options into a stream of
``TextChunk``s. It knows nothing of history, HTTP, labels or the UI. Capabilities are plain class
attributes.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from ..contracts import Message, PromptProgress, TextChunk, TextRequest
from ..errors import ContextLengthExceeded, InvalidRequest

__all__ = ["TextEngine", "context_exceeded", "llama_progress"]


def llama_progress(read: object, every_step: bool) -> PromptProgress | None:
    """A ``prompt_progress`` object of llama.cpp's server (``{total, cache, processed, time_ms}``, in process
    or over HTTP) as the step to report, or None: the last step comes just before the first token, so it is
    passed on only ``every_step`` (``TextRequest.progress``). Anything else is None."""
    if not isinstance(read, dict) or "processed" not in read or "total" not in read:
        return None
    if read["processed"] >= read["total"] and not every_step:
        return None
    return PromptProgress(
        int(read["processed"]), int(read["total"]), int(read.get("cache") or 0), float(read.get("time_ms") or 0)
    )


def context_exceeded(context_length: int, prompt_tokens: int, max_tokens: int | None) -> ContextLengthExceeded:
    """The error for a prompt and completion that do not fit a model's context, worded as OpenAI's."""
    return ContextLengthExceeded(
        f"This model's maximum context length is {context_length} tokens. However, you requested "
        f"{prompt_tokens + (max_tokens or 0)} tokens ({prompt_tokens} in the messages, {max_tokens or 0} in the "
        "completion). Please reduce the length of the messages or completion.",
        param="messages",
    )


class TextEngine(ABC):
    """A loaded text model. Subclasses set the capability flags and implement ``stream``."""

    can_stream = True
    supports_seed = True
    supports_stop = True
    supports_response_format = False  # JSON / JSON Schema answers (TextRequest.response_format)
    supports_tools = False  # function calls (TextRequest.tools)
    supports_logit_bias = False  # TextRequest.logit_bias
    supports_logprobs = False  # TextRequest.logprobs
    # How many requests may stream at once (each from its own thread); 1: one at a time.
    parallel = 1

    def __init__(self, model_id: str, context_length: int):
        self.model_id = model_id
        self.context_length = context_length

    def completion_room(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """How many tokens the completion may have after a prompt of ``prompt_tokens``: ``max_tokens`` or
        all the room left; ContextLengthExceeded when not even one token (or ``max_tokens``) fits."""
        room = self.context_length - prompt_tokens
        if room < (max_tokens or 1):
            raise context_exceeded(self.context_length, prompt_tokens, max_tokens)
        return min(max_tokens or room, room)

    @abstractmethod
    def count_prompt_tokens(
        self, messages: list[Message], prompt: str | None = None, request: TextRequest | None = None
    ) -> int:
        """Tokens the messages take once the chat template is applied (or that ``prompt`` takes);
        ``request`` adds what its tools put in the prompt."""

    def check(self, request: TextRequest) -> None:
        """Refuse (InvalidRequest) what this engine cannot do for ``request``, before it is queued."""
        fmt = request.response_format
        if fmt is not None and fmt.type != "text" and not self.supports_response_format:
            raise InvalidRequest(
                f"model '{self.model_id}' cannot constrain its answer to JSON; response_format must be "
                "{'type': 'text'} with it (a llama.cpp model can)",
                param="response_format",
            )
        if request.logit_bias and not self.supports_logit_bias:
            raise InvalidRequest(
                f"model '{self.model_id}' cannot bias tokens; leave logit_bias out", param="logit_bias"
            )
        if request.logprobs is not None and not self.supports_logprobs:
            raise InvalidRequest(f"model '{self.model_id}' gives no log probabilities (logprobs)", param="logprobs")
        if request.calls_tools and not self.supports_tools:
            raise InvalidRequest(
                f"model '{self.model_id}' cannot call tools; leave tools out or set tool_choice to 'none' "
                "(a llama.cpp model can call them)",
                param="tools",
            )

    @abstractmethod
    def stream(self, request: TextRequest, cancel: threading.Event) -> Iterator[TextChunk]:
        """Generate for ``request``, yielding chunks; stop early once ``cancel`` is set.

        At most ``parallel`` calls run at once, each on its own thread (see ``engines.worker``).
        """

    def run(self, request: TextRequest, cancel: threading.Event, emit: Callable[[TextChunk], None]) -> None:
        """Generate for ``request``, handing each chunk to ``emit`` on the calling thread; what the
        worker calls. This drives ``stream``; an engine whose runtime calls back per token (llama.cpp's
        server loop) overrides it, so that no thread stands between the runtime and ``emit``."""
        for chunk in self.stream(request, cancel):
            emit(chunk)

    def close(self) -> None:  # noqa: B027 - optional: an engine with nothing to free keeps it
        """Free the model's memory."""
