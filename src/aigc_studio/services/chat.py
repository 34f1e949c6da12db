"""Chat: the product logic of one answer, shared by the CLI, the APIs and the web UI.

``prepare`` resolves the model (an Ollama-style ``:latest`` tag included) and the conversation, fills in
the model's own defaults (a catalog model's sampling settings) for the options a request leaves unset,
has the engine check what it cannot do (a JSON Schema its grammar cannot enforce, tools it cannot call)
and checks the prompt fits the context (trimming the oldest turns only when asked, and saying so) — all
before anything is queued. ``start`` runs it and records it in history, with the sampling values that
actually ran, including answers that failed or were cancelled part-way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace

from .. import principal
from ..contracts import Message, ResponseFormat, TextChunk, TextOptions, TextRequest, Tool, ToolCall, Usage
from ..engines.base import context_exceeded
from ..engines.worker import Job
from ..errors import InvalidRequest, ModelNotFound
from ..models.registry import Lease, ModelInfo, Registry
from ..storage.history import History, ResponseRecord
from .limits import Limits, Slot

log = logging.getLogger("aigc_studio.chat")


@dataclass
class PreparedChat:
    model: str
    request: TextRequest
    source: str
    conversation_id: str | None
    new_messages: list[Message]
    prompt_tokens: int
    trimmed: int = 0
    supersedes: list[int] = field(default_factory=list)  # stored answers a regenerate replaces
    # False: a one-off generation another service keeps in its own records (an article's section, an
    # edit, a prompt expansion); it is logged but leaves no conversation in chat history.
    store: bool = True
    # Held from prepare to the end of the run, so the model cannot be evicted in between.
    lease: Lease | None = field(default=None, repr=False, compare=False)
    # The user's share of max_concurrent_jobs, held from prepare to the end of the run likewise.
    slot: Slot | None = field(default=None, repr=False, compare=False)
    record: ResponseRecord = field(init=False)

    def __post_init__(self) -> None:
        request = self.request
        options = request.options.model_dump(exclude_none=True, exclude_defaults=True)
        if request.response_format is not None and request.response_format.type != "text":
            options["response_format"] = request.response_format.model_dump(by_alias=True, exclude_none=True)
        if request.logit_bias:
            options["logit_bias"] = {str(k): v for k, v in request.logit_bias.items()}
        if request.logprobs is not None:
            options["logprobs"] = request.logprobs
        if request.tools:
            options["tools"] = [t.name for t in request.tools]
            options["tool_choice"] = request.tool_choice
            options["parallel_tool_calls"] = request.parallel_tool_calls
        self.record = ResponseRecord(
            model=self.model,
            source=self.source,
            options=options,
            prompt_tokens=self.prompt_tokens,
            trimmed_messages=self.trimmed,
        )


@dataclass
class ChatResult:
    text: str
    finish_reason: str
    usage: Usage
    seed: int | None
    conversation_id: str | None  # None when the run was not stored (PreparedChat.store)
    response_id: str
    trimmed: int
    tool_calls: list[ToolCall] = field(default_factory=list)


class ChatRun:
    """One generation. Iterate it (sync or async) for chunks; ``result`` once it has ended.

    It is recorded in history by the engine's worker when the engine is done with it — so an answer
    is kept whole even when the client stopped reading part-way. The question is recorded as the
    answer starts (History.begin, while the engine evaluates the prompt): a server killed mid-answer
    keeps it, with the answer marked interrupted at the next start.
    """

    def __init__(self, service: ChatService, prepared: PreparedChat):
        self.service, self.prepared = service, prepared
        # The engine's thread records the answer: as the user who asked, so it lands in their history.
        self.principal = principal.current()
        self._job: Job | None = None
        self._result: ChatResult | None = None
        self._begun = False
        self._abandoned = False

    def _submit(self, loop: asyncio.AbstractEventLoop | None) -> Job:
        # The job takes over the prepared lease and releases it when it ends; a prepared chat run a
        # second time takes a new one.
        slot, self.prepared.slot = self.prepared.slot, None
        slot = slot or self.service.limits.slot("this answer")
        lease, self.prepared.lease = self.prepared.lease, None
        try:
            lease = lease or self.service.registry.lease(self.prepared.model)
        except BaseException:
            slot.release()
            raise

        def ended() -> None:
            lease.release()
            slot.release()

        p = self.prepared
        begin = p.store and not self._begun
        # The engine starts on the prompt before the question is stored: storing it then costs the first
        # token nothing. The worker records the answer only once the question is stored (or could not be).
        settled = threading.Event()
        if not begin:
            settled.set()
        try:
            job = lease.worker.submit(
                p.request, loop=loop, on_done=lambda job, error: self._on_done(job, error, settled), on_end=ended
            )
        except BaseException as exc:
            ended()
            if begin or self._begun:  # the question is stored: so is why no answer came
                if begin:
                    self._begin()
                self._result = self._record(None, "", exc, 0.0, 0.0)
            raise
        self._job = job
        if begin:
            try:
                self._begin()
            except BaseException:
                self._abandoned = True  # the caller gets the error; nothing of this run is recorded
                job.cancel()
                raise
            finally:
                settled.set()
        return job

    def _begin(self) -> None:
        p = self.prepared
        p.conversation_id = self.service.history.begin(p.conversation_id, p.new_messages, p.record)
        self._begun = True

    def __iter__(self) -> Iterator[TextChunk]:
        yield from self._submit(None)

    async def __aiter__(self) -> AsyncIterator[TextChunk]:
        async for chunk in self._submit(asyncio.get_running_loop()):
            yield chunk

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    @property
    def result(self) -> ChatResult:
        """The recorded outcome; waits for the engine to finish if it is still winding down."""
        if self._job is not None and not self._job.done.wait(timeout=60):
            raise TimeoutError("the engine did not finish the request within 60 s of being stopped")
        assert self._result is not None, "the run was never started"
        return self._result

    def _on_done(self, job: Job, error: BaseException | None, settled: threading.Event) -> None:
        settled.wait()
        if self._abandoned:
            return
        first = (job.first_text_at or job.ended_at) - job.submitted_at
        with principal.acting_as(self.principal):
            self._result = self._record(job.final, "".join(job.text), error, first, job.ended_at - job.submitted_at)

    def _record(
        self, final: TextChunk | None, text: str, error: BaseException | None, ttft: float, duration: float
    ) -> ChatResult:
        p, rec = self.prepared, self.prepared.record
        if error is not None:
            rec.status, rec.error = "error", getattr(error, "message", None) or str(error) or type(error).__name__
        elif final is None or final.finish_reason == "cancelled":
            rec.status, rec.error = "cancelled", "the client stopped the request"
        rec.finish_reason = final.finish_reason if final else ("cancelled" if error is None else None)
        if final is not None:
            rec.seed = final.seed
            if final.sampling:
                # What the engine ran with, its own defaults included, over what was asked.
                rec.options = {**rec.options, **final.sampling}
            if final.usage:
                rec.prompt_tokens, rec.completion_tokens = final.usage.prompt_tokens, final.usage.completion_tokens
                if final.decode_seconds and final.usage.completion_tokens > 1:
                    rec.tokens_per_s = (final.usage.completion_tokens - 1) / final.decode_seconds
        rec.ttft_ms, rec.duration_ms = ttft * 1000, duration * 1000
        # One line per answer: what ran and how fast, never the messages themselves.
        log.info(
            "%s %s %s: %s+%s tokens (%s of the prompt from the cache), %.0f ms first token, %.1f tok/s, %s",
            rec.id,
            rec.source,
            rec.model,
            rec.prompt_tokens,
            rec.completion_tokens,
            final.usage.cached_tokens if final is not None and final.usage else 0,
            rec.ttft_ms,
            rec.tokens_per_s or 0,
            rec.status if rec.status != "ok" else rec.finish_reason,
        )
        tool_calls = list(final.tool_calls or []) if final is not None else []
        conversation_id = p.conversation_id
        if p.store:
            conversation_id = self.service.history.record(
                p.conversation_id,
                p.new_messages,
                rec,
                text,
                p.request.messages or p.new_messages,
                p.supersedes,
                tool_calls=tool_calls,
                begun=self._begun,
            )
        return ChatResult(
            text=text,
            finish_reason=rec.finish_reason or "error",
            usage=Usage(
                rec.prompt_tokens or 0,
                rec.completion_tokens or 0,
                final.usage.cached_tokens if final is not None and final.usage else 0,
            ),
            seed=rec.seed,
            conversation_id=conversation_id,
            response_id=rec.id,
            trimmed=p.trimmed,
            tool_calls=tool_calls,
        )


class ChatService:
    def __init__(self, registry: Registry, history: History, limits: Limits | None = None):
        self.registry = registry
        self.history = history
        self.limits = limits or Limits()

    def resolve_model(self, name: str) -> ModelInfo:
        """The text model called ``name``; ``name:latest`` (as Ollama clients send it) is ``name``.

        Any other tag is unknown: ModelNotFound lists the models there are.
        """
        try:
            return self.registry.resolve(name, kind="text")
        except ModelNotFound as missing:
            base, colon, tag = name.rpartition(":")
            if not colon or tag.strip().lower() != "latest" or not base:
                raise
            try:
                return self.registry.resolve(base, kind="text")
            except ModelNotFound:
                raise missing from None

    def prepare(
        self,
        messages: list[Message],
        *,
        model: str | None = None,
        options: TextOptions | None = None,
        conversation_id: str | None = None,
        trim: bool = False,
        source: str = "api",
        prompt: str | None = None,
        regenerate: bool = False,
        response_format: ResponseFormat | None = None,
        tools: list[Tool] | None = None,
        tool_choice: str | None = None,
        parallel_tool_calls: bool = True,
        logit_bias: dict[int, float] | None = None,
        logprobs: int | None = None,
        store: bool = True,
        progress: bool = False,
    ) -> PreparedChat:
        """Resolve model and conversation and check the prompt fits; blocking (may load the model).

        ``messages`` are the new messages when ``conversation_id`` is given (the stored ones come
        first), otherwise the whole conversation as an OpenAI client sends it. ``prompt`` instead of
        messages asks for a raw completion. ``regenerate`` answers the last question of
        ``conversation_id`` again (``messages`` unused). ``response_format`` constrains the answer;
        ``tools`` may be called as ``tool_choice`` says ("auto" when unset, "none", "required" or a
        tool's name); ``logit_bias`` adds to token logits (token id -> -100..100); ``logprobs`` asks for
        the tokens' log probabilities and that many alternatives. ``store=False`` keeps the run out of
        chat history (a service that keeps its own record of it). ``progress`` asks for every step of
        reading the prompt (TextRequest.progress). Raises StudioError subclasses for
        the user.
        """
        info = self.resolve_model(model or self.registry.default_model)
        options = with_model_defaults(options or TextOptions(), info)
        self.limits.check_max_tokens(options.max_tokens)
        tools = list(tools or [])
        tool_choice = check_tool_choice(tools, tool_choice)
        supersedes: list[int] = []
        if regenerate:
            # Answer the conversation's last question again. The answer it replaces stays in history,
            # marked as replaced once the new one exists (a failed retry changes nothing).
            if conversation_id is None:
                raise InvalidRequest("regenerate needs the conversation to answer again", param="conversation_id")
            supersedes = self.history.trailing_answer_ids(conversation_id)
            full = self.history.messages(conversation_id)
            while full and full[-1].role == "assistant":
                full.pop()
            if not any(m.role == "user" for m in full):
                raise InvalidRequest("this conversation has no question to answer again", param="conversation_id")
            new: list[Message] = []
        else:
            if prompt is None and not messages:
                raise InvalidRequest("messages must contain at least one message", param="messages")
            if prompt is None and all(m.role == "system" for m in messages):
                raise InvalidRequest("messages must contain at least one user message", param="messages")
            if conversation_id is not None:
                stored = self.history.messages(conversation_id)
                if stored and any(m.role == "system" for m in messages):
                    # A new system prompt replaces the stored one for this answer and those after it.
                    stored = [m for m in stored if m.role != "system"]
                full, new = [*stored, *messages], list(messages)
            elif prompt is None:
                # The client resent the conversation: what comes after its last answer is new (a user
                # question, or the results of the tools that answer called).
                last_answer = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
                conversation_id = (
                    self.history.find_continuation(messages[: last_answer + 1]) if last_answer >= 0 else None
                )
                full = list(messages)
                new = messages[last_answer + 1 :] if conversation_id else list(messages)
            else:
                full, new = [], [Message(role="user", content=prompt)]
            if conversation_id is not None and any(m.role == "system" for m in new):
                new = sorted(new, key=lambda m: m.role != "system")
                full = [*[m for m in new if m.role == "system"], *[m for m in full if m.role != "system"]]

        # The slot counts this answer against the user's max_concurrent_jobs from here to its end; the
        # lease keeps the model loaded as long (or until the prepared chat is dropped): eviction cannot
        # close the engine under the token count or before the submit.
        slot = self.limits.slot("this answer")
        try:
            lease = self.registry.lease(info.id)
        except BaseException:
            slot.release()
            raise
        try:  # a request refused here gives its lease and slot back at once
            engine = lease.engine
            request = TextRequest(
                messages=full,
                options=options,
                prompt=prompt,
                response_format=response_format,
                tools=tools,
                tool_choice=tool_choice,
                parallel_tool_calls=parallel_tool_calls,
                logit_bias=dict(logit_bias or {}),
                logprobs=logprobs,
                progress=progress,
            )
            engine.check(request)
            need = options.max_tokens or 1
            n_prompt = engine.count_prompt_tokens(full, prompt, request)
            if n_prompt == 0:
                raise InvalidRequest("prompt is empty: give at least one token of text to continue", param="prompt")
            trimmed = 0
            while trim and prompt is None and n_prompt + need > engine.context_length:
                # Drop the oldest turn after any system message; never the newest user message.
                first = next((i for i, m in enumerate(full) if m.role != "system"), None)
                if first is None or first >= len(full) - 1:
                    break
                del full[first]
                trimmed += 1
                n_prompt = engine.count_prompt_tokens(full, None, request)
            if options.max_tokens is None and self.limits.max_tokens:
                # No max_tokens: at most the server's limit, and never past the context as before.
                room = max(1, min(self.limits.max_tokens, engine.context_length - n_prompt))
                request = replace(request, options=options.model_copy(update={"max_tokens": room}))
        except BaseException:
            lease.release()
            slot.release()
            raise
        prepared = PreparedChat(
            model=info.id,
            request=request,
            source=source,
            conversation_id=conversation_id,
            new_messages=new,
            prompt_tokens=n_prompt,
            trimmed=trimmed,
            supersedes=supersedes,
            lease=lease,
            slot=slot,
            store=store,
        )
        if n_prompt + need > engine.context_length:
            error = context_exceeded(engine.context_length, n_prompt, options.max_tokens)
            ChatRun(self, prepared)._record(None, "", error, 0.0, 0.0)
            lease.release()
            slot.release()
            raise error
        return prepared

    def start(self, prepared: PreparedChat) -> ChatRun:
        """A run of a prepared chat: iterate it (sync or async) for chunks, then read ``.result``.

        The last chunk carries finish_reason and usage. Stopping the iteration early cancels the
        generation; whatever happened is recorded in history once the iteration ends.
        """
        return ChatRun(self, prepared)

    def complete(self, prepared: PreparedChat) -> ChatResult:
        """Run a prepared chat to the end and return the whole answer."""
        run = self.start(prepared)
        for _ in run:
            pass
        assert run.result is not None
        return run.result


def with_model_defaults(options: TextOptions, info: ModelInfo) -> TextOptions:
    """``options`` with the model's own defaults (a catalog model's, e.g. Qwen's temperature 0.7, top_p
    0.8, top_k 20) for the options the request left unset."""
    defaults = {
        k: v for k, v in info.defaults.items() if k in TextOptions.model_fields and getattr(options, k) in (None, [])
    }
    if not defaults:
        return options
    return TextOptions(**{**options.model_dump(exclude_unset=True), **defaults})


def check_tool_choice(tools: list[Tool], tool_choice: str | None) -> str:
    """The tool choice to use ("auto" when tools are given and nothing is said); InvalidRequest when it
    names no given tool or comes without tools."""
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidRequest(f"tool names must be unique; given more than once: {', '.join(duplicates)}", param="tools")
    if tool_choice is None:
        return "auto"
    if not tools and tool_choice != "none":
        raise InvalidRequest("tool_choice is only allowed when tools are given", param="tool_choice")
    if tool_choice in ("none", "auto", "required") or tool_choice in names:
        return tool_choice
    raise InvalidRequest(
        f"tool_choice names the function {tool_choice!r}, which is not among the tools ({', '.join(names)}); "
        "or use 'none', 'auto' or 'required'",
        param="tool_choice",
    )
