"""A text engine for any OpenAI-compatible server: llama.cpp's server, vLLM, Ollama, a hosted service.

The studio sends ``POST {base_url}/chat/completions`` (``/completions`` for a raw prompt) with
``stream: true`` and turns the server's SSE chunks into ``TextChunk``s. One HTTP client per engine keeps
its connection alive between requests. The API key goes only into the ``Authorization`` header; it is
never logged, recorded or shown.

What the studio cannot know about a remote model, it says so: prompt tokens are estimated (the server's
own count replaces the estimate when it sends ``usage``), and the context check uses the length the user
gave when adding the model (none: the server enforces its own).

llama.cpp's server reports how far it has read a prompt (``return_progress``: ``prompt_progress`` chunks
before the answer). Other servers do not take that field (OpenAI's refuses unknown ones), so it is sent
only to a server that is llama.cpp's — asked once, by its ``GET /props`` — and only for a long prompt or
a request that asks for every step.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx

from ..contracts import Message, TextChunk, TextRequest, Usage
from ..errors import InvalidRequest, RemoteError
from .base import TextEngine, llama_progress

# Used for the context check when the user gave no context length: large, so the server decides.
UNKNOWN_CONTEXT = 1_000_000
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}
# A prompt estimated at this many tokens or more asks llama.cpp's server for its reading progress: it takes
# a second or more on a CPU (about 140 tokens a second for the embedded model on 2 cores).
LONG_PROMPT = 256


def estimate_tokens(text: str) -> int:
    """A cautious token estimate for text the studio cannot tokenize (a remote model's): about four
    characters per token for English, one per Han character."""
    han = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    return han + (len(text) - han + 3) // 4


class RemoteEngine(TextEngine):
    supports_seed = True  # passed on; whether the server honours it is the server's affair

    def __init__(
        self,
        model_id: str,
        base_url: str,
        remote_model: str,
        api_key: str | None = None,
        context_length: int | None = None,
        timeout: float = 120.0,
    ):
        super().__init__(model_id, context_length or UNKNOWN_CONTEXT)
        self.base_url = base_url.rstrip("/")
        self.remote_model = remote_model
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Read timeout: the longest the server may stay silent mid-answer (a hung server ends the run).
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=False
        )
        self._is_llama_cpp: bool | None = None  # asked when first needed

    def reports_progress(self) -> bool:
        """Whether the server is llama.cpp's, which reports its prompt reading (``return_progress``): its
        ``GET /props`` (beside ``/v1``) names its build and generation settings. Asked once; a server that
        does not answer it, or answers something else, is taken as not llama.cpp's."""
        if self._is_llama_cpp is None:
            root = self.base_url.removesuffix("/v1")
            try:
                props = self._client.get(root + "/props", timeout=5.0)
                body = props.json() if props.status_code == 200 else {}
            except (httpx.HTTPError, ValueError):
                body = {}
            self._is_llama_cpp = (
                isinstance(body, dict) and "build_info" in body and "default_generation_settings" in body
            )
        return self._is_llama_cpp

    def count_prompt_tokens(
        self, messages: list[Message], prompt: str | None = None, request: TextRequest | None = None
    ) -> int:
        if prompt is not None:
            return max(1, estimate_tokens(prompt))
        return sum(estimate_tokens(m.content or "") + 4 for m in messages)

    def _payload(self, request: TextRequest) -> tuple[str, dict]:
        opts = request.options
        payload: dict = {"model": self.remote_model, "stream": True, "stream_options": {"include_usage": True}}
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "max_tokens"):
            value = getattr(opts, name)
            if value is not None:
                payload[name] = value
        if opts.seed not in (None, -1):
            payload["seed"] = opts.seed
        if opts.stop:
            payload["stop"] = opts.stop
        # llama.cpp's and vLLM's servers take these beside OpenAI's names; OpenAI ignores none of them
        # silently, so they are sent only when the user set them.
        for name in ("top_k", "min_p", "repeat_penalty"):
            value = getattr(opts, name)
            if value is not None:
                payload[name] = value
        long = self.count_prompt_tokens(request.messages, request.prompt) >= LONG_PROMPT
        if (request.progress or long) and self.reports_progress():
            payload["return_progress"] = True
        if request.prompt is not None:
            payload["prompt"] = request.prompt
            return "/completions", payload
        payload["messages"] = [{"role": m.role, "content": m.content or ""} for m in request.messages]
        return "/chat/completions", payload

    def stream(self, request: TextRequest, cancel: threading.Event) -> Iterator[TextChunk]:
        path, payload = self._payload(request)
        url = self.base_url + path
        started = time.perf_counter()
        first: float | None = None
        chunks = 0
        usage: Usage | None = None
        finish = None
        where = f"remote model '{self.model_id}' ({self.base_url})"
        try:
            with self._client.stream("POST", url, json=payload) as response:
                if response.status_code >= 400:
                    raise _http_error(response, where)
                stop_watch = _close_on_cancel(response, cancel)
                try:
                    for data in _sse_data(response, where):
                        if data == "[DONE]":
                            break
                        event = _json(data, where)
                        if "prompt_progress" in event:
                            step = llama_progress(event["prompt_progress"], request.progress)
                            if step is not None:
                                yield TextChunk("", prompt_progress=step)
                            if cancel.is_set():
                                break
                            continue
                        if event.get("usage"):
                            u = event["usage"]
                            usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
                        choices = event.get("choices") or []
                        if not choices:
                            continue
                        choice = choices[0]
                        text = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                        if choice.get("finish_reason"):
                            finish = FINISH_REASONS.get(choice["finish_reason"], "stop")
                        if text:
                            chunks += 1
                            if first is None:
                                first = time.perf_counter()
                            yield TextChunk(text)
                        if cancel.is_set():
                            break
                finally:
                    stop_watch.set()
        except httpx.ConnectError as exc:
            raise RemoteError(f"{where} is unreachable: {exc}", status=502) from None
        except httpx.TimeoutException:
            raise RemoteError(
                f"{where} sent nothing for {self.timeout:g} s; the request was given up", status=504
            ) from None
        except httpx.HTTPError as exc:
            if cancel.is_set():
                finish = "cancelled"
            else:
                raise RemoteError(f"{where} broke off the answer: {exc}", status=502) from None
        if cancel.is_set():
            finish = "cancelled"
        done = time.perf_counter()
        if usage is None:
            # The server sent no usage: the prompt is estimated and each streamed piece counted as a token.
            usage = Usage(self.count_prompt_tokens(request.messages, request.prompt), chunks)
        yield TextChunk(
            "",
            finish_reason=finish or "stop",  # type: ignore[arg-type]
            usage=usage,
            seed=request.options.seed if request.options.seed not in (None, -1) else None,
            prompt_seconds=(first or done) - started,
            decode_seconds=done - (first or done),
        )

    def close(self) -> None:
        self._client.close()


def _close_on_cancel(response: httpx.Response, cancel: threading.Event) -> threading.Event:
    """Close ``response`` as soon as ``cancel`` is set (a read blocked on a silent server returns); the
    returned event ends the watch once the stream is done."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if cancel.wait(0.1):
                # Closing the response does not wake a thread blocked reading it; shutting the socket does.
                stream = response.extensions.get("network_stream")
                sock = stream.get_extra_info("socket") if stream is not None else None
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    threading.Thread(target=watch, name="remote-cancel", daemon=True).start()
    return done


def _sse_data(response: httpx.Response, where: str) -> Iterator[str]:
    """The ``data:`` payloads of a server-sent event stream (or the body of a server that answered a
    stream request with one JSON object)."""
    kind = response.headers.get("content-type", "")
    if "text/event-stream" not in kind:
        body = response.read().decode("utf-8", errors="replace")
        event = _json(body, where)
        message = ((event.get("choices") or [{}])[0].get("message") or {}).get("content")
        if message is None:
            raise RemoteError(f"{where} did not stream its answer (content-type {kind or 'none'})", status=502)
        # A whole answer at once: hand it on as one delta so the stream's shape stays the same.
        fake = {"choices": [{"delta": {"content": message}, "finish_reason": "stop"}], "usage": event.get("usage")}
        yield json.dumps(fake)
        return
    for line in response.iter_lines():
        if line.startswith("data:"):
            yield line[5:].strip()


def _json(data: str, where: str) -> dict:
    try:
        event = json.loads(data)
    except ValueError:
        raise RemoteError(f"{where} sent something that is not JSON: {data[:200]!r}", status=502) from None
    if not isinstance(event, dict):
        raise RemoteError(f"{where} sent JSON that is not an object: {data[:200]!r}", status=502)
    if "error" in event and not event.get("choices"):
        raise RemoteError(f"{where} answered with an error: {_message(event)}", status=502)
    return event


def _message(event: dict) -> str:
    error = event.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or event.get("detail") or event)[:500]


def _http_error(response: httpx.Response, where: str) -> Exception:
    body = response.read().decode("utf-8", errors="replace")
    try:
        detail = _message(json.loads(body))
    except ValueError:
        detail = body[:500] or response.reason_phrase
    if response.status_code in (401, 403):
        return RemoteError(
            f"{where} refused the API key (HTTP {response.status_code}): {detail}; set it again with "
            "`aigc models add-remote` or the environment variable the model names",
            status=502,
        )
    if response.status_code < 500:
        # The server refused what was asked (a value it does not take): the user's to change.
        return InvalidRequest(f"{where} refused the request (HTTP {response.status_code}): {detail}")
    return RemoteError(f"{where} failed (HTTP {response.status_code}): {detail}", status=502)
