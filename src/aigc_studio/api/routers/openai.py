"""OpenAI-compatible API under /v1: models, chat completions, completions.

Shapes follow OpenAI's so the official clients work unchanged: SSE ``data: {...}`` chunks ending with
``data: [DONE]``, ``usage`` and ``finish_reason`` filled in, tool calls as ``message.tool_calls`` (and
``delta.tool_calls`` pieces when streamed), errors as ``{"error": {...}}``. What is done with each
request field is in ``openai_requests``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...contracts import ImageRequest, PromptProgress, TokenLogprob, ToolCall, json_int, limits_of
from ...errors import StudioError
from ...services.a1111_schema import SAMPLER_PATTERN
from ...services.chat import ChatRun, PreparedChat
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors
from ..waiting import run_to_end, wait_for_job
from .openai_requests import ChatCompletionRequest, CompletionRequest, SamplingFields

router = APIRouter(prefix="/v1", tags=["openai"])

_TEXT_ERRORS = errors(
    ErrorBody,
    {
        400: "A field is of the wrong type or out of range, OpenAI's API has no such field, the studio refuses the "
        "value (each named), or the request cannot be served as sent: tool names given twice, a tool_choice "
        "that names no given tool or comes without tools, top_logprobs without logprobs, a tool or answer "
        "schema the llama.cpp grammar cannot enforce, a logit_bias token the model does not have, a model that "
        "cannot do what is asked (tools, JSON answers, logit_bias, logprobs), an empty prompt, or messages and "
        "max_tokens past the model's context length (both numbers given).",
        404: "No text model has that name; the message lists the available ones.",
        413: "The request body is over max_body_mb.",
        422: "The model's file could not be loaded (missing or corrupt).",
        503: "The model stopped (the server is shutting down) before the request reached it; send it again.",
    },
)


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(
        description="Prompt tokens whose KV cache came from an earlier request (the prompt cache), not evaluated."
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="The arguments, as JSON text.")


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AnswerMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


class TokenLogprobOut(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenWithTop(TokenLogprobOut):
    top_logprobs: list[TokenLogprobOut]


class Logprobs(BaseModel):
    content: list[TokenWithTop]
    refusal: None


FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]


class ChatChoice(BaseModel):
    index: int
    message: AnswerMessage
    finish_reason: FinishReason
    logprobs: Logprobs | None


class ChatCompletion(BaseModel):
    """The answer, when stream is false. Streamed (stream true), it comes as text/event-stream: ``data:``
    lines of chat.completion.chunk objects, then ``data: [DONE]``."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason
    logprobs: None


class Completion(BaseModel):
    """The completion, when stream is false. Streamed, it comes as text/event-stream: ``data:`` lines of
    text_completion objects, then ``data: [DONE]``."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


def _answer(model: type[BaseModel], chunk: str) -> dict:
    # Each event of the stream (OpenAPI 3.1: the schema of text/event-stream describes one event).
    event = {
        "type": "object",
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": f"A {chunk} object as JSON; an error object if the answer fails; [DONE] last.",
            },
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
        "required": ["data"],
    }
    record = {
        "description": "The id of the answer's history record (aigc history show).",
        "schema": {"type": "string"},
    }
    return {
        200: {
            "model": model,
            "content": {"text/event-stream": {"schema": event}},
            "headers": {"X-AIGC-Response-Id": record},
        }
    }


def _sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def _headers(prepared: PreparedChat) -> dict[str, str]:
    headers = {"X-AIGC-Response-Id": prepared.record.id}
    if prepared.trimmed:
        headers["X-AIGC-Trimmed-Messages"] = str(prepared.trimmed)
    return headers


async def _prepare(studio: Studio, body: SamplingFields, **kwargs: Any) -> PreparedChat:
    options = body.options()
    # Preparing may load the model and tokenizes the prompt: keep it off the event loop.
    return await run_in_threadpool(studio.chat.prepare, model=body.model, options=options, source="api", **kwargs)


def _logprobs(tokens: list[TokenLogprob] | None) -> dict:
    def entry(t: TokenLogprob) -> dict:
        return {"token": t.token, "logprob": t.logprob, "bytes": t.bytes}

    return {"content": [{**entry(t), "top_logprobs": [entry(a) for a in t.top]} for t in tokens or []], "refusal": None}


def _progress(step: PromptProgress) -> dict:
    """A step of reading the prompt, as llama-server's ``prompt_progress`` says it."""
    return {"total": step.total, "cache": step.cached, "processed": step.read, "time_ms": round(step.ms)}


def _tool_calls(calls: list[ToolCall]) -> list[dict]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


def _usage(run: ChatRun) -> dict:
    u = run.result.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


@router.get("/models")
def list_models(studio: Studio = Depends(get_studio)) -> ModelList:
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": m.id, "object": "model", "created": created, "owned_by": "aigc-studio"}
            for m in studio.registry.all()
            if m.kind == "text"
        ],
    }


@router.get(
    "/models/{model_id:path}",
    responses=errors(ErrorBody, {404: "No text model has that name; the message lists the available ones."}),
)
def get_model(model_id: str, studio: Studio = Depends(get_studio)) -> ModelCard:
    m = studio.chat.resolve_model(model_id)
    return {"id": m.id, "object": "model", "created": int(time.time()), "owned_by": "aigc-studio"}


@router.post(
    "/chat/completions", response_model=None, responses=_answer(ChatCompletion, "chat.completion.chunk") | _TEXT_ERRORS
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, studio: Studio = Depends(get_studio)
) -> JSONResponse | StreamingResponse:
    prepared = await _prepare(
        studio,
        body,
        messages=[m.to_message(i) for i, m in enumerate(body.messages)],
        response_format=body.response_format.to_format() if body.response_format else None,
        tools=[t.to_tool() for t in body.tools or []],
        tool_choice=body.tool_choice_name(),
        parallel_tool_calls=body.parallel_tool_calls is not False,
        logit_bias=body.token_bias(),
        logprobs=body.logprobs_wanted(),
        progress=bool(body.stream and body.return_progress),
    )
    run = studio.chat.start(prepared)
    completion_id, created = "chatcmpl-" + secrets.token_hex(12), int(time.time())
    wants_logprobs = prepared.request.logprobs is not None
    if not body.stream:
        tokens: list[TokenLogprob] = []
        await run_to_end(request, run, lambda piece: tokens.extend(piece.logprobs or []))
        result = run.result
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.tool_calls:
            # OpenAI's shape for a call: no text, content null.
            message = {
                "role": "assistant",
                "content": result.text or None,
                "tool_calls": _tool_calls(result.tool_calls),
            }
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": prepared.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": result.finish_reason,
                        "logprobs": _logprobs(tokens) if wants_logprobs else None,
                    }
                ],
                "usage": _usage(run),
            },
            headers=_headers(prepared),
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    # With tools the answer may be a call, which has content null: the role goes with the first piece.
    role_sent = not prepared.request.calls_tools

    def chunk(delta: dict, finish_reason: str | None = None, logprobs: dict | None = None) -> str:
        nonlocal role_sent
        if not role_sent and (delta or finish_reason):
            delta = {"role": "assistant", **delta}
            if "tool_calls" in delta:
                delta["content"] = None
            role_sent = True
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": prepared.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}],
        }
        if include_usage:
            payload["usage"] = None
        return _sse(payload)

    def progress(step: PromptProgress) -> str:
        # llama-server's shape: the assistant's role with no content yet, and how far the prompt is read.
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": prepared.model,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None, "logprobs": None}
            ],
            "prompt_progress": _progress(step),
        }
        if include_usage:
            payload["usage"] = None
        return _sse(payload)

    async def events() -> AsyncIterator[str]:
        if role_sent:
            yield chunk({"role": "assistant", "content": ""})
        try:
            async for piece in run:
                if piece.prompt_progress is not None and body.return_progress:
                    yield progress(piece.prompt_progress)
                if piece.text:
                    yield chunk({"content": piece.text}, logprobs=_logprobs(piece.logprobs) if wants_logprobs else None)
                if piece.tool_call is not None:
                    call = piece.tool_call
                    entry: dict[str, Any] = {"index": call.index, "function": {"arguments": call.arguments}}
                    if call.id is not None:
                        entry = {"index": call.index, "id": call.id, "type": "function"}
                        entry["function"] = {"name": call.name, "arguments": call.arguments}
                    yield chunk({"tool_calls": [entry]})
                if piece.finish_reason in ("stop", "length", "tool_calls"):
                    yield chunk({}, piece.finish_reason)
        except StudioError as exc:
            yield _sse(exc.to_openai())
            return
        if include_usage:
            yield _sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": prepared.model,
                    "choices": [],
                    "usage": _usage(run),
                }
            )
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers=_headers(prepared))


@router.post("/completions", response_model=None, responses=_answer(Completion, "text_completion") | _TEXT_ERRORS)
async def completions(
    body: CompletionRequest, request: Request, studio: Studio = Depends(get_studio)
) -> JSONResponse | StreamingResponse:
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    prepared = await _prepare(
        studio,
        body,
        messages=[],
        prompt=prompt,
        logit_bias=body.token_bias(),
        progress=bool(body.stream and body.return_progress),
    )
    echoed = prompt if body.echo else ""
    run = studio.chat.start(prepared)
    completion_id, created = "cmpl-" + secrets.token_hex(12), int(time.time())

    def payload(text: str, finish_reason: str | None) -> dict:
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": prepared.model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}],
        }

    if not body.stream:
        await run_to_end(request, run)
        return JSONResponse(
            {**payload(echoed + run.result.text, run.result.finish_reason), "usage": _usage(run)},
            headers=_headers(prepared),
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def events() -> AsyncIterator[str]:
        if echoed:
            yield _sse(payload(echoed, None))
        try:
            async for piece in run:
                if piece.prompt_progress is not None and body.return_progress:
                    yield _sse({**payload("", None), "prompt_progress": _progress(piece.prompt_progress)})
                if piece.text:
                    yield _sse(payload(piece.text, None))
                if piece.finish_reason in ("stop", "length"):
                    yield _sse(payload("", piece.finish_reason))
        except StudioError as exc:
            yield _sse(exc.to_openai())
            return
        if include_usage:
            yield _sse({**payload("", None), "choices": [], "usage": _usage(run)})
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers=_headers(prepared))


def _sizes() -> re.Pattern[str]:
    # Every WIDTHxHEIGHT ImageRequest takes: each side a multiple of 8 within its limits.
    limits = limits_of(ImageRequest, "width")
    sides = range(limits["ge"], limits["le"] + 1, limits["multiple_of"])
    side = "(?:" + "|".join(str(n) for n in reversed(sides)) + ")"
    return re.compile(f"^{side}x{side}$")


SIZES = _sizes()


class ImageGenerationRequest(BaseModel):
    """OpenAI's image request. ``size`` is WIDTHxHEIGHT; the studio's own fields may be added too."""

    model_config = ConfigDict(extra="ignore", strict=True)

    prompt: str = Field(min_length=1, max_length=20_000)
    model: str | None = Field(None, description="Image model id or alias; unset: the default image model.")
    n: json_int(ge=1, le=16) = Field(1, description="Images, made as one batch (n × width × height ≤ 16 megapixels).")
    size: str = Field(
        "512x512",
        description="WIDTHxHEIGHT, each side 64 to 2048 and a multiple of 8, e.g. 512x512.",
        json_schema_extra={"pattern": SIZES.pattern},
    )
    response_format: Literal["b64_json", "url"] = "b64_json"
    # The studio's extras, with A1111's names, for clients that pass them in extra_body.
    negative_prompt: str | None = Field(None, max_length=20_000)
    steps: json_int(**limits_of(ImageRequest, "steps")) | None = None
    sampler_name: str | None = Field(
        None,
        description="A1111's sampler name (any case; a schedule type may follow, as 'DPM++ 2M Karras').",
        json_schema_extra={"anyOf": [{"type": "string", "pattern": SAMPLER_PATTERN}, {"type": "null"}]},
    )
    cfg_scale: float | None = Field(None, **limits_of(ImageRequest, "cfg_scale"))
    seed: json_int(**limits_of(ImageRequest, "seed")) | None = None

    @field_validator("size")
    @classmethod
    def _a_size(cls, value: str) -> str:
        if not SIZES.fullmatch(value):
            raise ValueError(f"must be WIDTHxHEIGHT, each side 64 to 2048 and a multiple of 8, got {value!r}")
        return value


class ImageData(BaseModel):
    b64_json: str | None = Field(None, description="response_format b64_json: the PNG, base64.")
    url: str | None = Field(None, description="response_format url: where GET serves the PNG.")
    revised_prompt: None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


@router.post(
    "/images/generations",
    responses=errors(
        ErrorBody,
        {
            400: "A field is of the wrong type or out of range (each named), n × width × height is over 16 "
            "megapixels, no image model is installed, the model cannot make images from text, or the prompt "
            "contains a term of the prompt_blocklist setting (named; nothing is queued).",
            404: "No image model has that name; the message lists the available ones.",
            409: "The job was interrupted (POST /sdapi/v1/interrupt, or the client went away) before it started.",
            413: "The request body is over max_body_mb.",
            422: "The model's files could not be loaded.",
            503: "The server is shutting down and takes no new image jobs; send the request again.",
        },
    ),
)
async def images_generations(
    body: ImageGenerationRequest, request: Request, studio: Studio = Depends(get_studio)
) -> ImagesResponse:
    width, height = (int(x) for x in body.size.split("x"))
    extras = body.model_dump(
        include={"negative_prompt", "steps", "sampler_name", "cfg_scale", "seed"}, exclude_none=True
    )
    if not extras.get("sampler_name", "x").strip():
        del extras["sampler_name"]  # spaces alone: the default, as under /sdapi
    image_request = ImageRequest(
        prompt=body.prompt, model=body.model, width=width, height=height, batch_size=body.n, **extras
    )
    job = await run_in_threadpool(studio.images.submit, image_request, "txt2img", source="openai")
    result = await wait_for_job(request, studio.jobs, job)  # holds no thread; a disconnect interrupts it
    if body.response_format == "url":
        base = str(request.base_url).rstrip("/")
        data = [{"url": f"{base}/api/images/{g.id}.png", "revised_prompt": None} for g in result.images]
    else:
        data = [{"b64_json": g.png_base64(), "revised_prompt": None} for g in result.images]
    return {"created": int(time.time()), "data": data}
